"""The one bridge from ``nn.Module`` to pure functions of a parameter dict.

Probes and training see a model as ``f(params, x)`` with ``params: dict[str, Tensor]`` holding the
trainable parameters by qualified name; buffers (e.g. the frozen outer layer of a two-layer net) and
frozen parameters are taken from the module as they are. This is ``torch.func.functional_call``
(as in curvlinops' ``examples/functorch.py``).
"""

from __future__ import annotations

import contextlib
import functools
import re
from collections.abc import Callable, Collection, Iterable, Mapping
from typing import Any, ParamSpec, TypeVar

import torch
from torch import Tensor, nn
from torch.func import functional_call
from torch.utils._pytree import tree_map

LossFn = Callable[[Tensor, Tensor], Tensor]
Params = dict[str, Tensor]
P = ParamSpec("P")
R = TypeVar("R")

AUTOCAST_DEVICES = tuple(
    d for d in ("cpu", "cuda", "mps", "xpu") if torch.amp.is_autocast_available(d)
)
"""The device types whose autocast a caller may have turned on."""


def autocast_off() -> contextlib.AbstractContextManager[Any]:
    """Turn off every autocast region the caller opened, for the ``with`` block.

    Under ``torch.autocast("cpu", dtype=torch.bfloat16)`` a matmul runs in bfloat16: a probe
    run there would measure a rounded model (sharpness 8e-4 off) without saying so. A probe
    measures the model in its own dtype; the caller's autocast resumes after the block.
    """
    stack = contextlib.ExitStack()
    for device in AUTOCAST_DEVICES:
        if torch.is_autocast_enabled(device):
            stack.enter_context(torch.autocast(device, enabled=False))
    return stack


def without_autocast(fn: Callable[P, R]) -> Callable[P, R]:
    """Run ``fn`` under :func:`autocast_off` (a probe that runs the model).

    >>> net = torch.nn.Linear(4, 1)
    >>> with torch.autocast("cpu", dtype=torch.bfloat16):
    ...     without_autocast(net)(torch.randn(2, 4)).dtype
    torch.float32
    """

    @functools.wraps(fn)
    def run(*args: P.args, **kwargs: P.kwargs) -> R:
        with autocast_off():
            return fn(*args, **kwargs)

    return run


def params_of(model: nn.Module, *, detach: bool = True) -> Params:
    """Return ``{name: tensor}`` for the trainable parameters of ``model``, in registration order.

    Args:
        model: any module.
        detach: return detached tensors (a snapshot view sharing storage) rather than the
            Parameters themselves.

    """
    return {
        name: (p.detach() if detach else p)
        for name, p in model.named_parameters()
        if p.requires_grad
    }


def clone_params(params: Mapping[str, Tensor]) -> Params:
    """Return an independent copy of a parameter dict (for e.g. the weights at initialization)."""
    return {name: t.detach().clone() for name, t in params.items()}


def apply(model: nn.Module, params: Mapping[str, Tensor], x: Tensor) -> Tensor:
    """Evaluate ``model`` at ``params`` (trainable parameters replaced, the rest as in the module).

    A parameter shared by several modules (tied weights) appears once in ``named_parameters``;
    every module holding it gets the value given under any of its names, as training does
    (two different values for one tied parameter are refused). A module registered under several
    names (one layer applied twice) is set once: ``functional_call(tie_weights=True)`` sets it
    under each name and restores it from the value it had just set, leaving the module holding
    the tensors passed (torch 2.13). Other keys (buffers) go to ``functional_call`` as given.

    Raises:
        ValueError: if two names of one tied parameter are given different tensors; where the
            model fails on floating inputs of another dtype than its parameters (one line,
            :func:`unmatched_dtype`).

    """
    held = _every_holder(model, params)
    try:
        return functional_call(model, held, (savable(x),), tie_weights=False, strict=False)
    except NotImplementedError:  # no forward-mode rule: the caller's fallback takes it
        raise
    except RuntimeError as err:
        wanted = unmatched_dtype(x, params.values(), err)
        if wanted is not None:
            raise ValueError(
                f"the inputs are {x.dtype} but the model's parameters are {wanted}, and the "
                f"model failed on them; pass x.to({wanted}) (and the targets)"
            ) from err
        raise


_MISMATCH = re.compile(
    r"same dtype|should be the same|same datatype|expected scalar type|but found", re.I
)
"""Torch's words for operands of two dtypes (``mat1 and mat2 must have the same dtype``; a
convolution's ``Input type (double) and bias type (float) should be the same``; ...)."""
_NAMES_A_FLOAT = re.compile(r"dtype|\b(double|float|half|bfloat16)\b", re.I)


def unmatched_dtype(x: Any, params: Iterable[Tensor], error: Exception) -> torch.dtype | None:
    """Return the parameters' dtype if ``error`` came from inputs ``x`` of none of theirs; else ``None``.

    Asked once a model failed on ``x`` (a model that casts its inputs itself runs as it is), by
    every caller that explains the failure (:func:`apply`, ``gs.train``). Floating inputs of
    another dtype when torch's words name a floating dtype; whole numbers (token ids, features
    a probe casts) only when they say two operands' dtypes differ (an embedding model's own
    ``Expected dtype int64 for index`` is its own error); any other error (out of memory) is
    the model's own.

    >>> x64, ids = torch.zeros(2, dtype=torch.float64), torch.zeros(2, dtype=torch.long)
    >>> unmatched_dtype(x64, [torch.zeros(1)], RuntimeError("expected m1 and m2 to have the same dtype"))
    torch.float32
    >>> unmatched_dtype(ids, [torch.zeros(1)], RuntimeError("... same dtype, but got Long and Float"))
    torch.float32
    >>> unmatched_dtype(ids, [torch.zeros(1)], RuntimeError("gather(): Expected dtype int64 for index"))
    >>> unmatched_dtype(x64, [torch.zeros(1)], RuntimeError("CUDA out of memory"))
    """
    if not isinstance(x, Tensor) or x.dtype == torch.bool:
        return None
    words = _NAMES_A_FLOAT if x.is_floating_point() else _MISMATCH
    if not words.search(str(error)):
        return None
    dtypes = {t.dtype for t in params if t.is_floating_point()}
    return None if not dtypes or x.dtype in dtypes else min(dtypes, key=str)


def savable(t: Any) -> Any:
    """Return ``t`` (a tensor or a tree of them), each inference-mode tensor copied out of it.

    A graph built outside inference mode cannot save a tensor made inside it: every function
    that hands a caller's inputs or targets to a graph (:func:`apply`, :func:`loss_at`, the
    Gauss–Newton operator's loss on its outputs) passes them through here.
    """
    if not isinstance(t, Tensor):
        return tree_map(savable, t) if isinstance(t, list | tuple | dict) else t
    if t.is_inference() and not torch.is_inference_mode_enabled():
        return t.clone()
    return t


def _every_holder(model: nn.Module, params: Mapping[str, Tensor]) -> Params:
    """Return ``params`` under one name per (module, attribute) holding each given parameter."""
    slots: list[tuple[str, int]] = []  # (name, parameter id), one per distinct module attribute
    ids: dict[str, int] = {}  # every name of every parameter
    visited: set[int] = set()
    for prefix, module in model.named_modules(remove_duplicate=False):
        first_visit = id(module) not in visited
        visited.add(id(module))
        for attribute, p in module._parameters.items():
            if p is not None:
                name = f"{prefix}.{attribute}" if prefix else attribute
                ids[name] = id(p)
                if first_visit:
                    slots.append((name, id(p)))
    given: dict[int, Tensor] = {}
    other: Params = {}
    for key, value in params.items():
        if key not in ids:
            other[key] = value
        elif given.setdefault(ids[key], value) is not value:
            raise ValueError(
                f"params: {key!r} names a parameter tied to another name given a different "
                "tensor; give each tied parameter one value"
            )
    return {**{name: given[i] for name, i in slots if i in given}, **other}


def loss_at(
    model: nn.Module, params: Mapping[str, Tensor], loss_fn: LossFn, batch: tuple[Tensor, Tensor]
) -> Tensor:
    """Return the scalar ``loss_fn(f(params, x), y)`` for ``batch = (x, y)``.

    Raises:
        ValueError: if ``loss_fn`` returns more than one number (``reduction="none"``).

    """
    x, y = batch
    return scalar_loss(loss_fn(apply(model, params, x), savable(y)))


def scalar_loss(loss: Tensor) -> Tensor:
    """Return ``loss`` if it is one number, else raise a ``ValueError`` that says how to fix it."""
    if loss.numel() != 1:
        raise ValueError(
            f"loss_fn returned a tensor of shape {tuple(loss.shape)}, not a scalar; reduce it "
            "over the batch (reduction='mean')"
        )
    return loss


def loss_and_grad(
    model: nn.Module,
    params: Mapping[str, Tensor],
    loss_fn: LossFn,
    batch: tuple[Tensor, Tensor],
    wrt: Collection[str] | None = None,
) -> tuple[Tensor, Params]:
    """Return ``(L(params), dL/dparams)`` by one reverse pass; gradients keyed like ``params``.

    Plain autograd on detached leaves (so a training-mode batch norm may update its running
    statistics in place, which a ``torch.func`` transform refuses); a name the loss does not
    read (or the second name of a tied parameter) gets a zero gradient. ``wrt``: differentiate
    only the names of ``params`` in it (the others are evaluated as given, and have no entry).
    """
    with torch.inference_mode(False), torch.enable_grad():
        values = {name: savable(value).detach() for name, value in params.items()}
        leaves = {n: v.requires_grad_() for n, v in values.items() if wrt is None or n in wrt}
        loss = loss_at(model, values, loss_fn, batch)
        grads = (
            torch.autograd.grad(loss, list(leaves.values()), allow_unused=True)
            if loss.requires_grad
            else (None,) * len(leaves)  # the loss reads none of them
        )
    zeros = torch.zeros_like
    return loss.detach(), {
        name: zeros(leaf) if g is None else g
        for (name, leaf), g in zip(leaves.items(), grads, strict=True)
    }


def hvp(
    model: nn.Module,
    params: Mapping[str, Tensor],
    loss_fn: LossFn,
    batch: tuple[Tensor, Tensor],
    vector: Mapping[str, Tensor],
) -> Params:
    """Return the Hessian-vector product ``∇²L(params) · v`` by forward-over-reverse.

    ``H v = d/dε ∇L(θ + ε v)|_{ε=0}``, computed as ``jvp(grad(L), (θ,), (v,))``
    (Pearlmutter 1994, "Fast exact multiplication by the Hessian").
    """

    def grad_fn(p: Params) -> Params:
        return torch.func.grad(lambda q: loss_at(model, q, loss_fn, batch))(p)

    return torch.func.jvp(grad_fn, (dict(params),), (dict(vector),))[1]


def flatten(tensors: Mapping[str, Tensor]) -> Tensor:
    """Concatenate the tensors of a parameter-shaped dict into one vector."""
    return torch.cat([t.reshape(-1) for t in tensors.values()])
