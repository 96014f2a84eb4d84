r"""Shape statistics of one recorded series, and where it first crosses a threshold.

The statistics serve the reducers ``max_rise``, ``steps_to_eps_r2`` and ``late_over_early``; the
first crossing starts or ends a reducer's window (``window_from`` / ``window_until``).

Pure functions of ``(steps, values)`` returning ``(value, reason)``: ``value`` is nan with a
``reason`` when the series cannot give a trustworthy number (the reducers wrap the pair in
:class:`~gdscope.studies.reducers.Reduced`).
"""

from __future__ import annotations

import math

import numpy as np

from gdscope.stats.fits import slope_fit
from gdscope.stats.rates import steps_to_epsilon


def max_rise(values: np.ndarray, *, relative: bool = False) -> tuple[float, str]:
    r"""Largest step-to-step increase of a series: :math:`\max_i (v_{i+1} − v_i)`.

    With ``relative``, :math:`\max_i (v_{i+1} − v_i)/|v_i|`. A positive value means the series
    is not monotonically non-increasing (e.g. the loss at the edge of stability, Cohen et al.
    2021); a non-positive one means every checkpoint is ≤ the one before. Only consecutive pairs
    of finite values count.

    Returns:
        ``(rise, "")``, or ``(nan, reason)`` with fewer than two finite values.

    """
    v = np.asarray(values, dtype=np.float64)
    pairs = np.isfinite(v[:-1]) & np.isfinite(v[1:])
    if not pairs.any():
        return math.nan, f"needs two consecutive finite values, got {v.size} checkpoint(s)"
    rise = v[1:] - v[:-1]
    if relative:
        with np.errstate(divide="ignore", invalid="ignore"):
            rise = rise / np.abs(v[:-1])
        pairs &= v[:-1] != 0
        if not pairs.any():
            return math.nan, "every earlier value is 0, a relative rise is undefined"
    return float(np.max(rise[pairs])), ""


def eps_grid(low: float, high: float, per_decade: int) -> np.ndarray:
    """Return ``ε`` from ``high`` down to ``low``, ``per_decade`` points per decade (log-spaced)."""
    decades = math.log10(high / low)
    count = max(1, round(decades * per_decade)) + 1
    return np.logspace(math.log10(high), math.log10(low), count)


def steps_to_eps_r2(
    steps: np.ndarray,
    values: np.ndarray,
    eps_range: tuple[float, float],
    per_decade: int = 1,
    *,
    relative: bool = False,
) -> tuple[float, str]:
    r"""R² of the least-squares line through :math:`(\log(1/ε), T(ε))` over a grid of ``ε``.

    :math:`T(ε)` is the first recorded step with value ≤ ε (≤ ε · first value when
    ``relative``). A linear rate :math:`L_t ≈ C ρ^t` gives :math:`T(ε) ≈ (\log C + \log(1/ε)) /
    \log(1/ρ)`, a straight line in :math:`\log(1/ε)`; docs/claims.md E2 asks R² ≥ 0.98 over
    :math:`ε = 10^{-2} … 10^{-6}` (Allen-Zhu, Li & Song 2019, linear convergence).

    Returns:
        ``(r2, "")``; ``(nan, reason)`` when some ``ε`` is never reached or every ``T(ε)`` is
        equal (R² undefined).

    """
    grid = eps_grid(eps_range[0], eps_range[1], per_decade)
    reached = [steps_to_epsilon(steps, values, float(e), relative=relative) for e in grid]
    missing = [float(e) for e, t in zip(grid, reached, strict=True) if t is None]
    if missing:
        finite = values[np.isfinite(values)]
        best = float(finite.min()) if finite.size else math.nan
        scale = " × initial" if relative else ""
        return math.nan, f"never reached ε = {missing[0]:.3g}{scale} (best {best:.3g})"
    x = np.log(1.0 / grid)
    t = np.asarray(reached, dtype=np.float64)
    if np.ptp(t) == 0:
        return math.nan, f"every ε reached at the same step {int(t[0])}: R² undefined"
    return slope_fit(x, t).r2, ""


def first_crossing(
    steps: np.ndarray, values: np.ndarray, threshold: float, *, above: bool = True
) -> tuple[int | None, str]:
    """First recorded step whose value is ``≥ threshold`` (``above``) or ``≤ threshold``.

    Only finite values count. Returns ``(step, "")``, or ``(None, reason)`` when the series never
    gets there; the reason gives the closest value and its step (e.g. the largest sharpness).

    >>> first_crossing(np.array([0, 10, 20]), np.array([1.0, 3.0, 5.0]), 2.5)
    (10, '')
    >>> first_crossing(np.array([0, 10]), np.array([1.0, 2.0]), 2.5)[1]
    'never reached ≥ 2.5 (max 2 at step 10 of 0–10)'

    """
    s = np.asarray(steps)
    v = np.asarray(values, dtype=np.float64)
    finite = np.isfinite(v)
    hit = finite & (v >= threshold if above else v <= threshold)
    if hit.any():
        return int(s[int(np.argmax(hit))]), ""
    side = "≥" if above else "≤"
    if not finite.any():
        return None, f"never reached {side} {threshold:.4g} (no finite value)"
    pick = np.nanargmax if above else np.nanargmin
    i = int(pick(np.where(finite, v, np.nan)))
    closest = f"{'max' if above else 'min'} {v[i]:.4g} at step {int(s[i])}"
    return None, f"never reached {side} {threshold:.4g} ({closest} of {int(s[0])}–{int(s[-1])})"


def late_over_early(values: np.ndarray, fraction: float = 0.25) -> tuple[float, str]:
    r"""Median of the last ``fraction`` of a series over the median of its first ``fraction``.

    Each part holds :math:`k = \max(1, \lfloor \text{fraction} · n \rfloor)` of the ``n`` finite
    values (``fraction ≤ 0.5``, so the parts never overlap). A value < 1 says the series falls
    over the whole span even when it oscillates from one checkpoint to the next (the loss at the
    edge of stability, Cohen et al. 2021: non-monotone over short times, falling over long ones),
    which the ratio of two single checkpoints (``final_over_initial``) cannot say.

    Returns:
        ``(ratio, "")``, or ``(nan, reason)`` with fewer than two finite values or an early
        median of 0.

    >>> late_over_early(np.array([4.0, 6.0, 3.0, 5.0, 2.0, 4.0, 1.0, 3.0]), 0.25)
    (0.4, '')

    """
    v = np.asarray(values, dtype=np.float64)
    v = v[np.isfinite(v)]
    if v.size < 2:
        return math.nan, f"needs two finite values, got {v.size}"
    k = max(1, int(fraction * v.size))
    early, late = float(np.median(v[:k])), float(np.median(v[-k:]))
    if early == 0:
        return math.nan, f"median of the first {k} values is 0, the ratio is undefined"
    return late / early, ""
