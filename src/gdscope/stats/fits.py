r"""Least-squares fits of measured series: straight lines and power laws.

Plain arrays in (numpy, no torch), frozen dataclasses out. :math:`y \approx a + b x` by least
squares with R² and the slope's standard error; a power law :math:`y \approx c\,x^p` is the same
fit on :math:`(\log x, \log y)`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray


@dataclass(frozen=True)
class LinearFit:
    """Least squares ``y ≈ intercept + slope · x``.

    Attributes:
        slope: fitted slope (nan when fewer than 2 points or ``x`` constant).
        intercept: fitted intercept.
        r2: coefficient of determination; nan when ``y`` is constant on the points used.
        n_points: number of points used.
        slope_stderr: standard error of the slope (nan below 3 points).

    """

    slope: float
    intercept: float
    r2: float
    n_points: int
    slope_stderr: float


@dataclass(frozen=True)
class PowerFit:
    """Power law ``y ≈ prefactor · x^exponent`` fitted in log–log coordinates.

    Attributes:
        exponent: slope of ``log y`` against ``log x`` (nan when undefined).
        prefactor: ``exp(intercept)``.
        r2: R² in log–log coordinates.
        n_points: number of positive, finite pairs used.
        decades: ``log10(max x / min x)`` over the points used.

    """

    exponent: float
    prefactor: float
    r2: float
    n_points: int
    decades: float

    def meets(self, min_points: int = 4, min_decades: float = 1.0) -> bool:
        """Return whether the fit has the support the recipe asks (≥ 4 points over ≥ 1 decade)."""
        return (
            math.isfinite(self.exponent)
            and self.n_points >= min_points
            and self.decades >= min_decades
        )


def _vector(name: str, values: ArrayLike) -> NDArray[np.float64]:
    try:
        arr = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError) as err:
        raise ValueError(f"{name} must be a 1-D array of numbers, got {values!r}") from err
    if arr.ndim != 1:
        raise ValueError(f"{name} must be 1-D, got shape {arr.shape}")
    return arr


def _pair(
    x_name: str, x: ArrayLike, y_name: str, y: ArrayLike
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    xa, ya = _vector(x_name, x), _vector(y_name, y)
    if xa.shape != ya.shape:
        raise ValueError(
            f"{x_name} and {y_name} must have the same length, got {xa.size} and {ya.size}"
        )
    return xa, ya


def _steps(steps: ArrayLike, values_name: str, values: ArrayLike):
    s, v = _pair("steps", steps, values_name, values)
    if not np.all(np.isfinite(s)):
        raise ValueError("steps must be finite")
    if s.size > 1 and not np.all(np.diff(s) > 0):
        raise ValueError("steps must be strictly increasing")
    return s, v


# ---------------------------------------------------------------------------------------------
# least squares


def slope_fit(x: ArrayLike, y: ArrayLike) -> LinearFit:
    """Fit ``y ≈ intercept + slope · x`` by least squares on the finite pairs.

    Args:
        x: 1-D abscissae.
        y: 1-D ordinates, same length.

    Returns:
        A :class:`LinearFit`; slope and intercept are nan with fewer than 2 distinct ``x``.

    Raises:
        ValueError: if ``x`` or ``y`` is not 1-D or their lengths differ.

    """
    xa, ya = _pair("x", x, "y", y)
    keep = np.isfinite(xa) & np.isfinite(ya)
    return _linfit(xa[keep], ya[keep])


def _linfit(x: NDArray[np.float64], y: NDArray[np.float64]) -> LinearFit:
    n = int(x.size)
    nan = math.nan
    if n < 2:
        return LinearFit(nan, nan, nan, n, nan)
    xc, yc = x - x.mean(), y - y.mean()
    sxx = float(xc @ xc)
    if sxx == 0.0:
        return LinearFit(nan, nan, nan, n, nan)
    slope = float(xc @ yc) / sxx
    intercept = float(y.mean() - slope * x.mean())
    ss_res = float(np.sum((yc - slope * xc) ** 2))
    ss_tot = float(yc @ yc)
    r2 = 1.0 - ss_res / ss_tot if ss_tot > 0 else nan
    stderr = math.sqrt(ss_res / (n - 2) / sxx) if n > 2 else nan
    return LinearFit(slope, intercept, r2, n, stderr)


def loglog_fit(x: ArrayLike, y: ArrayLike) -> PowerFit:
    r"""Fit ``y ≈ c · x^p`` by least squares of ``log y`` on ``log x``.

    .. math:: \log y_i = \log c + p \log x_i + e_i

    Pairs with a non-positive or non-finite entry are left out (``n_points`` counts the rest).

    Args:
        x: 1-D positive abscissae (width, κ, η, ...).
        y: 1-D positive ordinates, same length.

    Returns:
        A :class:`PowerFit`; ``exponent`` is nan with fewer than 2 distinct ``x``. Use
        :meth:`PowerFit.meets` for the recipe's "≥ 4 points spanning ≥ 1 decade".

    Raises:
        ValueError: if ``x`` or ``y`` is not 1-D or their lengths differ.

    """
    xa, ya = _pair("x", x, "y", y)
    keep = np.isfinite(xa) & np.isfinite(ya) & (xa > 0) & (ya > 0)
    lx, ly = np.log(xa[keep]), np.log(ya[keep])
    fit = _linfit(lx, ly)
    decades = float((lx.max() - lx.min()) / math.log(10)) if lx.size else 0.0
    return PowerFit(fit.slope, _exp(fit.intercept), fit.r2, fit.n_points, decades)


def _exp(value: float) -> float:
    """``exp`` that returns inf instead of raising on overflow (and nan for nan)."""
    return math.exp(value) if not value > 709.0 else math.inf


# ---------------------------------------------------------------------------------------------
# linear rates
