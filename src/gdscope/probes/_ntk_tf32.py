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

__all__ = ["TF32_TOLERANCE", "allow_tf32", "check_tf32"]

TF32_TOLERANCE = 1e-3
"""Largest error of a TF32 Gram relative to its largest entry that passes without a warning."""


@contextlib.contextmanager
def allow_tf32() -> Iterator[None]:
    """Allow TF32 matmuls and convolutions on CUDA inside the block; restore the flags after."""
    matmul, cudnn = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = matmul, cudnn


def check_tf32(
    gram: Tensor,
    compute: Callable[[Tensor, Tensor | None], Tensor],
    x1: Tensor,
    x2: Tensor | None,
    k: int,
    trace: bool,
) -> None:
    """Recompute a random sub-Gram without TF32 and warn if it differs by more than 1e-3."""
    xs2 = x1 if x2 is None else x2
    gen = torch.Generator().manual_seed(0)
    i = torch.randperm(x1.shape[0], generator=gen)[:16].to(x1.device)
    j = torch.randperm(xs2.shape[0], generator=gen)[:16].to(x1.device)
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
