r"""Linear convergence rates of measured residual series, and steps to reach a tolerance.

:math:`\log r_t \approx a + t \log ρ` on a window that skips the transient and stops before the
numerical floor of the run's precision; :math:`\hat ρ = e^{\text{slope}}`, rejected when
R² < 0.95. Nothing here decides what a study claims; it only measures.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import numpy as np
from numpy.typing import ArrayLike, NDArray

from gdscope._checks import positive_float
from gdscope.stats.fits import _exp, _linfit, _steps

RATE_MIN_R2 = 0.95
DEFAULT_RELATIVE_FLOOR = 1e-12
RELATIVE_FLOORS = {"float64": DEFAULT_RELATIVE_FLOOR, "float32": 1e-9}
"""Default floor of a rate fit, relative to the first residual, by the precision of the run.

float64: round-off of a relative residual. float32: gradient descent stalls where a step's change
to a weight falls under the weight's round-off; measured on wide NTK MLPs (widths 512–4096, 1000
steps) at 1e-11–1e-10 of the initial loss, so the float32 floor stops a decade above that."""
_MAX_CANDIDATE_STARTS = 256
_R2_TIE = 0.1  # a start counts as "as good as the best" if its 1 − R² is within 10% of the best
_R2_ABS_TIE = 1e-10


def relative_floor(dtype: object) -> float:
    """Return the default relative floor of a rate fit on a run in ``dtype`` (float64's if unknown).

    >>> relative_floor("float32"), relative_floor(None)
    (1e-09, 1e-12)
    """
    if not isinstance(dtype, str):
        return DEFAULT_RELATIVE_FLOOR
    return RELATIVE_FLOORS.get(dtype, DEFAULT_RELATIVE_FLOOR)


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


def fit_linear_rate(
    steps: ArrayLike,
    residuals: ArrayLike,
    *,
    skip: Literal["auto"] | int = "auto",
    floor: float | None = None,
    min_points: int = 5,
    relative_floor: float = DEFAULT_RELATIVE_FLOOR,
) -> RateFit:
    r"""Fit a linear (geometric) convergence rate to a residual series.

    .. math:: \log r_t \approx a + b\,t, \qquad \hat ρ = e^{b},

    so :math:`r_t \approx e^{a} \hat ρ^{\,t}` (per *step*: steps need not be consecutive).

    The window ``[start, stop)`` is chosen in three moves:

    1. **Cut** at the first non-finite residual (a diverged run: nothing after it is trusted) and at
       the first non-positive one (an exact zero is the floor itself).
    2. **Stop before the floor**: the window ends before the first residual ``≤ floor``; the
       default floor is ``relative_floor × r_0``, ``1e-12 × r_0`` unless told (float64 round-off
       of a relative residual; :data:`RELATIVE_FLOORS` has the float32 one).
    3. **Skip the transient**: with ``skip=int`` that many leading points are dropped. With
       ``skip="auto"`` every start that keeps at least half of the points before the floor (and
       at least ``min_points``) is a candidate (at most 256, evenly spaced); each candidate window
       is fitted and the *earliest* start whose unexplained variance ``1 − R²`` is within 10% (or
       ``1e-10``) of the best candidate's is taken. A transient (a plateau or a faster early
       phase) bends ``log r`` and inflates ``1 − R²`` for windows that contain it; once it is
       skipped, longer windows only average the noise further, so the earliest near-best start is
       the longest window that is as straight as the straightest one. Keeping half the points
       stops the choice from fitting a short tail that happens to be straight.

    ``ok`` is ``R² ≥ 0.95`` with at least ``min_points`` points (docs/claims.md rejects the rest as
    inconclusive). A constant series has undefined R² and is not ok.

    Args:
        steps: 1-D strictly increasing step numbers.
        residuals: 1-D residuals (loss, ``‖u − y‖``, relative error, ...), same length.
        skip: ``"auto"`` or the number of leading points to drop.
        floor: absolute numerical floor; default ``relative_floor`` times the first residual.
        min_points: fewest points a window may have (≥ 3).
        relative_floor: the default floor over the first residual, in ``[0, 1)``.

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
    if not 0 <= relative_floor < 1:
        raise ValueError(f"relative_floor must be in [0, 1), got {relative_floor!r}")
    stop = _usable_end(r, floor, relative_floor)
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


def _usable_end(r: NDArray[np.float64], floor: float | None, relative_floor: float) -> int:
    """Index one past the last residual before a non-finite, non-positive or floor value."""
    if r.size == 0 or not (math.isfinite(r[0]) and r[0] > 0):
        return 0
    limit = relative_floor * float(r[0]) if floor is None else floor
    bad = ~np.isfinite(r) | (r <= 0) | (r <= limit)
    return int(np.argmax(bad)) if bad.any() else int(r.size)


def _auto_start(s: NDArray[np.float64], r: NDArray[np.float64], stop: int, min_points: int) -> int:
    keep = max(min_points, math.ceil(stop / 2))
    last = stop - keep
    if last <= 0:
        return 0
    candidates = np.unique(np.linspace(0, last, min(last + 1, _MAX_CANDIDATE_STARTS)).round())
    unexplained = _unexplained_from(s[:stop], np.log(r[:stop]), candidates.astype(int))
    best = float(unexplained.min())
    if not math.isfinite(best):
        return 0
    tolerance = best * (1 + _R2_TIE) + _R2_ABS_TIE
    return int(candidates[int(np.argmax(unexplained <= tolerance))])


def _unexplained_from(
    x: NDArray[np.float64], y: NDArray[np.float64], starts: NDArray[np.int_]
) -> NDArray[np.float64]:
    r"""``1 − R²`` of the least-squares line on ``(x[k:], y[k:])`` for every ``k`` in ``starts``.

    All windows at once from suffix sums of the data centred on their overall means (so the
    sums stay of the order of the windows' own spreads): with ``n``, ``Sx``, ``Sy``, ``Sxx``,
    ``Syy``, ``Sxy`` the sums over a window, :math:`s_{xx} = S_{xx} − S_x^2/n` (likewise
    :math:`s_{yy}`, :math:`s_{xy}`) and :math:`1 − R^2 = 1 − s_{xy}^2/(s_{xx} s_{yy})`. ``inf``
    where ``R²`` is undefined (a constant ``x`` or ``y``).

    >>> x = np.arange(6.0)
    >>> _unexplained_from(x, 2 * x + 1, np.array([0, 3])).round(12).tolist()
    [0.0, 0.0]
    >>> bool(_unexplained_from(x, np.array([0.0, 1, 0, 1, 0, 1]), np.array([0]))[0] > 0.9)
    True
    """
    xc, yc = x - x.mean(), y - y.mean()

    def suffix(values: NDArray[np.float64]) -> NDArray[np.float64]:
        return np.cumsum(values[::-1])[::-1][starts]

    n = (x.size - starts).astype(float)
    sx, sy = suffix(xc), suffix(yc)
    sxx = suffix(xc * xc) - sx * sx / n
    syy = suffix(yc * yc) - sy * sy / n
    sxy = suffix(xc * yc) - sx * sy / n
    defined = (sxx > 0) & (syy > 0)
    with np.errstate(divide="ignore", invalid="ignore"):
        r2 = np.where(defined, sxy * sxy / (sxx * syy), np.nan)
    return np.where(defined, 1.0 - r2, np.inf)


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
    eps = positive_float("eps", eps)
    if v.size == 0:
        return None
    if relative and not math.isfinite(v[0]):
        raise ValueError(f"values[0] must be finite for a relative threshold, got {v[0]!r}")
    threshold = eps * float(v[0]) if relative else float(eps)
    hit = np.isfinite(v) & (v <= threshold)
    return int(s[int(np.argmax(hit))]) if hit.any() else None


# ---------------------------------------------------------------------------------------------
# over seeds
