"""TF32 for the NTK on CUDA: allowed in a block, then checked on a random sub-Gram in float32.

TF32 keeps 10 of float32's 23 mantissa bits in matmul and convolution inputs (NVIDIA Ampere
and later), several times faster; :func:`check_tf32` recomputes up to 16×16 random example
pairs in full float32 and warns when the largest error relative to the largest entry exceeds
:data:`TF32_TOLERANCE`.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Callable, Iterator

import torch
from torch import Tensor

__all__ = ["TF32_TOLERANCE", "allow_tf32", "check_tf32", "tf32_matmuls", "tf32_set"]

TF32_TOLERANCE = 1e-3
"""Largest error of a TF32 Gram relative to its largest entry that passes without a warning."""


def _flags() -> list[tuple[object, str, object, object]]:
    """``(holder, attribute, TF32 value, full-float32 value)`` of matmul's and convolution's flag.

    torch ≥ 2.9's ``fp32_precision`` where it exists: once a caller has set it, reading or
    writing the legacy ``allow_tf32`` raises (the two APIs may not be mixed).
    """
    matmul, conv = torch.backends.cuda.matmul, getattr(torch.backends.cudnn, "conv", None)
    if hasattr(matmul, "fp32_precision") and hasattr(conv, "fp32_precision"):
        return [
            (matmul, "fp32_precision", "tf32", "ieee"),
            (conv, "fp32_precision", "tf32", "ieee"),
        ]
    return [(matmul, "allow_tf32", True, False), (torch.backends.cudnn, "allow_tf32", True, False)]


@contextlib.contextmanager
def tf32_set(on: bool) -> Iterator[None]:
    """Allow (``on``) or forbid TF32 matmuls and convolutions on CUDA in the block; restore after."""
    flags = _flags()
    saved = [getattr(holder, name) for holder, name, _, _ in flags]
    for holder, name, tf32, full in flags:
        setattr(holder, name, tf32 if on else full)
    try:
        yield
    finally:
        for (holder, name, _, _), value in zip(flags, saved, strict=True):
            setattr(holder, name, value)


def allow_tf32() -> contextlib.AbstractContextManager[None]:
    """Allow TF32 matmuls and convolutions on CUDA inside the block; restore the flags after."""
    return tf32_set(True)


def tf32_matmuls() -> bool:
    """Whether CUDA float32 matmuls may run in TF32 now (either API, as the caller set it)."""
    matmul = torch.backends.cuda.matmul
    precision = getattr(matmul, "fp32_precision", None)
    if precision is None:
        return bool(matmul.allow_tf32)
    if precision == "none":  # inherits the global setting
        return getattr(torch.backends, "fp32_precision", "ieee") == "tf32"
    return precision == "tf32"


def check_tf32(
    gram: Tensor,
    compute: Callable[[Tensor, Tensor | None], Tensor],
    x1: Tensor,
    x2: Tensor | None,
    k: int,
    trace: bool,
) -> None:
    """Recompute a random sub-Gram without TF32 and warn if it differs by more than 1e-3.

    The recomputation forbids TF32 itself: with the caller's flags it would be TF32 again
    wherever they allow it globally.
    """
    xs2 = x1 if x2 is None else x2
    gen = torch.Generator().manual_seed(0)
    i = torch.randperm(x1.shape[0], generator=gen)[:16].to(x1.device)
    j = torch.randperm(xs2.shape[0], generator=gen)[:16].to(x1.device)
    with tf32_set(False):
        exact = compute(x1[i], xs2[j])
    if trace:
        fast = gram[i][:, j]
    else:
        blocks = gram.reshape(x1.shape[0], k, xs2.shape[0], k)
        fast = blocks[i][:, :, j].reshape(exact.shape)
    err = float((fast - exact).abs().max() / exact.abs().max().clamp_min(1e-300))
    if err > TF32_TOLERANCE:
        warnings.warn(
            f"TF32 NTK differs from float32 by {err:.2e} (relative to the largest entry) on a "
            f"random {len(i)}x{len(j)} sub-Gram, above {TF32_TOLERANCE:g}; use tf32=False",
            RuntimeWarning,
            stacklevel=3,
        )
