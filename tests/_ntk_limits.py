"""Helpers of tests/test_ntk_convention.py and tests/test_peers.py: empirical NTKs of
``ntk``-parameterized MLPs at several widths, and their distance to a limiting kernel.

The grams are drawn once per activation and process (``functools.cache``), so both files compare
the same draws with gdscope's analytic kernel and with neural-tangents' ``stax`` kernel.
"""

from __future__ import annotations

import dataclasses
import functools
import math

import numpy as np
import torch

from gdscope.models import mlp
from gdscope.models.parameterization import NTK, ROLES
from gdscope.probes.ntk import ntk_gram

D_IN, N, DEPTH = 5, 8, 3
WIDTHS = (64, 128, 256, 512, 1024)  # 4 octaves
SEEDS = 16
SLOPE_BAND = (-0.7, -0.3)
"""Where the log–log slope of the error in the width must lie (the theory's −1/2)."""

REV1 = dataclasses.replace(
    NTK,
    name="ntk-revision-1",
    **{role: dataclasses.replace(NTK.rule(role), gain_in_multiplier=False) for role in ROLES},
)
"""The ``ntk`` parameterization before revision 2 (the activation gain in the init std), as data:
its analytic kernel is what gdscope's ReLU net converged to then."""


@functools.cache
def inputs() -> torch.Tensor:
    """``N`` float64 Gaussian inputs in ``D_IN`` dimensions (seed 0)."""
    return torch.randn(N, D_IN, generator=torch.Generator().manual_seed(0), dtype=torch.float64)


def _gram(activation: str, width: int, seed: int) -> np.ndarray:
    net = mlp(
        D_IN, width, depth=DEPTH, activation=activation, parameterization="ntk", seed=seed,
        dtype=torch.float64,
    )  # fmt: skip
    return ntk_gram(net, inputs()).numpy()


@functools.cache
def grams(activation: str) -> tuple[tuple[np.ndarray, ...], ...]:
    """``SEEDS`` float64 empirical NTKs at initialization per width of ``WIDTHS``."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # many small products: threads cost more than they give
    try:
        return tuple(tuple(_gram(activation, m, s) for s in range(SEEDS)) for m in WIDTHS)
    finally:
        torch.set_num_threads(threads)


def empirical_errors(activation: str, reference: np.ndarray) -> np.ndarray:
    """RMS over seeds of ``‖K_m − Θ‖_F/‖Θ‖_F`` at each width of ``WIDTHS``."""
    norm = np.linalg.norm(reference)
    return np.array(
        [math.sqrt(np.mean([np.linalg.norm(k - reference) ** 2 for k in g])) / norm
         for g in grams(activation)]
    )  # fmt: skip


def slope(errors: np.ndarray) -> float:
    """Log–log least-squares slope of ``errors`` against ``WIDTHS``."""
    return float(np.polyfit(np.log(WIDTHS), np.log(errors), 1)[0])
