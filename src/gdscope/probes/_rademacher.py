r"""Rademacher vectors (entries ±1 with probability ½ each) for the trace estimators.

Hutchinson's estimator ``tr A ≈ zᵀ A z`` and Hutch++ (:mod:`gdscope.probes.trace`) draw them.
Eight signs come from each random byte the generator draws (``randint`` of ``int64`` values costs
about eight times as much per sign), unpacked bit by bit.

>>> z = rademacher_rows(2, 5, torch.Generator().manual_seed(0), "cpu")
>>> z.shape, sorted(set(z.reshape(-1).tolist())) <= [-1.0, 1.0]
(torch.Size([2, 5]), True)
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["rademacher_rows"]


def rademacher_rows(
    count: int,
    dim: int,
    generator: torch.Generator,
    device: torch.device | str,
    dtype: torch.dtype = torch.float64,
) -> Tensor:
    """``(count, dim)`` ±1 entries of ``dtype`` on ``device``, eight from each random byte."""
    size = count * dim
    draws = torch.randint(0, 256, (-(-size // 8),), generator=generator, dtype=torch.uint8)
    shifts = torch.arange(8, dtype=torch.uint8)
    bits = draws.to(generator.device)[:, None].bitwise_right_shift(shifts).bitwise_and_(1)
    signs = bits.reshape(-1)[:size].to(device, dtype).mul_(2).sub_(1)
    return signs.reshape(count, dim)
