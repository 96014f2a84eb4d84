"""Flat vectors over a list of parameter tensors: the layout the curvature operators share.

A Krylov method works on vectors ``v ∈ ℝ^dim`` with ``dim = Σ numel(θ_i)``; an operator needs
``v`` as one block per parameter, each of that parameter's shape and dtype. With mixed dtypes
the flat vector is held in the widest (``torch.promote_types`` over all of them).

>>> import torch
>>> layout = FlatLayout([torch.zeros(2, 3), torch.zeros(4, dtype=torch.float64)])
>>> layout.dim, layout.dtype
(10, torch.float64)
>>> [tuple(b.shape) for b in layout.blocks(torch.arange(10.0))]
[(2, 3), (4,)]
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import torch
from torch import Tensor

__all__ = ["FlatLayout"]


class FlatLayout:
    """Shapes, sizes and dtypes of parameter tensors; ``dim``, the widest ``dtype``, ``device``."""

    def __init__(self, tensors: Sequence[Tensor]) -> None:
        self.shapes = [t.shape for t in tensors]
        self.sizes = [t.numel() for t in tensors]
        self.dtypes = [t.dtype for t in tensors]
        self.dim: int = sum(self.sizes)
        self.dtype: torch.dtype = functools.reduce(torch.promote_types, self.dtypes)
        self.device: torch.device = tensors[0].device

    def check(self, v: Tensor) -> None:
        """Refuse a vector that does not have ``dim`` entries, by name."""
        if v.numel() != self.dim:
            raise ValueError(f"v must have dim = {self.dim} entries, got shape {tuple(v.shape)}")

    def blocks(self, v: Tensor) -> list[Tensor]:
        """Split a flat ``v`` into one block per tensor, each in that tensor's shape and dtype."""
        flat = v.detach().reshape(-1).to(self.device, self.dtype)
        parts = flat.split(self.sizes)
        return [p.reshape(s).to(d) for p, s, d in zip(parts, self.shapes, self.dtypes, strict=True)]
