"""Sparsity of the trainable parameters: the fraction of entries that are exactly zero (claim C3).

A proximal step (ISTA's soft-threshold) sets weights to exactly ``0.0``; a subgradient step
``w − η(∇f + λ sign w)`` almost never does (it oscillates around 0 at an ``O(η)`` distance).
The probe counts exact zeros, with no tolerance, over every trainable parameter entry.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

__all__ = ["zero_fraction"]


def zero_fraction(tensors: Sequence[torch.Tensor]) -> float:
    """Return (number of entries equal to 0.0) / (number of entries) over ``tensors``.

    Raises:
        ValueError: when the tensors hold no entries.

    """
    total = sum(t.numel() for t in tensors)
    if total == 0:
        raise ValueError("zero_fraction needs at least one parameter entry, got none")
    zeros = sum(int(torch.count_nonzero(t.detach() == 0)) for t in tensors)
    return zeros / total
