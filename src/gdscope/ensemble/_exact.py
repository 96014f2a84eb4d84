r"""Per-member matrix products inside ``vmap``: what makes the ensemble bitwise equal to the loop.

Under ``vmap`` the matrix-product family becomes one batched kernel (``bmm``) per op. Elementwise
ops give the same bits batched or not, but BLAS does not: MKL's ``gemv``/``gemm`` with one output
column, ``addmm`` (bias accumulated inside the GEMM) and small shapes take other code paths than
the batched kernel, and even the *alignment* of an operand changes the bits. So
:func:`per_member_products` intercepts those ops at the Python level (a ``TorchFunctionMode``)
and runs them once per member, on that member's slice, with the op and the arguments the
one-model forward would use (64-byte-aligned, densely strided, as PyTorch allocates them).
Autograd records the per-member calls, so the backward products are the loop's too.

On the CPU the transcendental elementwise functions (``exp``, ``tanh``, ``sigmoid``, softplus,
GELU, SiLU, ELU, ``erf``, …) run per member too (:data:`TRANSCENDENTAL`): PyTorch computes most
elements of a tensor with a vectorized routine and its last few with the scalar one, which
round some inputs differently, so which elements of a member take which routine depends on
where the member sits in the stack (float64 softplus: 297 of 42,000 elements differ by one
ulp, found only some steps in, enough to move a run near the edge of stability to another
final loss).

What stays batched is everything else (exactly rounded elementwise ops such as ``+``, ``*``,
``/``, ``sqrt``, ReLU; the loss' reductions and their backward); their batch-invariance is not
assumed but checked against the one-model path on every member at the first step
(:meth:`gdscope.ensemble.Ensemble.check_against_loop`).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor
from torch._C._functorch import is_batchedtensor
from torch.overrides import TorchFunctionMode
from torch.utils._pytree import tree_flatten, tree_unflatten

ALIGNMENT = 64
"""Bytes: PyTorch's CPU allocator aligns every tensor to this; MKL's results depend on it."""

PRODUCTS: frozenset[Callable[..., Any]] = frozenset(
    {
        F.linear,
        F.bilinear,
        F.conv1d,
        F.conv2d,
        F.conv3d,
        F.conv_transpose1d,
        F.conv_transpose2d,
        F.conv_transpose3d,
        torch.matmul,
        torch.mm,
        torch.mv,
        torch.bmm,
        torch.dot,
        torch.inner,
        torch.addmm,
        torch.addmv,
        torch.addbmm,
        torch.baddbmm,
        torch.einsum,
        torch.tensordot,
        torch.chain_matmul,
        torch.linalg.multi_dot,
        F.cross_entropy,
        F.nll_loss,
        Tensor.__matmul__,
        Tensor.__rmatmul__,
        Tensor.matmul,
        Tensor.mm,
        Tensor.mv,
        Tensor.bmm,
        Tensor.dot,
        Tensor.inner,
        Tensor.addmm,
        Tensor.addmv,
        Tensor.baddbmm,
    }
)
"""The ops run once per member: matrix products and convolutions (BLAS / oneDNN kernels), and
the classification losses, whose batching rules reduce in another order than the fused kernel."""

TRANSCENDENTAL: frozenset[Callable[..., Any]] = frozenset(
    {
        torch.exp,
        torch.exp2,
        torch.expm1,
        torch.log,
        torch.log1p,
        torch.log2,
        torch.log10,
        torch.tanh,
        torch.sinh,
        torch.cosh,
        torch.atanh,
        torch.atan2,
        torch.logaddexp,
        torch.float_power,
        torch.sigmoid,
        torch.erf,
        torch.erfc,
        torch.sin,
        torch.cos,
        torch.pow,
        torch.special.expit,
        F.softplus,
        F.gelu,
        F.silu,
        F.mish,
        F.elu,
        F.selu,
        F.celu,
        F.logsigmoid,
        F.softmax,
        F.log_softmax,
        Tensor.exp,
        Tensor.expm1,
        Tensor.log,
        Tensor.log1p,
        Tensor.tanh,
        Tensor.sigmoid,
        Tensor.erf,
        Tensor.sin,
        Tensor.cos,
        Tensor.pow,
        Tensor.pow_,
        Tensor.__pow__,
        Tensor.__ipow__,
        Tensor.exp2,
        Tensor.sinh,
        Tensor.cosh,
        Tensor.atanh,
        Tensor.atan2,
        Tensor.logaddexp,
        Tensor.float_power,
        Tensor.softmax,
        Tensor.log_softmax,
    }
)
"""Elementwise functions run once per member on the CPU, where their vectorized and scalar
routines round differently (see the module docstring); on other devices they stay batched."""


def _dense(t: Tensor) -> bool:
    """Whether ``t`` covers its memory without gaps or overlaps (a permuted contiguous layout)."""
    expected = 1
    for stride, size in sorted((st, s) for s, st in zip(t.shape, t.stride(), strict=True) if s > 1):
        if stride != expected:
            return False
        expected *= size
    return True


def _as_allocated(t: Tensor, fresh: bool = False) -> Tensor:
    """Return ``t`` laid out as a freshly allocated tensor would be: aligned and dense.

    ``fresh`` (an elementwise function): a copy in any case, with ``t``'s own strides even where
    they leave gaps (a slice ``z[:, 11:]``): the one-model op runs on that view row by row, and
    which elements take the vectorized routine depends on it. An in-place op may write the copy.
    """
    if fresh:
        copy = torch.empty_strided(t.shape, t.stride(), dtype=t.dtype, device=t.device)
        return copy.copy_(t)
    if not _dense(t):
        return t.contiguous()
    if t.device.type == "cpu" and t.data_ptr() % ALIGNMENT != 0:
        return t.clone()  # same strides, fresh (aligned) storage
    return t


class _PerMember(torch.autograd.Function):
    """``fn(*tensors)``, evaluated member by member when called under ``vmap``."""

    generate_vmap_rule = False

    @staticmethod
    def forward(fn: Callable[..., Tensor], fresh: bool, *tensors: Tensor | None) -> Tensor:  # type: ignore[override]
        return fn(*tensors)

    @staticmethod
    def setup_context(ctx: Any, inputs: Any, output: Any) -> None:
        """Nothing to save: only the ``vmap`` rule is ever differentiated."""

    @staticmethod
    def backward(ctx: Any, *grads: Any) -> Any:  # pragma: no cover - unreachable
        raise RuntimeError("per-member products are differentiated through their vmap rule")

    @staticmethod
    def vmap(
        info: Any,
        in_dims: tuple[int | None, ...],
        fn: Callable[..., Tensor],
        fresh: bool,
        *tensors: Any,
    ) -> tuple[Tensor, int]:
        members = [
            None if dim is None else t.unbind(dim)
            for t, dim in zip(tensors, in_dims[2:], strict=True)
        ]
        outputs = []
        for i in range(info.batch_size):
            args = [
                t if parts is None else _as_allocated(parts[i], fresh)
                for t, parts in zip(tensors, members, strict=True)
            ]
            outputs.append(fn(*args))
        return torch.stack(outputs), 0


class _PerMemberProducts(TorchFunctionMode):
    def __torch_function__(
        self,
        func: Callable[..., Any],
        types: Any,
        args: tuple[Any, ...] = (),
        kwargs: dict[str, Any] | None = None,
    ) -> Any:
        kwargs = kwargs or {}
        product = func in PRODUCTS
        if not product and func not in TRANSCENDENTAL:
            return func(*args, **kwargs)
        leaves, spec = tree_flatten((args, kwargs))
        where = [i for i, leaf in enumerate(leaves) if isinstance(leaf, Tensor)]
        batched = [leaves[i] for i in where if is_batchedtensor(leaves[i])]
        if not batched or not (product or any(t.device.type == "cpu" for t in batched)):
            return func(*args, **kwargs)

        def call(*tensors: Tensor) -> Tensor:
            filled = list(leaves)
            for i, t in zip(where, tensors, strict=True):
                filled[i] = t
            call_args, call_kwargs = tree_unflatten(filled, spec)
            return func(*call_args, **call_kwargs)

        result = _PerMember.apply(call, not product, *(leaves[i] for i in where))
        if product or not _in_place(func, args, kwargs):
            return result
        target = args[0]  # written in place alone: later reads of it see the new values
        return target.copy_(result)


def _in_place(func: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> bool:
    """Whether ``func`` writes its first argument (``Tensor.pow_``, ``F.elu(..., inplace=True)``)."""
    if getattr(func, "__name__", "").endswith("_") and not func.__name__.endswith("__"):
        return True
    if func is Tensor.__ipow__:
        return True
    try:
        bound = inspect.signature(func).bind(*args, **kwargs)
    except (TypeError, ValueError):  # a builtin without a signature: no inplace argument
        return False
    return bool(bound.arguments.get("inplace", False))


@contextmanager
def per_member_products() -> Iterator[None]:
    """Within the block, matrix products on vmap-batched tensors run once per member."""
    with _PerMemberProducts():
        yield
