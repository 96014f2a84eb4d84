r"""Statistics of one recorded series against another (or against the step), for two reducers.

``loglog_slope``: the exponent :math:`p` of :math:`y ≈ c\,x^p` fitted over the checkpoints of one
trial, e.g. the loss against the gradient norm along a run (the square loss near a minimum has
:math:`L ∝ \|\nabla L\|^2`, cross-entropy near interpolation :math:`L ∝ \|\nabla L\|`).
``spearman``: Spearman's ρ of a series against the step (or another series), i.e. how
monotone a noisy series is along one run (the full-batch gradient norm under mini-batch SGD).

Pure functions of ``(x, y)`` returning ``(value, reason)``: ``value`` is nan with a ``reason``
when the data cannot give a trustworthy number (the reducers wrap the pair in
:class:`~gdscope.studies.reducers.Reduced`).
"""

from __future__ import annotations

import math

import numpy as np

from gdscope.stats.fits import loglog_fit
from gdscope.stats.trends import spearman

MIN_POINTS = 4
"""Checkpoints a fit needs (docs/claims.md: log–log fits over ≥ 4 points spanning ≥ 1 decade)."""
MIN_DECADES = 1.0
"""Decades of ``x`` a log–log fit must span."""
MIN_R2 = 0.95
"""R² a log–log fit must reach (the catalogue's rule for fitted rates and exponents)."""


def loglog_slope(x: np.ndarray, y: np.ndarray) -> tuple[float, str]:
    r"""Least-squares slope of :math:`\log y` on :math:`\log x` over the positive, finite pairs.

    The fit is trusted only with ≥ 4 pairs, ``x`` spanning ≥ 1 decade and R² ≥ 0.95; otherwise
    the value is nan and the reason says which rule failed and what the fit gave.

    >>> x = np.logspace(-3, -1, 5)
    >>> slope, why = loglog_slope(x, 3.0 * x**2)
    >>> round(slope, 6), why
    (2.0, '')
    >>> loglog_slope(x[:3], x[:3])[1]
    'log–log fit over 3 points, needs ≥ 4'

    """
    fit = loglog_fit(np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64))
    if fit.n_points < MIN_POINTS:
        return math.nan, f"log–log fit over {fit.n_points} points, needs ≥ {MIN_POINTS}"
    summary = f"slope {fit.exponent:.4g}, R² {fit.r2:.4f}, {fit.n_points} points"
    if fit.decades < MIN_DECADES:
        return math.nan, (f"x spans {fit.decades:.2f} decades, needs ≥ {MIN_DECADES:g} ({summary})")
    if not fit.r2 >= MIN_R2:
        return math.nan, f"log–log fit rejected: R² < {MIN_R2} ({summary})"
    return float(fit.exponent), ""


def spearman_rho(x: np.ndarray, y: np.ndarray) -> tuple[float, str]:
    """Spearman's ρ of ``y`` against ``x`` over the finite pairs (≥ 4 of them, neither constant).

    >>> rho, why = spearman_rho(np.arange(5.0), np.array([5.0, 3.0, 4.0, 1.0, 0.5]))
    >>> round(rho, 6), why
    (-0.9, '')

    """
    fit = spearman(np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64))
    if fit.n < MIN_POINTS:
        return math.nan, f"Spearman ρ over {fit.n} finite points, needs ≥ {MIN_POINTS}"
    if math.isnan(fit.rho):
        return math.nan, "x or y is constant, Spearman ρ is undefined"
    return fit.rho, ""
