"""Checks at construction that a probe measures a deterministic function of the parameters.

Batch norm in training mode normalizes with the statistics of the batch it is given. On one fixed
batch that is still a deterministic function of θ (the loss of the batch as a whole), so a user
may opt in: inside ``with allow_batch_statistics(model):`` the instruments accept it, and the
model's running statistics, which every forward pass in training mode updates, are put back as
they were when the block ends.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Mapping
from contextvars import ContextVar
from typing import Any, TypeVar

import torch
from torch import Tensor, nn
from torch.utils._pytree import tree_map

from gdscope.functional import LossFn, Params, apply, loss_at
from gdscope.probes._ntk_tf32 import tf32_matmuls

B = TypeVar("B")
_BATCH_STATISTICS: ContextVar[bool] = ContextVar("gdscope_batch_statistics", default=False)


@contextlib.contextmanager
def allow_batch_statistics(model: nn.Module) -> Iterator[nn.Module]:
    """Let the instruments measure ``model`` with batch norm in training mode on a fixed batch.

    The measured function is then the loss (or output) of the whole batch with its own batch
    statistics, e.g. the sharpness of training-mode BatchNorm as the optimizer sees it. The
    running statistics every training-mode forward updates are restored when the block ends.

    >>> import torch, gdscope as gs
    >>> net = torch.nn.Sequential(torch.nn.Linear(3, 8), torch.nn.BatchNorm1d(8), torch.nn.Linear(8, 1))
    >>> x, y = torch.randn(16, 3), torch.randn(16)
    >>> with allow_batch_statistics(net):
    ...     s = gs.probes.sharpness(net, gs.losses.mse, (x, y))
    >>> s > 0, bool(net[1].running_mean.abs().sum() == 0)
    (True, True)
    """
    token = _BATCH_STATISTICS.set(True)
    try:
        with buffers_restored(model):
            yield model
    finally:
        _BATCH_STATISTICS.reset(token)


@contextlib.contextmanager
def buffers_restored(model: nn.Module) -> Iterator[None]:
    """Run the block, then put every buffer of ``model`` back to its value before it."""
    saved = {name: buffer.clone() for name, buffer in model.named_buffers()}
    try:
        yield
    finally:
        with torch.no_grad():
            for name, buffer in model.named_buffers():
                if name in saved:
                    buffer.copy_(saved[name])


_FIX = "call model.eval() (or pass a model without dropout/batch norm in training mode)"


def uses_batch_statistics(model: nn.Module) -> bool:
    """Whether ``model`` normalizes with batch statistics here (opted in, batch norm training)."""
    return _BATCH_STATISTICS.get() and any(
        isinstance(m, nn.modules.batchnorm._BatchNorm) and m.training for m in model.modules()
    )


def check_deterministic(
    model: nn.Module,
    *,
    what: str,
    fn: Callable[[Params], Tensor] | None = None,
    params: Mapping[str, Tensor] | None = None,
    per_example: bool = False,
    value: Tensor | None = None,
) -> None:
    """Raise unless ``model`` (and ``fn``, a loss or an output of it) is deterministic in θ.

    As curvlinops does at construction: no module may draw random masks (dropout with ``p > 0``
    in training mode) or normalize with batch statistics (batch norm in training mode, or
    without running statistics); then, when ``fn`` is given, two evaluations at ``params``
    must agree (which catches randomness inside ``forward``).

    Args:
        model: the network.
        what: the probe's name, for the message (``"NTK"``, ``"sharpness"``, ...).
        fn: ``params ↦`` scalar tensor to evaluate twice; None for the module check only.
        params: where to evaluate ``fn`` (required with ``fn``).
        per_example: the probe evaluates examples one at a time (the NTK's Jacobian rows), so
            batch statistics are refused even inside :func:`allow_batch_statistics`.
        value: ``fn(params)`` already evaluated (a probe's graph build): ``fn`` then runs once
            more, not twice.

    Raises:
        ValueError: naming the offending module or the two differing values, and the fix.

    """
    refuse_random_modules(
        model, what=what, noun="model" if fn is None else "loss", per_example=per_example
    )
    if fn is None:
        return
    if params is None:
        raise ValueError("check_deterministic: params are required when fn is given")
    with torch.no_grad():
        detached = {n: p.detach() for n, p in params.items()}
        first = fn(detached) if value is None else value
        if not bool(torch.isfinite(first).all()):
            raise ValueError(
                f"{what}: the {'output' if per_example else 'loss'} is {first.item()!r} at "
                "these parameters, which has no curvature to measure; check the model, the data "
                "and the loss (a run that diverged ends before its probes)"
            )
        second = fn(detached)
    if not torch.allclose(first, second, rtol=1e-4, atol=0.0, equal_nan=True):
        raise ValueError(
            f"{what} needs a deterministic loss: two evaluations at the same parameters gave "
            f"{first.item()!r} and {second.item()!r}; {_FIX}"
        )


def refuse_kept_parameters(
    model: nn.Module,
    params: Mapping[str, Tensor],
    batch: object,
    what: str,
    loss_fn: LossFn | None = None,
) -> None:
    """Raise if the model's loss (or output) at copies of ``params`` still reads one of them.

    The probes differentiate at copies of the parameters put into the modules
    (:func:`gdscope.functional.apply`): a tensor computed from a parameter once and kept (a
    view ``self.w_t = self.lin.weight.t()`` made at construction), or a parameter read inside
    ``loss_fn``, is not the copy, so every derivative through it would be silently missing.
    ``loss_fn(f(x), y)`` on ``batch = (x, y)`` (``f(batch)`` without ``loss_fn``) is evaluated
    once with a graph on the first two examples (on all of them where those fail, e.g. a target
    that is not per example), and the graph is searched for the parameters' own leaves.
    """

    def fn(p: Params, b: Any) -> Tensor:
        return apply(model, p, b) if loss_fn is None else loss_at(model, p, loss_fn, b)

    # the copies too outside a caller's inference mode: an inference tensor cannot be saved
    with torch.inference_mode(False), torch.enable_grad():
        leaves = {name: t.detach().clone().requires_grad_(True) for name, t in params.items()}
        try:
            value = fn(leaves, few_examples(batch))
        except Exception:  # a loss that needs the whole batch: give it all
            value = fn(leaves, batch)
    refuse_kept_reads(model, params, value, what)


def refuse_kept_reads(
    model: nn.Module, params: Mapping[str, Tensor], value: Any, what: str
) -> None:
    """Raise if ``value``, computed at copies of ``params``, has a module's own one in its graph."""
    own = {id(p): name for name, p in model.named_parameters() if name in params}
    seen: set[object] = set()
    stack = [value.grad_fn] if isinstance(value, Tensor) else []
    while stack:
        node = stack.pop()
        if node is None or node in seen:
            continue
        seen.add(node)
        name = own.get(id(getattr(node, "variable", None)))
        if name is not None:
            raise ValueError(
                f"{what}: parameter {name!r} is read other than through the modules' parameters "
                "(a tensor computed from it once and kept, e.g. self.w_t = self.lin.weight.t() in "
                "__init__, or the parameter read inside loss_fn), which the probes cannot "
                "differentiate; compute such a tensor inside forward, and leave a penalty out "
                "of loss_fn (λ/2·‖θ‖² on every parameter adds λ to each Hessian eigenvalue)"
            )
        stack.extend(next_node for next_node, _ in node.next_functions)


def few_examples(batch: B, k: int = 2) -> B:
    """Return copies of the first ``k`` rows of every tensor in ``batch`` (a scalar as it is)."""
    return tree_map(lambda t: t[:k].clone() if isinstance(t, Tensor) and t.ndim else t, batch)


def refuse_coupled_examples(
    model: nn.Module, few: Tensor, what: str, kind: str = "the NTK is a per-example kernel"
) -> None:
    """Refuse a model whose output for one example depends on the others in its batch.

    The NTK is per example, ``K(x, x') = ∂f(x)/∂θ · ∂f(x')/∂θ``: a forward that mixes the
    examples (a mean or a cumulative sum over axis 0) has no such kernel, and each of its routes
    would give a different wrong one; so is each output's Hessian (``kind`` says which). Two
    examples are run together and one at a time (:func:`coupling_gap`). Where those forwards
    changed a buffer (``spectral_norm``'s power iteration in training mode), that is the cause.
    """
    if few.shape[0] < 2:
        return
    with torch.no_grad():
        before = {name: b.clone() for name, b in model.named_buffers()}
        together = model(few.clone())
        parts = [model(few[i : i + 1].clone()) for i in range(2)]
    if not all(isinstance(t, Tensor) and t.ndim and t.is_floating_point() for t in parts):
        return  # a squeezed or structured output: the model's own checks speak for these
    alone = torch.cat(parts)
    if not isinstance(together, Tensor) or together.shape != alone.shape:
        return
    tf32 = together.is_cuda and tf32_matmuls()  # TF32 products round to about 1e-3
    gap = coupling_gap(together, alone, 1e-2 if tf32 else None)
    if gap is None:
        return
    moved = [n for n, b in model.named_buffers() if n in before and not before[n].equal(b)]
    if moved:
        raise ValueError(
            f"{what}: two examples run together and one at a time differ by {gap:.3g} because "
            f"each forward changed the model's buffers ({', '.join(map(repr, moved[:4]))}): a "
            "forward in training mode updates buffers (e.g. spectral_norm's power iteration); "
            "call model.eval()"
        )
    raise ValueError(
        f"{what}: the model's output for an example depends on the other examples in its batch "
        f"(two examples run together and one at a time differ by {gap:.3g}), e.g. a mean or "
        f"cumulative sum over axis 0; {kind}, so measure a model whose examples do not interact "
        "(or, where a forward changes the model's state, call model.eval())"
    )


def coupling_gap(together: Tensor, apart: Tensor, tol: float | None = None) -> float | None:
    """Return ``max |together − apart|`` where it is beyond rounding, else None.

    ``together``: outputs of examples run in one batch; ``apart``: the same examples run in
    smaller batches. ``tol`` (default √ε of the dtype) relative to the largest output: rounding
    that differs between batch sizes (a deep chaotic net amplifies it to 3e-11 in float64, 7e-5
    in float32) stays below.
    """
    relative = torch.finfo(together.dtype).eps ** 0.5 if tol is None else tol
    gap = float((together - apart).abs().max())
    return gap if gap > relative * max(float(apart.abs().max()), 1e-30) else None


def refuse_random_modules(
    model: nn.Module,
    *,
    what: str,
    noun: str = "model",
    per_example: bool = False,
    fix: str | None = None,
) -> None:
    """Raise if a module of ``model`` draws random masks or normalizes with batch statistics.

    The first half of :func:`check_deterministic`, for a probe that builds its graph (which
    would already update batch norm's running statistics) before it evaluates ``fn`` again.
    ``fix`` replaces the advice for a module in training mode (default: call ``model.eval()``).

    >>> net = nn.Sequential(nn.Linear(2, 2), nn.Dropout(0.5))
    >>> refuse_random_modules(net, what="my probe")
    Traceback (most recent call last):
    ...
    ValueError: my probe needs a deterministic model: module '1' (Dropout) is in training mode, \
which draws random masks; call model.eval() (or pass a model without dropout/batch norm in \
training mode)
    >>> refuse_random_modules(net.eval(), what="my probe")
    """
    for name, module in model.named_modules():
        reason = _random_module(module, per_example, fix)
        if reason is not None:
            raise ValueError(
                f"{what} needs a deterministic {noun}: module {name!r} ({type(module).__name__}) "
                f"{reason}"
            )


def _random_module(
    module: nn.Module, per_example: bool = False, fix: str | None = None
) -> str | None:
    """Say why ``module`` makes the output random or batch-dependent, or return None.

    Also an embedding with ``max_norm``: its forward renormalizes rows of its weight in place,
    so measuring would rewrite the model.
    """
    if isinstance(module, nn.modules.dropout._DropoutNd) and module.training and module.p > 0:
        return f"is in training mode, which draws random masks; {fix or _FIX}"
    if isinstance(module, (nn.Embedding, nn.EmbeddingBag)) and module.max_norm is not None:
        return (
            f"renormalizes rows of its weight in place in every forward (max_norm="
            f"{module.max_norm}), which measuring would do too; measure a copy with max_norm=None"
        )
    if isinstance(module, nn.modules.batchnorm._BatchNorm):
        running = module.running_mean is not None and module.running_var is not None
        if per_example and (module.training or not running):  # opted in or not
            return (
                "normalizes with batch statistics, which couple the examples; this probe "
                "differentiates one example at a time: "
                + (
                    "call model.eval()"
                    if running
                    else "construct it with track_running_stats=True and call model.eval()"
                )
            )
        if _BATCH_STATISTICS.get():
            return None  # opted in: the statistics of the fixed batch given
        if module.training:
            return "is in training mode, which normalizes with batch statistics; " + (
                fix
                or f"{_FIX}, or measure on a fixed batch inside gdscope.probes."
                "allow_batch_statistics(model)"
            )
        if module.running_mean is None or module.running_var is None:
            return (
                "has no running statistics, so it normalizes with batch statistics even in "
                "eval mode; construct it with track_running_stats=True"
            )
    return None
