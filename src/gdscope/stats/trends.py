r"""Statistics over seeds and trends: median exponents with bootstrap CIs, and Spearman.

* Power law over seeds: fit per seed, median over seeds, bootstrap CI of the median (seeds
  resampled with replacement).
* Monotone trend: Spearman's ρ and the number of adjacent inversions after sorting by ``x``.

What a CI means for a claim (PASS / FAIL / INCONCLUSIVE) is decided in
:func:`gdscope.studies.verdict.band_status`.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy import stats

from gdscope._checks import nonnegative_int, positive_int, real
from gdscope.stats.fits import _pair, loglog_fit, slope_fit


@dataclass(frozen=True)
class SeedCI:
    """Median over seeds of a per-seed statistic, with a bootstrap percentile CI of that median.

    Attributes:
        median: median of the finite per-seed values (nan if none).
        lo: lower end of the CI.
        hi: upper end of the CI.
        per_seed: the per-seed values in row order (nan where a seed's fit was undefined).
        n_seeds: number of finite per-seed values that entered the median.

    """

    median: float
    lo: float
    hi: float
    per_seed: tuple[float, ...]
    n_seeds: int


@dataclass(frozen=True)
class MonotoneFit:
    """Spearman rank correlation and adjacent-inversion counts of ``y`` ordered by ``x``.

    Attributes:
        rho: Spearman's ρ (nan when ``x`` or ``y`` is constant or fewer than 2 points).
        inversions: adjacent pairs that break the trend given by the sign of ``rho`` (strict
            decreases if ``rho ≥ 0`` or nan, strict increases otherwise).
        n: number of finite pairs used.
        ok_increasing: ``y`` is non-decreasing in ``x`` up to ``allowed_inversions`` strict drops.
        ok_decreasing: ``y`` is non-increasing in ``x`` up to ``allowed_inversions`` strict rises.

    """

    rho: float
    inversions: int
    n: int
    ok_increasing: bool
    ok_decreasing: bool


# ---------------------------------------------------------------------------------------------
# validation


def exponent_over_seeds(
    x: ArrayLike, Y: ArrayLike, *, ci: float = 0.9, n_boot: int = 2000, seed: int = 0
) -> SeedCI:
    """Fit a log–log exponent per seed and return its median with a bootstrap CI.

    Each row of ``Y`` is one seed's ``y`` against the shared ``x`` (or ``x`` has one row per
    seed). The CI is the percentile interval of the median over ``n_boot`` resamples of the seeds
    with replacement (Efron & Tibshirani 1993, ch. 13); seeds whose fit is undefined are left out.

    Args:
        x: shape ``(p,)`` or ``(s, p)``.
        Y: shape ``(s, p)``.
        ci: confidence level in (0, 1).
        n_boot: number of bootstrap resamples, ≥ 1.
        seed: seed of the bootstrap generator.

    Returns:
        A :class:`SeedCI` (all nan when no seed has a defined exponent).

    Raises:
        ValueError: if an argument is malformed (the message names it).

    """
    return _over_seeds(lambda a, b: loglog_fit(a, b).exponent, x, Y, ci, n_boot, seed)


def slope_over_seeds(
    x: ArrayLike, Y: ArrayLike, *, ci: float = 0.9, n_boot: int = 2000, seed: int = 0
) -> SeedCI:
    """Like :func:`exponent_over_seeds` for the linear slope of ``y`` on ``x`` (:func:`slope_fit`)."""
    return _over_seeds(lambda a, b: slope_fit(a, b).slope, x, Y, ci, n_boot, seed)


def _over_seeds(
    fit: Callable[[NDArray[np.float64], NDArray[np.float64]], float],
    x: ArrayLike,
    Y: ArrayLike,
    ci: float,
    n_boot: int,
    seed: int,
) -> SeedCI:
    ya = np.asarray(Y, dtype=np.float64)
    if ya.ndim != 2:
        raise ValueError(f"Y must be 2-D (seeds × points), got shape {ya.shape}")
    xa = np.asarray(x, dtype=np.float64)
    if xa.ndim == 1 and xa.shape[0] == ya.shape[1]:
        xa = np.broadcast_to(xa, ya.shape)
    if xa.shape != ya.shape:
        raise ValueError(f"x must have shape ({ya.shape[1]},) or {ya.shape}, got {xa.shape}")
    ci = real("ci", ci, low=0.0, high=1.0, low_open=True, high_open=True)
    n_boot = positive_int("n_boot", n_boot)
    per_seed = tuple(float(fit(xr, yr)) for xr, yr in zip(xa, ya, strict=True))
    vals = np.array([v for v in per_seed if math.isfinite(v)])
    if vals.size == 0:
        return SeedCI(math.nan, math.nan, math.nan, per_seed, 0)
    rng = np.random.default_rng(seed)
    medians = np.median(vals[rng.integers(0, vals.size, (n_boot, vals.size))], axis=1)
    lo, hi = np.quantile(medians, [(1 - ci) / 2, (1 + ci) / 2])
    return SeedCI(float(np.median(vals)), float(lo), float(hi), per_seed, int(vals.size))


# ---------------------------------------------------------------------------------------------
# trends and verdicts


def spearman(x: ArrayLike, y: ArrayLike, *, allowed_inversions: int = 0) -> MonotoneFit:
    """Return Spearman's ρ of ``y`` against ``x`` and the adjacent inversions of the trend.

    After sorting the pairs by ``x``, an inversion of an increasing trend is an adjacent strict
    drop ``y_{i+1} < y_i`` (ties in ``y`` are not inversions; ties in ``x`` are ordered in the
    trend's favour), and of a decreasing trend an adjacent strict rise. Non-finite pairs are left
    out.

    Args:
        x: 1-D abscissae.
        y: 1-D ordinates, same length.
        allowed_inversions: inversions tolerated by ``ok_increasing`` / ``ok_decreasing``.

    Returns:
        A :class:`MonotoneFit`.

    Raises:
        ValueError: if an argument is malformed (the message names it).

    """
    xa, ya = _pair("x", x, "y", y)
    allowed_inversions = nonnegative_int("allowed_inversions", allowed_inversions)
    keep = np.isfinite(xa) & np.isfinite(ya)
    xa, ya = xa[keep], ya[keep]
    drops = int(np.sum(np.diff(ya[np.lexsort((ya, xa))]) < 0))
    rises = int(np.sum(np.diff(ya[np.lexsort((-ya, xa))]) > 0))
    constant = xa.size < 2 or np.all(xa == xa[0]) or np.all(ya == ya[0])
    rho = math.nan if constant else float(stats.spearmanr(xa, ya).statistic)  # type: ignore[attr-defined]
    inversions = rises if rho < 0 else drops
    return MonotoneFit(
        rho=rho,
        inversions=inversions,
        n=int(xa.size),
        ok_increasing=drops <= allowed_inversions,
        ok_decreasing=rises <= allowed_inversions,
    )
