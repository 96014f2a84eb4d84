r"""Fitted statistics of measured series: linear rates, power laws, seed CIs, monotone trends.

Everything here works on plain arrays (numpy/scipy, no torch) and returns frozen dataclasses; the
claim layer compares these statistics with the bands written in a study (CLAIMS.md, "Measurement
recipes"). Nothing here decides what a study claims; it only measures.

* Linear rate: :math:`\log r_t \approx a + t \log ρ` on a window that skips the transient and
  stops before the numerical floor; :math:`\hat ρ = e^{\text{slope}}`, rejected when R² < 0.95.
* Power law: :math:`\log y \approx \log c + p \log x`; per seed, median over seeds, bootstrap CI of
  the median (seeds resampled with replacement).
* Monotone trend: Spearman's ρ and the number of adjacent inversions after sorting by ``x``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy import stats

Verdict = Literal["pass", "fail", "inconclusive"]
RATE_MIN_R2 = 0.95
DEFAULT_RELATIVE_FLOOR = 1e-12
_MAX_CANDIDATE_STARTS = 256
_R2_TIE = 0.1  # a start counts as "as good as the best" if its 1 − R² is within 10% of the best
_R2_ABS_TIE = 1e-10


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
class RateFit:
    r"""Linear convergence rate :math:`\hat ρ` fitted to a residual series.

    Attributes:
        rate: :math:`\hat ρ = e^{\text{slope}}`, the per-step contraction factor.
        slope: slope of ``log residual`` against ``step``.
        intercept: intercept of that fit (``log`` of the residual extrapolated to step 0).
        r2: R² of the fit on the window (nan if undefined).
        start: index of the first point of the window in the input arrays.
        stop: index one past the last point of the window (``steps[start:stop]``).
        n_points: ``stop − start``.
        ok: ``r2 ≥ 0.95`` and at least ``min_points`` points (the catalogue rejects the rest).
        slope_stderr: standard error of the slope.

    """

    rate: float
    slope: float
    intercept: float
    r2: float
    start: int
    stop: int
    n_points: int
    ok: bool
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


def fit_linear_rate(
    steps: ArrayLike,
    residuals: ArrayLike,
    *,
    skip: Literal["auto"] | int = "auto",
    floor: float | None = None,
    min_points: int = 5,
) -> RateFit:
    r"""Fit a linear (geometric) convergence rate to a residual series.

    .. math:: \log r_t \approx a + b\,t, \qquad \hat ρ = e^{b},

    so :math:`r_t \approx e^{a} \hat ρ^{\,t}` (per *step*: steps need not be consecutive).

    The window ``[start, stop)`` is chosen in three moves:

    1. **Cut** at the first non-finite residual (a diverged run: nothing after it is trusted) and at
       the first non-positive one (an exact zero is the floor itself).
    2. **Stop before the floor**: the window ends before the first residual ``≤ floor``; the
       default floor is ``1e-12 × r_0`` (float64 round-off of a relative residual). Pass ``floor``
       (absolute) for float32 runs, e.g. ``1e-6 × r_0``.
    3. **Skip the transient**: with ``skip=int`` that many leading points are dropped. With
       ``skip="auto"`` every start that keeps at least half of the points before the floor (and
       at least ``min_points``) is a candidate (at most 256, evenly spaced); each candidate window
       is fitted and the *earliest* start whose unexplained variance ``1 − R²`` is within 10% (or
       ``1e-10``) of the best candidate's is taken. A transient (a plateau or a faster early
       phase) bends ``log r`` and inflates ``1 − R²`` for windows that contain it; once it is
       skipped, longer windows only average the noise further, so the earliest near-best start is
       the longest window that is as straight as the straightest one. Keeping half the points
       stops the choice from fitting a short tail that happens to be straight.

    ``ok`` is ``R² ≥ 0.95`` with at least ``min_points`` points (CLAIMS.md rejects the rest as
    inconclusive). A constant series has undefined R² and is not ok.

    Args:
        steps: 1-D strictly increasing step numbers.
        residuals: 1-D residuals (loss, ``‖u − y‖``, relative error, ...), same length.
        skip: ``"auto"`` or the number of leading points to drop.
        floor: absolute numerical floor; default ``1e-12`` times the first residual.
        min_points: fewest points a window may have (≥ 3).

    Returns:
        A :class:`RateFit` (rate nan and ``ok=False`` when too few usable points remain).

    Raises:
        ValueError: if an argument is malformed (the message names it).

    Example:
        >>> fit = fit_linear_rate(range(50), [0.9**t for t in range(50)])
        >>> round(fit.rate, 12), fit.ok
        (0.9, True)

    """
    s, r = _steps(steps, "residuals", residuals)
    min_points = _min_points(min_points)
    if floor is not None and not (math.isfinite(floor) and floor >= 0):
        raise ValueError(f"floor must be a finite number ≥ 0 or None, got {floor!r}")
    stop = _usable_end(r, floor)
    if isinstance(skip, str):
        if skip != "auto":
            raise ValueError(f"skip must be 'auto' or an int ≥ 0, got {skip!r}")
        start = _auto_start(s, r, stop, min_points)
    elif isinstance(skip, int | np.integer) and not isinstance(skip, bool) and skip >= 0:
        start = min(int(skip), stop)
    else:
        raise ValueError(f"skip must be 'auto' or an int ≥ 0, got {skip!r}")
    fit = _linfit(s[start:stop], np.log(r[start:stop]))
    n = stop - start
    ok = n >= min_points and math.isfinite(fit.r2) and fit.r2 >= RATE_MIN_R2
    return RateFit(
        rate=_exp(fit.slope),
        slope=fit.slope,
        intercept=fit.intercept,
        r2=fit.r2,
        start=start,
        stop=stop,
        n_points=n,
        ok=ok,
        slope_stderr=fit.slope_stderr,
    )


def _min_points(min_points: int) -> int:
    if isinstance(min_points, bool) or not isinstance(min_points, int | np.integer):
        raise ValueError(f"min_points must be an int ≥ 3, got {min_points!r}")
    if min_points < 3:
        raise ValueError(f"min_points must be an int ≥ 3, got {min_points!r}")
    return int(min_points)


def _usable_end(r: NDArray[np.float64], floor: float | None) -> int:
    """Index one past the last residual before a non-finite, non-positive or floor value."""
    if r.size == 0 or not (math.isfinite(r[0]) and r[0] > 0):
        return 0
    limit = DEFAULT_RELATIVE_FLOOR * float(r[0]) if floor is None else floor
    bad = ~np.isfinite(r) | (r <= 0) | (r <= limit)
    return int(np.argmax(bad)) if bad.any() else int(r.size)


def _auto_start(s: NDArray[np.float64], r: NDArray[np.float64], stop: int, min_points: int) -> int:
    keep = max(min_points, math.ceil(stop / 2))
    last = stop - keep
    if last <= 0:
        return 0
    candidates = np.unique(np.linspace(0, last, min(last + 1, _MAX_CANDIDATE_STARTS)).round())
    log_r = np.log(r[:stop])
    unexplained = []
    for start in candidates.astype(int):
        r2 = _linfit(s[start:stop], log_r[start:stop]).r2
        unexplained.append(1.0 - r2 if math.isfinite(r2) else math.inf)
    best = min(unexplained)
    if not math.isfinite(best):
        return 0
    tolerance = best * (1 + _R2_TIE) + _R2_ABS_TIE
    first = next(i for i, u in enumerate(unexplained) if u <= tolerance)
    return int(candidates[first])


def steps_to_epsilon(
    steps: ArrayLike, values: ArrayLike, eps: float, *, relative: bool = True
) -> int | None:
    """Return the first step at which ``values ≤ eps`` (``≤ eps · values[0]`` when ``relative``).

    Non-finite values never count as reached.

    Args:
        steps: 1-D strictly increasing step numbers.
        values: 1-D values (loss, residual, ...), same length.
        eps: threshold, > 0.
        relative: compare with ``eps`` times the first value.

    Returns:
        The step (as an ``int``), or ``None`` if the threshold is never reached.

    Raises:
        ValueError: if an argument is malformed, or ``relative`` with a non-finite first value.

    """
    s, v = _steps(steps, "values", values)
    if not (isinstance(eps, int | float) and math.isfinite(eps) and eps > 0):
        raise ValueError(f"eps must be a finite number > 0, got {eps!r}")
    if v.size == 0:
        return None
    if relative and not math.isfinite(v[0]):
        raise ValueError(f"values[0] must be finite for a relative threshold, got {v[0]!r}")
    threshold = eps * float(v[0]) if relative else float(eps)
    hit = np.isfinite(v) & (v <= threshold)
    return int(s[int(np.argmax(hit))]) if hit.any() else None


# ---------------------------------------------------------------------------------------------
# over seeds


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
    if not (isinstance(ci, float | int) and 0 < ci < 1):
        raise ValueError(f"ci must be in (0, 1), got {ci!r}")
    if isinstance(n_boot, bool) or not isinstance(n_boot, int) or n_boot < 1:
        raise ValueError(f"n_boot must be an int ≥ 1, got {n_boot!r}")
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
    if isinstance(allowed_inversions, bool) or not isinstance(allowed_inversions, int):
        raise ValueError(f"allowed_inversions must be an int ≥ 0, got {allowed_inversions!r}")
    if allowed_inversions < 0:
        raise ValueError(f"allowed_inversions must be an int ≥ 0, got {allowed_inversions!r}")
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


def band_verdict(lo: float, hi: float, band: tuple[float, float]) -> Verdict:
    """Judge a confidence interval ``[lo, hi]`` against an expected ``band = (a, b)``.

    ``"pass"`` when the CI lies inside the band, ``"fail"`` when it lies entirely outside,
    ``"inconclusive"`` when it straddles an edge or is nan. Use ``±inf`` for one-sided bands
    (e.g. ``(-inf, -0.3)`` for "slope ≤ −0.3").

    Raises:
        ValueError: if ``lo > hi`` or the band is not an ordered pair.

    """
    a, b = band
    if not a <= b:
        raise ValueError(f"band must be (low, high) with low ≤ high, got {band!r}")
    if math.isnan(lo) or math.isnan(hi):
        return "inconclusive"
    if lo > hi:
        raise ValueError(f"lo must be ≤ hi, got lo={lo!r}, hi={hi!r}")
    if a <= lo and hi <= b:
        return "pass"
    if hi < a or lo > b:
        return "fail"
    return "inconclusive"
