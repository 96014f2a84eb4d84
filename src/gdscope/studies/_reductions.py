"""The per-series reductions of :mod:`gdscope.studies.reducers`: ``(reducer, steps, values) → Reduced``.

Each function reads the reducer's options (``eps``, ``skip``, ``fraction``…) and the series a
reducer kept (its windows already applied); :data:`REDUCTIONS` maps a ``reduce`` name to its
function, and :data:`RATE_FITS` does for the rate fits, which also take the relative floor of
the trial's precision. ``Reduced`` carries the value, or nan with the reason.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, NamedTuple, Protocol

import numpy as np

from gdscope.stats.rates import DEFAULT_RELATIVE_FLOOR, fit_linear_rate, steps_to_epsilon
from gdscope.studies import _paired_series, _series

if TYPE_CHECKING:
    from gdscope.studies.table import TrialRecord


class ReducerFields(Protocol):
    """What the reductions read of a :class:`~gdscope.studies.reducers.Reducer`.

    A protocol, not the class: the reducer module imports this one.
    """

    @property
    def label(self) -> str: ...
    @property
    def metric(self) -> str | None: ...
    @property
    def eps(self) -> float | None: ...
    @property
    def relative(self) -> bool: ...
    @property
    def eps_range(self) -> tuple[float, float] | None: ...
    @property
    def per_decade(self) -> int: ...
    @property
    def window(self) -> tuple[float, float] | None: ...
    @property
    def window_from(self) -> Any: ...
    @property
    def window_until(self) -> Any: ...
    @property
    def rate_window(self) -> str | None: ...
    @property
    def fraction(self) -> float: ...
    @property
    def versus(self) -> str | None: ...
    @property
    def skip(self) -> Any: ...
    @property
    def floor(self) -> float | None: ...


class Reduced(NamedTuple):
    """One trial reduced to a number; ``reason`` says why ``value`` is nan (else ``""``)."""

    value: float
    reason: str = ""


def window_text(reducer: ReducerFields) -> str:
    """Say which checkpoints the reducer keeps, for reasons (``""`` for all)."""
    window = "" if reducer.window is None else f" in window {list(reducer.window)}"
    for word, crossing in (("from", reducer.window_from), ("until", reducer.window_until)):
        if crossing is not None:
            window += f" {word} the first {crossing.text(reducer.metric)}"
    if reducer.rate_window is not None:
        window += f" where the rate of {reducer.rate_window} is fitted"
    return window


def checked(value: float, what: str) -> Reduced:
    return Reduced(value) if math.isfinite(value) else Reduced(math.nan, f"{what} is {value}")


def _final(r: ReducerFields, s: np.ndarray, v: np.ndarray) -> Reduced:
    return checked(float(v[-1]), f"{r.label} (step {int(s[-1])})")


def _initial(r: ReducerFields, s: np.ndarray, v: np.ndarray) -> Reduced:
    return checked(float(v[0]), f"{r.label} (step {int(s[0])})")


def _extreme(
    pick: Callable[[np.ndarray], Any],
) -> Callable[[ReducerFields, np.ndarray, np.ndarray], Reduced]:
    def reduce(r: ReducerFields, s: np.ndarray, v: np.ndarray) -> Reduced:
        finite = v[np.isfinite(v)]
        if finite.size == 0:
            return Reduced(math.nan, f"{r.label}: no finite value{window_text(r)}")
        return Reduced(float(pick(finite)))

    return reduce


def _median_window(r: ReducerFields, s: np.ndarray, v: np.ndarray) -> Reduced:
    return checked(float(np.median(v)), f"{r.label}{window_text(r)}")


def _steps_to_eps(r: ReducerFields, s: np.ndarray, v: np.ndarray) -> Reduced:
    try:
        step = steps_to_epsilon(s, v, float(r.eps or 0), relative=r.relative)
    except ValueError as err:
        return Reduced(math.nan, f"{r.label}: {err}")
    if step is None:
        finite = v[np.isfinite(v)]
        best = float(finite.min()) if finite.size else math.nan
        if not r.relative:
            return Reduced(math.nan, f"{r.metric} never reached {r.eps:g} (best {best:.3g})")
        ratio = best / float(v[0]) if v.size and v[0] != 0 else math.nan  # in eps's units
        return Reduced(
            math.nan,
            f"{r.metric} never reached {r.eps:g}× initial (best {ratio:.3g}× initial = {best:.3g})",
        )
    return Reduced(float(step))


def _rate(
    r: ReducerFields, s: np.ndarray, v: np.ndarray, relative_floor: float = DEFAULT_RELATIVE_FLOOR
) -> Reduced:
    fit = fit_linear_rate(s, v, skip=r.skip, floor=r.floor, relative_floor=relative_floor)
    if not fit.ok:
        return Reduced(
            math.nan,
            f"rate fit of {r.metric} rejected: R²={fit.r2:.3f} over {fit.n_points} points "
            "(needs R² ≥ 0.95 and ≥ 5 points)",
        )
    return Reduced(fit.rate)


def _one_minus_rate(
    r: ReducerFields, s: np.ndarray, v: np.ndarray, relative_floor: float = DEFAULT_RELATIVE_FLOOR
) -> Reduced:
    rate = _rate(r, s, v, relative_floor)
    return rate if rate.reason else Reduced(1.0 - rate.value)


def _final_over_initial(r: ReducerFields, s: np.ndarray, v: np.ndarray) -> Reduced:
    if v[0] == 0:
        return Reduced(math.nan, f"{r.label}: initial value is 0")
    return checked(float(v[-1] / v[0]), r.label)


def _max_rise(r: ReducerFields, s: np.ndarray, v: np.ndarray) -> Reduced:
    value, reason = _series.max_rise(v, relative=r.relative)
    return Reduced(value, f"{r.label}: {reason}" if reason else "")


def versus_series(
    r: ReducerFields, record: TrialRecord, s: np.ndarray, v: np.ndarray
) -> tuple[np.ndarray, np.ndarray, str]:
    """``(x, y, "")``: the ``versus`` series and ``v`` at the checkpoints both recorded."""
    name = str(r.versus)
    if name not in record.series:
        recorded = ", ".join(sorted(record.series)) or "none"
        return s, v, f"{r.label}: no metric {name!r} recorded (recorded: {recorded})"
    xs, xv = (np.asarray(a, dtype=np.float64) for a in record.series[name])
    _, iv, ix = np.intersect1d(s, xs, return_indices=True)
    return xv[ix], v[iv], ""


def _loglog_slope(r: ReducerFields, x: np.ndarray, v: np.ndarray) -> Reduced:
    value, reason = _paired_series.loglog_slope(x, v)
    return Reduced(value, f"{r.label}{window_text(r)}: {reason}" if reason else "")


def _spearman(r: ReducerFields, x: np.ndarray, v: np.ndarray) -> Reduced:
    value, reason = _paired_series.spearman_rho(x, v)
    return Reduced(value, f"{r.label}{window_text(r)}: {reason}" if reason else "")


def _late_over_early(r: ReducerFields, s: np.ndarray, v: np.ndarray) -> Reduced:
    value, reason = _series.late_over_early(v, r.fraction)
    return Reduced(value, f"{r.label}{window_text(r)}: {reason}" if reason else "")


def _steps_to_eps_r2(r: ReducerFields, s: np.ndarray, v: np.ndarray) -> Reduced:
    eps_range = r.eps_range or (0.0, 0.0)  # required: checked at construction
    value, reason = _series.steps_to_eps_r2(s, v, eps_range, r.per_decade, relative=r.relative)
    return Reduced(value, f"{r.label}: {reason}" if reason else "")


REDUCTIONS: dict[str, Callable[[ReducerFields, np.ndarray, np.ndarray], Reduced]] = {
    "final": _final,
    "initial": _initial,
    "min": _extreme(np.min),
    "max": _extreme(np.max),
    "median_window": _median_window,
    "steps_to_eps": _steps_to_eps,
    "final_over_initial": _final_over_initial,
    "max_rise": _max_rise,
    "late_over_early": _late_over_early,
    "loglog_slope": _loglog_slope,
    "spearman": _spearman,
    "steps_to_eps_r2": _steps_to_eps_r2,
}
RATE_FITS: dict[str, Callable[[ReducerFields, np.ndarray, np.ndarray, float], Reduced]] = {
    "rate": _rate,
    "one_minus_rate": _one_minus_rate,
}
"""The reductions that fit a rate: they also take the default floor of the run's precision."""
