r"""``Ensemble``: M same-shaped models as stacked tensors, evaluated together under ``vmap``.

The members' parameters are stacked along a new leading axis, ``W[i] = W^{(i)}``, as
``torch.func.stack_module_state`` does, and one forward of a stateless copy of member 0 under
``torch.func.vmap`` evaluates every member: ``L_i = loss(f(W[i], x_i), y_i)`` for all ``i`` at once.
Gradients come from one reverse pass of ``Σ_i L_i``, which seeds every ``L_i`` with 1 exactly as
``L_i.backward()`` does, so ``∂(Σ L)/∂W[i] = ∇L_i``.

Each member module stays usable on its own: its parameters are re-pointed at its slice of the
stack (64-byte aligned, see :func:`aligned_stack`), so the probes that need a live module
(sharpness, the NTK) see the member's current weights.

Two modes:

* ``exact=True`` (default): matrix products run once per member inside ``vmap``
  (:mod:`._exact`); forward, gradients and updates are then bitwise those of the one-by-one loop,
  which :meth:`Ensemble.check_against_loop` verifies on every member at the first step.
* ``exact=False``: everything batched (``bmm``), optionally under ``torch.compile``; equal to the
  loop up to the rounding of reassociated sums (a few ulp per step).

References:
    PyTorch tutorial "Model ensembling" (``torch.func.stack_module_state`` + ``vmap``).

"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Sequence
from contextlib import nullcontext
from typing import Any

import torch
from torch import Tensor, nn
from torch.func import functional_call, grad_and_value, vmap

from gdscope.ensemble._errors import NotBatchableError
from gdscope.ensemble._exact import ALIGNMENT, per_member_products

__all__ = ["Ensemble", "aligned_stack"]

LossFn = Callable[[Tensor, Tensor], Tensor]
Batch = tuple[Tensor, Tensor]
_PLAIN = (bool, int, float, str, type(None))


def aligned_stack(tensors: Sequence[Tensor]) -> Tensor:
    """Stack equal-shaped tensors into ``(M, ...)`` with every ``[i]`` 64-byte aligned and dense.

    Each member's slice then has the address and strides a freshly allocated tensor has, which
    BLAS results depend on; the stack itself is strided with padding between members.
    """
    first = tensors[0]
    numel, size = first.numel(), first.element_size()
    step = max(math.ceil(numel * size / ALIGNMENT) * ALIGNMENT // size, 1)
    storage = torch.empty(len(tensors) * step, dtype=first.dtype, device=first.device)
    inner = first.new_empty(first.shape).stride() if first.ndim else ()
    out = storage.as_strided((len(tensors), *first.shape), (step, *inner))
    with torch.no_grad():
        for i, t in enumerate(tensors):
            out[i].copy_(t)
    return out


class Ensemble:
    """M structurally identical models held as stacked tensors.

    Args:
        models: the members; same class, same parameter and buffer names, shapes, dtypes and
            devices, and the same plain (number/string/bool) attributes in every submodule.
        exact: run matrix products per member so that results are bitwise the loop's.
        compile: ``torch.compile`` the batched gradient (``exact=False`` only); any failure
            falls back to eager and is kept in :attr:`compile_error`.

    Attributes:
        models: the member modules (parameters re-pointed at their slices of the stack).
        active: indices of the members still in the stack (see :meth:`keep`).
        params: trainable parameters by name, stacked ``(len(active), ...)``.
        frozen: buffers and frozen parameters by name, stacked.

    Raises:
        NotBatchableError: the models differ in structure.

    Example:
        >>> import gdscope as gs
        >>> ens = Ensemble([gs.models.two_layer(4, 8, seed=s) for s in range(3)])
        >>> x, y = gs.data.sphere(n=5, d=4, seed=0)
        >>> loss, out, grads = ens.loss_and_grad(gs.losses.mse, x, y)
        >>> tuple(loss.shape), tuple(grads["weight"].shape)
        ((3,), (3, 8, 4))

    """

    def __init__(self, models: Sequence[nn.Module], *, exact: bool = True, compile: bool = False):
        if not models:
            raise ValueError("Ensemble needs at least one model, got none")
        check_same_structure(models)
        if compile and exact:
            raise ValueError("compile=True needs exact=False: compiled kernels are not the loop's")
        self.models = list(models)
        self.exact, self.compile = exact, compile
        self.ungraded: set[str] = set()
        """Parameters the loss does not read (no gradient alone: torch.optim skips them)."""
        self.compile_error: BaseException | None = None
        self.active = list(range(len(models)))
        named = [dict(m.named_parameters()) for m in models]
        self.names = [n for n, p in named[0].items() if p.requires_grad]
        self.params = {n: aligned_stack([d[n].detach() for d in named]) for n in self.names}
        fixed = [
            {**{n: p for n, p in d.items() if not p.requires_grad}, **dict(m.named_buffers())}
            for d, m in zip(named, models, strict=True)
        ]
        self.frozen = {n: aligned_stack([d[n].detach() for d in fixed]) for n in fixed[0]}
        self._base = copy.deepcopy(models[0]).to("meta")
        self._fast: dict[tuple[Any, bool], Callable[..., Any]] = {}
        self._tie()

    def __len__(self) -> int:
        return len(self.active)

    def member_params(self, i: int) -> dict[str, nn.Parameter]:
        """Return member ``i``'s trainable parameters by name (views of its slice)."""
        params = dict(self.models[i].named_parameters())
        return {n: params[n] for n in self.names}

    def _tie(self) -> None:
        for slot, i in enumerate(self.active):
            for name, p in self.member_params(i).items():
                p.data = self.params[name][slot]

    def keep(self, slots: Sequence[int]) -> Tensor:
        """Keep only the members at ``slots`` of the stack; return the index tensor used.

        The dropped members keep their last parameters (their modules no longer follow the stack).
        """
        index = torch.tensor(list(slots), dtype=torch.long, device=self._device)
        self.active = [self.active[s] for s in slots]
        self.params = {n: aligned_stack(list(t[index])) for n, t in self.params.items()}
        self.frozen = {n: aligned_stack(list(t[index])) for n, t in self.frozen.items()}
        self._tie()
        return index

    @property
    def _device(self) -> torch.device:
        return next(iter(self.params.values())).device

    def _member_fn(self, loss_fn: LossFn) -> Callable[..., tuple[Tensor, Tensor]]:
        base = self._base

        def member(params: dict[str, Tensor], frozen: dict[str, Tensor], x: Tensor, y: Tensor):
            out = functional_call(base, {**params, **frozen}, (x,), tie_weights=True)
            return loss_fn(out, y), out

        return member

    def loss_and_grad(
        self, loss_fn: LossFn, x: Tensor, y: Tensor, *, batched_data: bool = False
    ) -> tuple[Tensor, Tensor, dict[str, Tensor]]:
        """Return every member's loss ``(M,)``, output ``(M, n, ...)`` and gradients ``(M, ...)``.

        Args:
            loss_fn: ``loss_fn(output, target) -> scalar`` of one member.
            x: inputs ``(n, ...)`` shared by all members, or ``(M, n, ...)`` with ``batched_data``.
            y: targets, shared or stacked like ``x``.
            batched_data: ``x`` and ``y`` carry one data set per member along dim 0.

        """
        dims = 0 if batched_data else None
        member = self._member_fn(loss_fn)
        if not self.exact:
            return self._fast_loss_and_grad(loss_fn, member, dims, x, y)
        leaves = {n: t.detach().requires_grad_() for n, t in self.params.items()}
        with torch.enable_grad(), per_member_products():
            loss, out = vmap(member, in_dims=(0, 0, dims, dims))(leaves, self.frozen, x, y)
            grads = torch.autograd.grad(loss.sum(), list(leaves.values()), allow_unused=True)
        stacked = {
            n: torch.zeros_like(leaves[n]) if g is None else g
            for n, g in zip(leaves, grads, strict=True)
        }
        return loss.detach(), out.detach(), stacked

    def _fast_loss_and_grad(
        self, loss_fn: LossFn, member: Callable[..., Any], dims: int | None, x: Tensor, y: Tensor
    ) -> tuple[Tensor, Tensor, dict[str, Tensor]]:
        key = (loss_fn, dims is not None)
        if key not in self._fast:
            fn = vmap(grad_and_value(member, has_aux=True), in_dims=(0, 0, dims, dims))
            self._fast[key] = torch.compile(fn, dynamic=False) if self.compile else fn
        params = {n: t.detach() for n, t in self.params.items()}
        with torch.enable_grad() if self.compile else nullcontext():
            try:
                grads, (loss, out) = self._fast[key](params, self.frozen, x, y)
            except Exception as error:  # compile unavailable or failed: eager from now on
                if not self.compile:
                    raise
                self.compile, self.compile_error = False, error
                self._fast.clear()
                return self._fast_loss_and_grad(loss_fn, member, dims, x, y)
        return loss.detach(), out.detach(), {n: g.detach() for n, g in grads.items()}

    def check_against_loop(
        self,
        loss_fn: LossFn,
        data: Sequence[Batch],
        batched: tuple[Tensor, Tensor, dict[str, Tensor]],
    ) -> None:
        """Compare a batched ``loss_and_grad`` result with each member evaluated alone.

        The one-model evaluation is what ``gdscope.train`` does at a full-batch step: forward,
        loss, backward. With ``exact=True`` every loss, output and gradient must be bitwise
        equal; otherwise equal to ``1e-4`` (float32) / ``1e-9`` (float64) relative.

        Args:
            loss_fn: the training loss.
            data: ``(x_i, y_i)`` of each active member.
            batched: the ``(loss, output, grads)`` returned by :meth:`loss_and_grad`.

        Raises:
            NotBatchableError: naming the first member and quantity that differ.

        """
        loss, out, grads = batched
        for slot, i in enumerate(self.active):
            model = self.models[i]
            trainable = list(self.member_params(i).values())
            x, y = data[slot]
            with torch.enable_grad():
                out_i = model(x)
                loss_i = loss_fn(out_i, y)
                grads_i = torch.autograd.grad(loss_i, trainable, allow_unused=True)
            self.ungraded |= {n for n, g in zip(self.names, grads_i, strict=True) if g is None}
            pairs = [("loss", loss[slot], loss_i), ("output", out[slot], out_i)]
            pairs += [
                (f"grad of {n}", grads[n][slot], torch.zeros_like(p) if g is None else g)
                for n, p, g in zip(self.names, trainable, grads_i, strict=True)
            ]
            for what, got, want in pairs:
                want = want.detach()
                if not _same(got, want, exact=self.exact):
                    gap = float((got - want).abs().max()) if got.shape == want.shape else math.inf
                    fix = (
                        "pass exact=False (agreement with the loop to rounding, not bitwise) or "
                        "run the loop (gdscope.train per member)"
                        if self.exact
                        else "run the loop (gdscope.train per member)"
                    )
                    raise NotBatchableError(
                        f"member {i}: the batched {what} differs from the one-model computation "
                        f"(max abs diff {gap:.3e}); {fix}"
                    )


def _same(a: Tensor, b: Tensor, *, exact: bool) -> bool:
    if a.shape != b.shape:
        return False
    if exact:
        return torch.equal(a, b) or bool(((a == b) | (a.isnan() & b.isnan())).all())
    rtol = 1e-4 if a.dtype == torch.float32 else 1e-9
    return bool(torch.allclose(a, b, rtol=rtol, atol=rtol * float(b.abs().max()), equal_nan=True))


def check_same_structure(models: Sequence[nn.Module]) -> None:
    """Raise ``NotBatchableError`` unless all ``models`` have member 0's structure.

    Compared per submodule: the class, the names, shapes, dtypes, devices and ``requires_grad``
    of parameters and buffers, and every plain attribute (number, string, bool, ``None``), which
    is where forward multipliers and flags live.
    """
    reference = _structure(models[0])
    for i, model in enumerate(models[1:], 1):
        found = _structure(model)
        if found != reference:
            diff = next(
                (k, reference.get(k), found.get(k))
                for k in sorted(set(reference) | set(found))
                if reference.get(k) != found.get(k)
            )
            raise NotBatchableError(
                f"model {i} differs from model 0 at {diff[0]!r}: {diff[2]!r} vs {diff[1]!r}; "
                "an ensemble needs structurally identical members"
            )


def _structure(model: nn.Module) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for prefix, module in model.named_modules():
        out[f"{prefix}:class"] = type(module)
        for key, value in vars(module).items():
            if not key.startswith("_") and isinstance(value, _PLAIN):
                out[f"{prefix}.{key}"] = value
    for kind, tensors in (("param", model.named_parameters()), ("buffer", model.named_buffers())):
        for name, t in tensors:
            out[f"{kind}:{name}"] = (tuple(t.shape), t.dtype, t.device, t.requires_grad)
    return out
