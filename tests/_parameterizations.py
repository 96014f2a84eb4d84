"""Helpers of tests/test_models*.py: parameterization names, ntk's bias scale, √2, sphere points."""

from __future__ import annotations

import math

import torch

from gdscope.models import PARAMETERIZATIONS, get_parameterization

PARAMS = sorted(PARAMETERIZATIONS)
BETA = get_parameterization("ntk").bias_scale
SQ2 = math.sqrt(2.0)


def _sphere(n: int, d: int, seed: int = 0, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    x = torch.randn(n, d, generator=torch.Generator().manual_seed(seed), dtype=dtype)
    return x / x.norm(dim=1, keepdim=True)
