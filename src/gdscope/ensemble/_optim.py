r"""``StackedSGD``: ``torch.optim.SGD`` on stacked ensemble parameters, hyper-parameters per member.

Member ``i`` of a stacked tensor ``W[i]`` gets exactly the update ``torch.optim.SGD`` gives the
one-model parameter (PyTorch's single-tensor SGD, ``sgd.py``), with its own ``η_i``, ``β_i`` and
``μ_i``:

.. math::

    g &= \nabla L_i(w) + \mu_i w, \\
    b &\leftarrow g \text{ (first step)}, \quad b \leftarrow \beta_i b + (1 - \tau) g, \\
    w &\leftarrow w - \eta_i\, d, \qquad
    d = g + \beta_i b \text{ (Nesterov)},\; b \text{ (heavy ball)},\; g \text{ (GD)}.

torch adds ``μw`` only when ``μ ≠ 0`` and keeps the buffer ``b`` only when ``β ≠ 0`` (GD:
``d = g``), and one stacked update runs one set of operations for every member: the values are
per member, but whether ``β`` is 0, whether ``μ`` is 0, ``τ`` and Nesterov are shared.

PyTorch computes each ``y + a·x`` as ``y.add(x, alpha=a)`` with a Python float ``a``, which the
CPU and CUDA kernels evaluate as one fused multiply-add ``fma(x, a, y)``. With ``a`` a tensor of
one value per member, ``torch.addcmul(y, x, a)`` is that same fused operation;
:func:`fused_matches_torch` checks, once per dtype and device, that the two give the same bits,
and where they do not, the update runs member by member with Python-float ``alpha``, exactly as
torch does.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from gdscope.ensemble._errors import NotBatchableError

__all__ = ["StackedSGD", "fused_matches_torch"]


@functools.cache
def fused_matches_torch(dtype: torch.dtype, device: str) -> bool:
    """Whether ``addcmul``/``mul`` with a per-member tensor give torch.optim's bits on ``device``.

    Compares, on fresh random tensors of odd length (so that vectorized bodies and scalar tails
    both occur), ``torch.addcmul(y, x, a[:, None])`` with ``y[i].add(x[i], alpha=float(a[i]))``,
    ``y.add(x, alpha=c)`` on the stack with the same on each standalone member, and
    ``y * a[:, None]`` with ``y[i].mul(float(a[i]))``, and one ``torch.optim.SGD`` step per member
    (with the kernel torch picks on ``device``: ``foreach`` on CUDA) with the stacked update.
    """
    gen = torch.Generator().manual_seed(0)
    y, x = (torch.randn(4, 1031, generator=gen, dtype=torch.float64) for _ in range(2))
    y, x = y.to(dtype=dtype, device=device), x.to(dtype=dtype, device=device)
    a = torch.tensor([-0.1, 0.37, -1.3e-3, 3.0], dtype=dtype, device=device)
    alone = [(y[i].clone(), x[i].clone(), float(a[i])) for i in range(4)]
    fused = torch.addcmul(y, x, a[:, None])
    by_member = torch.stack([yi.add(xi, alpha=ai) for yi, xi, ai in alone])
    stacked = y.add(x, alpha=0.9)
    uniform = torch.stack([yi.add(xi, alpha=0.9) for yi, xi, _ in alone])
    scaled = torch.stack([yi.mul(ai) for yi, _, ai in alone])
    stepped = []  # torch.optim.SGD itself, with its own default kernel (foreach on CUDA)
    for yi, xi, ai in alone:
        param = nn.Parameter(yi.clone())
        param.grad = xi.clone()
        torch.optim.SGD([param], lr=abs(ai)).step()
        stepped.append(param.detach())
    return (
        torch.equal(fused, by_member)
        and torch.equal(stacked, uniform)
        and torch.equal(y * a[:, None], scaled)
        and torch.equal(torch.addcmul(y, x, -a.abs()[:, None]), torch.stack(stepped))
    )


class StackedSGD(torch.optim.Optimizer):
    """SGD / heavy ball / Nesterov over stacked tensors ``(M, ...)`` with per-member step sizes.

    One param group per stacked tensor: ``lr``, ``momentum`` and ``weight_decay`` are tensors of
    shape ``(M,)`` (momentum all zero or all non-zero, likewise weight decay, for torch's
    operations to be the members'); ``dampening`` and ``nesterov`` are shared. Build it from the
    members' own ``torch.optim.SGD`` objects with :meth:`from_members`. ``p.grad`` holds the
    stacked gradients.

    Example:
        >>> w = torch.zeros(2, 3)
        >>> opt = StackedSGD([w], lr=[torch.tensor([0.1, 0.2])])
        >>> w.grad = torch.ones(2, 3)
        >>> opt.step()
        >>> w[:, 0].tolist()
        [-0.10000000149011612, -0.20000000298023224]

    """

    def __init__(
        self,
        params: Sequence[Tensor],
        lr: Sequence[Tensor],
        momentum: Sequence[Tensor] | None = None,
        weight_decay: Sequence[Tensor] | None = None,
        *,
        dampening: float = 0.0,
        nesterov: bool = False,
    ) -> None:
        groups = []
        for k, p in enumerate(params):
            zeros = torch.zeros(p.shape[0], dtype=p.dtype, device=p.device)
            beta = zeros if momentum is None else momentum[k]
            decay = zeros if weight_decay is None else weight_decay[k]
            groups.append({"params": [p], "lr": lr[k], "momentum": beta, "weight_decay": decay})
        defaults = {"dampening": float(dampening), "nesterov": bool(nesterov)}
        super().__init__(groups, defaults)
        first = params[0]
        self.fused = fused_matches_torch(first.dtype, str(first.device))

    @classmethod
    def from_members(
        cls,
        optimizers: Sequence[torch.optim.Optimizer],
        members: Sequence[Mapping[str, nn.Parameter]],
        stacked: Mapping[str, Tensor],
    ) -> StackedSGD:
        """Stack the hyper-parameters of the members' fresh ``torch.optim.SGD`` optimizers.

        Args:
            optimizers: member ``i``'s optimizer; every trainable parameter in one param group.
            members: member ``i``'s trainable parameters by name (the ones its optimizer holds).
            stacked: the stacked tensors ``(M, ...)`` by the same names.

        Raises:
            NotBatchableError: an optimizer is not a fresh ``torch.optim.SGD`` without
                ``maximize``/``fused``/``differentiable``, or the members differ in dampening,
                Nesterov, or in which of momentum and weight decay are zero.

        """
        for opt in optimizers:
            _check_sgd(opt)
        lookup = [{id(p): g for g in opt.param_groups for p in g["params"]} for opt in optimizers]
        lrs, betas, decays = [], [], []
        shared: set[tuple[Any, ...]] = set()
        for name, p in stacked.items():
            groups = []
            for i, table in enumerate(lookup):
                group = table.get(id(members[i][name]))
                if group is None:
                    raise NotBatchableError(
                        f"member {i}: parameter {name!r} is not in its optimizer's param groups"
                    )
                groups.append(group)
            shared.update((g["dampening"], g["nesterov"]) for g in groups)
            flags = {(g["momentum"] != 0, g["weight_decay"] != 0) for g in groups}
            if len(flags) != 1:  # StackedSGD decides these per stacked tensor
                raise NotBatchableError(
                    f"members differ in (momentum ≠ 0, weight_decay ≠ 0) for {name!r}: "
                    f"{sorted(flags)}; momentum must be 0 for every member or for none, "
                    "likewise weight_decay, because torch.optim.SGD runs the momentum buffer "
                    "(the decay term) only where it is non-zero and one stacked update runs one "
                    "set of operations: train the two groups as separate ensembles"
                )

            def column(key: str, groups: list[dict[str, Any]] = groups, p: Tensor = p) -> Tensor:
                return torch.tensor([float(g[key]) for g in groups], dtype=p.dtype, device=p.device)

            lrs.append(column("lr"))
            betas.append(column("momentum"))
            decays.append(column("weight_decay"))
        if len(shared) != 1:
            raise NotBatchableError(
                f"members differ in (dampening, nesterov): {sorted(shared)}; every member needs "
                "the same dampening and nesterov, because they change which operations "
                "torch.optim.SGD runs: train the groups as separate ensembles"
            )
        dampening, nesterov = shared.pop()
        return cls(
            list(stacked.values()),
            lrs,
            betas,
            decays,
            dampening=dampening,
            nesterov=nesterov,
        )

    def _axpy(self, y: Tensor, x: Tensor, a: Tensor, *, inplace: bool) -> Tensor:
        """Return ``y + a·x`` per member as torch's ``y.add(x, alpha=a_i)`` computes it."""
        if self.fused:
            scale = a.view(-1, *([1] * (y.ndim - 1)))
            return y.addcmul_(x, scale) if inplace else torch.addcmul(y, x, scale)
        out = y if inplace else y.clone()
        for i, ai in enumerate(a.tolist()):
            out[i].add_(x[i], alpha=ai)
        return out

    def _scale_(self, y: Tensor, a: Tensor) -> Tensor:
        if self.fused:
            return y.mul_(a.view(-1, *([1] * (y.ndim - 1))))
        for i, ai in enumerate(a.tolist()):
            y[i].mul_(ai)
        return y

    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None) -> None:  # type: ignore[override]
        """Update every stacked tensor from its ``.grad`` (``closure`` is not supported)."""
        if closure is not None:
            raise ValueError("StackedSGD takes no closure: full-batch gradients are set on .grad")
        for group in self.param_groups:
            (p,) = group["params"]
            if p.grad is None:
                continue
            grad = p.grad
            if bool((group["weight_decay"] != 0).any()):
                grad = self._axpy(grad, p, group["weight_decay"], inplace=False)
            if bool((group["momentum"] != 0).any()):
                state = self.state[p]
                buf = state.get("momentum_buffer")
                if buf is None:
                    buf = state["momentum_buffer"] = grad.detach().clone()
                else:
                    self._scale_(buf, group["momentum"]).add_(grad, alpha=1 - group["dampening"])
                if group["nesterov"]:
                    grad = self._axpy(grad, buf, group["momentum"], inplace=False)
                else:
                    grad = buf
            self._axpy(p, grad, -group["lr"], inplace=True)

    def keep(self, index: Tensor, params: Sequence[Tensor]) -> None:
        """Keep only the members ``index`` (in that order); ``params`` are the new stacks."""
        for group, new in zip(self.param_groups, params, strict=True):
            (old,) = group["params"]
            state = self.state.pop(old, {})
            if "momentum_buffer" in state:
                self.state[new] = {"momentum_buffer": state["momentum_buffer"][index]}
            group["params"] = [new]
            for key in ("lr", "momentum", "weight_decay"):
                group[key] = group[key][index]


def _check_sgd(opt: torch.optim.Optimizer) -> None:
    if type(opt) is not torch.optim.SGD:
        raise NotBatchableError(
            f"only torch.optim.SGD (gd, heavy_ball, nesterov) is batched, got {type(opt).__name__}"
        )
    if opt.state:
        raise NotBatchableError("the optimizer has state already; pass fresh optimizers")
    for group in opt.param_groups:
        for key in ("maximize", "fused", "differentiable"):
            if group.get(key):
                raise NotBatchableError(f"torch.optim.SGD with {key}=True is not batched")
        if isinstance(group["lr"], Tensor):
            raise NotBatchableError("a tensor learning rate is not batched; pass a float")
