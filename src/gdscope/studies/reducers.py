r"""Reducers: data that turn one :class:`TrialRecord` into one number.

A claim never reads a series directly; it declares reducers in the study file::

    y = {reduce = "one_minus_rate", metric = "residual"}
    x = "data.n"                                  # shorthand for {reduce = "config", key = "data.n"}
    budget = "40*sqrt(kappa)"                     # shorthand for {reduce = "expr", expr = "..."}

Each reduction returns a :class:`Reduced` ``(value, reason)``: ``value`` is nan whenever the
number cannot be trusted (a diverged or failed trial, a rate fit with R² < 0.95, a threshold
never reached, a missing metric) and ``reason`` then says why, so a claim can say which trial
made it inconclusive.

========================  ==========================================================================
``reduce``                value
========================  ==========================================================================
``final`` / ``initial``   last / first recorded value
``min`` / ``max``         smallest / largest finite value
``median_window``         median over checkpoints with ``window[0] ≤ step ≤ window[1]``
``steps_to_eps``          first step with value ≤ ``eps`` (× the first value when ``relative``)
``rate``                  :math:`\hat ρ` of :func:`~gdscope.probes.rates.fit_linear_rate` (R² ≥ 0.95)
``one_minus_rate``        :math:`1 - \hat ρ`
``final_over_initial``    last value / first value (alias ``ratio_final_initial``)
``max_rise``              largest step-to-step increase :math:`\max_i (v_{i+1} − v_i)` (divided by
                          :math:`|v_i|` when ``relative``): > 0 iff the series is non-monotone
``late_over_early``       median of the last ``fraction`` (default 0.25) of the checkpoints over the
                          median of the first ``fraction``: < 1 when the series falls overall,
                          however it oscillates between checkpoints
``loglog_slope``          slope of :math:`\log` ``metric`` on :math:`\log` ``versus`` (another recorded
                          series, same checkpoints): ≥ 4 points, ≥ 1 decade of ``versus``, R² ≥ 0.95
``spearman``              Spearman ρ of ``metric`` against the step (or against ``versus``): how
                          monotone one run's series is (≥ 4 finite points)
``steps_to_eps_r2``       R² of the line through :math:`(\log(1/ε), T(ε))` for ``ε`` log-spaced over
                          ``eps_range`` (``per_decade`` points per decade; ``relative`` as above)
``config``                the trial's config value at the dotted ``key``
``expr``                  arithmetic on config keys and metrics, e.g. ``"40*sqrt(kappa)"``
========================  ==========================================================================

``window = [a, b]`` restricts every series reducer to the checkpoints ``a ≤ step ≤ b``.

``then`` applies an expression to a series reducer's value, ``value`` standing for it (other names
as in ``expr``: config keys, and metrics read at their first finite checkpoint)::

    y = {reduce = "max", metric = "loss", then = "value / loss"}        # peak over initial loss
    y = {reduce = "final", metric = "loss", then = "log10(value)"}      # a log-scale gap

``window_from`` / ``window_until`` start / end the window where a series first crosses a threshold,
found per trial on the whole run (then intersected with ``window`` when both are given)::

    y = {reduce = "median_window", metric = "sharpness",
         window_from = {metric = "sharpness", at_least = "0.95*2/optimizer.lr"}}

keeps the checkpoints from the first recorded step with sharpness ≥ 0.95·2/η on (the edge of
stability plateau); ``window_until`` keeps those up to and including that step. A crossing is
``{metric, at_least}`` or ``{metric, at_most}``; ``metric`` defaults to the reducer's, and the
threshold is a number or an expression (as ``expr``: config keys, and metrics read at their first
finite checkpoint). A series that never crosses gives nan with a reason naming the threshold and
the closest value it reached.

``rate_window = "<metric>"`` keeps the checkpoints inside the window that the ``rate`` fit of that
series uses (``skip = "auto"``, the default floor; on the checkpoints the other windows keep), so
a quantity is read where a rate is fitted, e.g. the NTK's condition number::

    x = {reduce = "median_window", metric = "ntk_kappa", rate_window = "residual"}

A rejected fit (R² < 0.95) gives nan with its reason.
"""

from __future__ import annotations

import ast
import math
from collections.abc import Callable
from typing import Any, Literal, NamedTuple

import numpy as np
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    NonNegativeInt,
    PositiveFloat,
    PositiveInt,
    model_validator,
)

from gdscope.probes.rates import fit_linear_rate, steps_to_epsilon
from gdscope.studies import _expressions, _paired_series, _series
from gdscope.studies.table import TrialRecord

ReduceName = Literal[
    "final",
    "initial",
    "min",
    "max",
    "median_window",
    "steps_to_eps",
    "rate",
    "one_minus_rate",
    "final_over_initial",
    "max_rise",
    "late_over_early",
    "loglog_slope",
    "spearman",
    "steps_to_eps_r2",
    "config",
    "expr",
]
BAD_STATUSES = ("diverged", "failed")
_ALIASES = {"ratio_final_initial": "final_over_initial"}  # the design note's spelling

_SERIES = {"final", "initial", "min", "max", "median_window", "steps_to_eps", "rate"}
_SERIES |= {"one_minus_rate", "final_over_initial", "max_rise", "steps_to_eps_r2"}
_SERIES |= {"late_over_early"}
_SERIES |= {"loglog_slope", "spearman"}
_WINDOWS = {"window", "window_from", "window_until"}
_WINDOWS |= {"rate_window"}  # where the rate of a series is fitted
_OPTIONS: dict[str, set[str]] = {name: {"metric"} | _WINDOWS for name in _SERIES}
_OPTIONS["steps_to_eps"] |= {"eps", "relative"}
_OPTIONS["rate"] |= {"skip", "floor"}
_OPTIONS["one_minus_rate"] |= {"skip", "floor"}
_OPTIONS["max_rise"] |= {"relative"}
_OPTIONS["late_over_early"] |= {"fraction"}
_OPTIONS["loglog_slope"] |= {"versus"}
_OPTIONS["spearman"] |= {"versus"}
_OPTIONS["steps_to_eps_r2"] |= {"relative", "eps_range", "per_decade"}
_OPTIONS["config"] = {"key"}
_OPTIONS["expr"] = {"expr"}
for _name in _SERIES:
    _OPTIONS[_name] |= {"then"}
_REQUIRED = {"config": {"key"}, "expr": {"expr"}, "median_window": {"metric"}}
_REQUIRED |= {"steps_to_eps": {"metric", "eps"}, "steps_to_eps_r2": {"metric", "eps_range"}}
_REQUIRED |= {"loglog_slope": {"metric", "versus"}}


class Reduced(NamedTuple):
    """One trial reduced to a number; ``reason`` says why ``value`` is nan (else ``""``)."""

    value: float
    reason: str = ""


class Crossing(BaseModel):
    """Where a series first crosses a threshold: the edge of ``window_from`` / ``window_until``.

    Attributes:
        metric: the series that crosses (default: the reducer's ``metric``).
        at_least: the first checkpoint with value ``≥`` this (a number or an expression).
        at_most: the first checkpoint with value ``≤`` this; give exactly one of the two.

    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    metric: str | None = None
    at_least: float | str | None = None
    at_most: float | str | None = None

    @model_validator(mode="after")
    def _one_threshold(self) -> Crossing:
        if (self.at_least is None) == (self.at_most is None):
            raise ValueError("a crossing takes exactly one of at_least, at_most")
        if isinstance(self.threshold, str):
            _expressions.check_expression(self.threshold)
        return self

    @property
    def threshold(self) -> float | str:
        """The threshold as written (a number or an expression)."""
        if self.at_least is not None:
            return self.at_least
        return self.at_most if self.at_most is not None else math.nan  # one is set: validated

    def text(self, default_metric: str | None) -> str:
        """E.g. ``sharpness ≥ 0.95*2/optimizer.lr``."""
        side = "≥" if self.at_least is not None else "≤"
        return f"{self.metric or default_metric} {side} {self.threshold}"


class Reducer(BaseModel):
    """How to turn one trial into one number (see the module docstring for each ``reduce``).

    Attributes:
        reduce: which reduction.
        metric: the recorded series it reads (series reducers).
        key: dotted config key (``reduce = "config"``).
        expr: arithmetic expression (``reduce = "expr"``): ``+ - * / **``, numbers, the functions
            ``sqrt log log10 exp abs min max``, and names. A name is a config key (dotted names
            like ``data.n`` work) or else a recorded metric, read at its first finite checkpoint.
        eps: threshold of ``steps_to_eps``.
        relative: ``steps_to_eps`` / ``steps_to_eps_r2`` compare with ``eps`` × the first value;
            ``max_rise`` divides each rise by the value before it.
        eps_range: ``[low, high]``, ``0 < low < high``: the ``ε`` grid of ``steps_to_eps_r2``.
        per_decade: points of that grid per decade of ``ε`` (both ends included).
        window: ``[a, b]``: keep checkpoints with ``a ≤ step ≤ b``.
        window_from: keep checkpoints from the first crossing of a threshold on (inclusive).
        window_until: keep checkpoints up to the first crossing of a threshold (inclusive).
        rate_window: keep checkpoints inside the window the rate fit of this series uses.
        fraction: ``late_over_early``: the share of the checkpoints in each part (≤ 0.5).
        versus: ``loglog_slope`` / ``spearman``: the recorded series on the x axis, read at the
            checkpoints ``metric`` shares with it (``spearman`` without it: the step).
        skip: transient to skip in a rate fit (``"auto"`` or a number of points).
        floor: absolute numerical floor of a rate fit (default ``1e-12`` × first value).
        then: series reducers: an expression applied to the reduction, ``value`` standing for it
            (e.g. ``"abs(value/0.05 - 1)"``); other names as in ``expr``.

    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    reduce: ReduceName
    metric: str | None = None
    key: str | None = None
    expr: str | None = None
    eps: PositiveFloat | None = None
    relative: bool = False
    eps_range: tuple[PositiveFloat, PositiveFloat] | None = None
    per_decade: PositiveInt = 1
    window: tuple[float, float] | None = None
    window_from: Crossing | None = None
    window_until: Crossing | None = None
    rate_window: str | None = None
    fraction: float = Field(default=0.25, gt=0, le=0.5)
    versus: str | None = None
    skip: Literal["auto"] | NonNegativeInt = "auto"
    floor: PositiveFloat | None = None
    then: str | None = None

    @model_validator(mode="before")
    @classmethod
    def _alias(cls, data: Any) -> Any:
        if isinstance(data, dict) and data.get("reduce") in _ALIASES:
            data = {**data, "reduce": _ALIASES[data["reduce"]]}
        return data

    @model_validator(mode="after")
    def _options_fit_reduce(self) -> Reducer:
        given = {name for name in self.model_fields_set if name != "reduce"}
        stray = sorted(given - _OPTIONS[self.reduce])
        if stray:
            accepted = ", ".join(sorted(_OPTIONS[self.reduce]))
            raise ValueError(f"reduce={self.reduce!r} takes {accepted}; remove {', '.join(stray)}")
        required = _REQUIRED.get(self.reduce, {"metric"} if self.reduce in _SERIES else set())
        missing = sorted(name for name in required if getattr(self, name) is None)
        if missing:
            raise ValueError(f"reduce={self.reduce!r} needs {', '.join(missing)}")
        if self.reduce == "median_window" and not given & _WINDOWS:
            raise ValueError("reduce='median_window' needs window, window_from or window_until")
        if self.window is not None and not self.window[0] <= self.window[1]:
            raise ValueError(f"window must be [a, b] with a ≤ b, got {list(self.window)}")
        if self.eps_range is not None and not self.eps_range[0] < self.eps_range[1]:
            raise ValueError(
                f"eps_range must be [low, high] with 0 < low < high, got {list(self.eps_range)}"
            )
        if self.then is not None:
            _expressions.check_expression(self.then)
        if self.expr is not None:
            _expressions.check_expression(self.expr)
        return self

    @property
    def label(self) -> str:
        """Short human name, e.g. ``one_minus_rate(residual)`` or ``data.n``."""
        if self.reduce == "config":
            return str(self.key)
        if self.reduce == "expr":
            return str(self.expr)
        edges = [
            f"{word} {crossing.text(self.metric)}"
            for word, crossing in (("from", self.window_from), ("until", self.window_until))
            if crossing is not None
        ]
        if self.rate_window is not None:
            edges.append(f"where rate({self.rate_window}) is fitted")
        against = [f"vs {self.versus}"] if self.versus is not None else []
        text = f"{self.reduce}({' '.join([str(self.metric), *against, *edges])})"
        return text if self.then is None else f"{text} then {self.then}"

    @property
    def reads_series(self) -> bool:
        """Whether the value comes from a recorded series (so a diverged trial is suspect)."""
        return self.reduce in _SERIES or (self.reduce == "expr" and self.expr is not None)


def config_reducer(value: Any) -> Any:
    """Pydantic before-validator: a bare string means ``{reduce = "config", key = value}``."""
    return {"reduce": "config", "key": value} if isinstance(value, str) else value


def expr_reducer(value: Any) -> Any:
    """Pydantic before-validator: a bare string means ``{reduce = "expr", expr = value}``."""
    return {"reduce": "expr", "expr": value} if isinstance(value, str) else value


def reduce_record(
    reducer: Reducer, record: TrialRecord, *, allow_diverged: bool = False
) -> Reduced:
    """Reduce one trial to a number.

    Args:
        reducer: what to compute.
        record: the trial.
        allow_diverged: reduce diverged / failed trials too (otherwise they give nan).

    Returns:
        ``Reduced(value, reason)``; ``value`` is nan with a ``reason`` when untrustworthy.

    """
    if reducer.reduce == "config":
        return _config_value(record, str(reducer.key))
    if record.status in BAD_STATUSES and not allow_diverged and _uses_series(reducer, record):
        detail = f": {record.reason}" if record.reason else ""
        return Reduced(math.nan, f"trial {record.status}{detail}")
    if reducer.reduce == "expr":
        return _evaluate(str(reducer.expr), record)
    metric = str(reducer.metric)
    if metric not in record.series:
        recorded = ", ".join(sorted(record.series)) or "none"
        return Reduced(math.nan, f"no metric {metric!r} recorded (recorded: {recorded})")
    steps, values = (np.asarray(a, dtype=np.float64) for a in record.series[metric])
    low, high = reducer.window if reducer.window is not None else (-math.inf, math.inf)
    for crossing, starts in ((reducer.window_from, True), (reducer.window_until, False)):
        if crossing is not None:
            at = crossing_step(crossing, metric, record)
            if at.reason:
                return Reduced(math.nan, f"{reducer.label}: {at.reason}")
            low, high = (max(low, at.value), high) if starts else (low, min(high, at.value))
    if reducer.rate_window is not None:
        start, stop, why = rate_fit_window(reducer.rate_window, record, low, high)
        if why:
            return Reduced(math.nan, f"{reducer.label}: {why}")
        low, high = max(low, start), min(high, stop)
    if (low, high) != (-math.inf, math.inf):
        keep = (steps >= low) & (steps <= high)
        steps, values = steps[keep], values[keep]
    if values.size == 0:
        return Reduced(math.nan, f"{reducer.label}: no checkpoints{_window(reducer)}")
    if reducer.versus is not None:  # the x axis is another series, not the step
        steps, values, why = _versus(reducer, record, steps, values)
        if why:
            return Reduced(math.nan, why)
    return _then(reducer, record, _REDUCTIONS[reducer.reduce](reducer, steps, values))


def _then(reducer: Reducer, record: TrialRecord, reduced: Reduced) -> Reduced:
    """Apply ``reducer.then`` to a series reduction (``value`` is the reduction)."""
    if reducer.then is None or reduced.reason:
        return reduced

    def lookup(name: str) -> float:
        return reduced.value if name == "value" else _lookup(name, record)

    text = reducer.then
    try:
        tree = ast.parse(text, mode="eval").body
        value = float(_expressions.evaluate_node(tree, lookup))
    except (_expressions.UnresolvedError, ArithmeticError, ValueError) as err:
        return Reduced(math.nan, f"then {text!r}: {err}")
    return _checked(value, f"{reducer.label}")


def crossing_step(crossing: Crossing, default_metric: str, record: TrialRecord) -> Reduced:
    """Return the first recorded step where ``crossing`` holds in ``record`` (nan with a reason)."""
    metric = crossing.metric or default_metric
    if metric not in record.series:
        recorded = ", ".join(sorted(record.series)) or "none"
        return Reduced(math.nan, f"no metric {metric!r} recorded (recorded: {recorded})")
    threshold = crossing.threshold
    if isinstance(threshold, str):
        value = _evaluate(threshold, record)
        if value.reason:
            return Reduced(
                math.nan, f"threshold of {crossing.text(default_metric)}: {value.reason}"
            )
        threshold = value.value
    steps, values = record.series[metric]
    above = crossing.at_least is not None
    step, why = _series.first_crossing(steps, values, float(threshold), above=above)
    if step is None:
        return Reduced(math.nan, f"{metric} {why}")
    return Reduced(float(step))


def rate_fit_window(
    metric: str, record: TrialRecord, low: float = -math.inf, high: float = math.inf
) -> tuple[float, float, str]:
    """``(first step, last step, "")`` of the window the ``rate`` fit of ``metric`` uses.

    The fit is the ``rate`` reducer's (``skip = "auto"``, default floor) on the checkpoints
    ``low ≤ step ≤ high``; a rejected fit gives ``(nan, nan, reason)``.
    """
    if metric not in record.series:
        recorded = ", ".join(sorted(record.series)) or "none"
        return math.nan, math.nan, f"no metric {metric!r} recorded (recorded: {recorded})"
    steps, values = (np.asarray(a, dtype=np.float64) for a in record.series[metric])
    keep = (steps >= low) & (steps <= high)
    steps, values = steps[keep], values[keep]
    if steps.size == 0:
        return math.nan, math.nan, f"rate fit of {metric}: no checkpoints"
    fit = fit_linear_rate(steps, values)
    if not fit.ok:
        return (
            math.nan,
            math.nan,
            f"rate fit of {metric} rejected: R²={fit.r2:.3f} over {fit.n_points} points "
            "(needs R² ≥ 0.95 and ≥ 5 points)",
        )
    return float(steps[fit.start]), float(steps[fit.stop - 1]), ""


def _uses_series(reducer: Reducer, record: TrialRecord) -> bool:
    if reducer.reduce != "expr":
        return True
    return any(
        name not in record.config
        for name in _expressions.names(ast.parse(str(reducer.expr), mode="eval"))
    )


def _window(reducer: Reducer) -> str:
    window = "" if reducer.window is None else f" in window {list(reducer.window)}"
    for word, crossing in (("from", reducer.window_from), ("until", reducer.window_until)):
        if crossing is not None:
            window += f" {word} the first {crossing.text(reducer.metric)}"
    if reducer.rate_window is not None:
        window += f" where the rate of {reducer.rate_window} is fitted"
    return window


def _config_value(record: TrialRecord, key: str) -> Reduced:
    if key not in record.config:
        return Reduced(math.nan, f"config has no key {key!r}")
    value = record.config[key]
    if isinstance(value, bool) or not isinstance(value, int | float):
        return Reduced(math.nan, f"config {key} = {value!r} is not a number")
    return Reduced(float(value))


def _checked(value: float, what: str) -> Reduced:
    return Reduced(value) if math.isfinite(value) else Reduced(math.nan, f"{what} is {value}")


def _final(r: Reducer, s: np.ndarray, v: np.ndarray) -> Reduced:
    return _checked(float(v[-1]), f"{r.label} (step {int(s[-1])})")


def _initial(r: Reducer, s: np.ndarray, v: np.ndarray) -> Reduced:
    return _checked(float(v[0]), f"{r.label} (step {int(s[0])})")


def _extreme(
    pick: Callable[[np.ndarray], Any],
) -> Callable[[Reducer, np.ndarray, np.ndarray], Reduced]:
    def reduce(r: Reducer, s: np.ndarray, v: np.ndarray) -> Reduced:
        finite = v[np.isfinite(v)]
        if finite.size == 0:
            return Reduced(math.nan, f"{r.label}: no finite value{_window(r)}")
        return Reduced(float(pick(finite)))

    return reduce


def _median_window(r: Reducer, s: np.ndarray, v: np.ndarray) -> Reduced:
    return _checked(float(np.median(v)), f"{r.label}{_window(r)}")


def _steps_to_eps(r: Reducer, s: np.ndarray, v: np.ndarray) -> Reduced:
    try:
        step = steps_to_epsilon(s, v, float(r.eps or 0), relative=r.relative)
    except ValueError as err:
        return Reduced(math.nan, f"{r.label}: {err}")
    if step is None:
        kind = "× initial" if r.relative else ""
        best = float(np.nanmin(v)) if np.isfinite(v).any() else math.nan
        return Reduced(math.nan, f"{r.metric} never reached {r.eps:g}{kind} (best {best:.3g})")
    return Reduced(float(step))


def _rate(r: Reducer, s: np.ndarray, v: np.ndarray) -> Reduced:
    fit = fit_linear_rate(s, v, skip=r.skip, floor=r.floor)
    if not fit.ok:
        return Reduced(
            math.nan,
            f"rate fit of {r.metric} rejected: R²={fit.r2:.3f} over {fit.n_points} points "
            "(needs R² ≥ 0.95 and ≥ 5 points)",
        )
    return Reduced(fit.rate)


def _one_minus_rate(r: Reducer, s: np.ndarray, v: np.ndarray) -> Reduced:
    rate = _rate(r, s, v)
    return rate if rate.reason else Reduced(1.0 - rate.value)


def _final_over_initial(r: Reducer, s: np.ndarray, v: np.ndarray) -> Reduced:
    if v[0] == 0:
        return Reduced(math.nan, f"{r.label}: initial value is 0")
    return _checked(float(v[-1] / v[0]), r.label)


def _max_rise(r: Reducer, s: np.ndarray, v: np.ndarray) -> Reduced:
    value, reason = _series.max_rise(v, relative=r.relative)
    return Reduced(value, f"{r.label}: {reason}" if reason else "")


def _versus(
    r: Reducer, record: TrialRecord, s: np.ndarray, v: np.ndarray
) -> tuple[np.ndarray, np.ndarray, str]:
    """``(x, y, "")``: the ``versus`` series and ``v`` at the checkpoints both recorded."""
    name = str(r.versus)
    if name not in record.series:
        recorded = ", ".join(sorted(record.series)) or "none"
        return s, v, f"{r.label}: no metric {name!r} recorded (recorded: {recorded})"
    xs, xv = (np.asarray(a, dtype=np.float64) for a in record.series[name])
    _, iv, ix = np.intersect1d(s, xs, return_indices=True)
    return xv[ix], v[iv], ""


def _loglog_slope(r: Reducer, x: np.ndarray, v: np.ndarray) -> Reduced:
    value, reason = _paired_series.loglog_slope(x, v)
    return Reduced(value, f"{r.label}{_window(r)}: {reason}" if reason else "")


def _spearman(r: Reducer, x: np.ndarray, v: np.ndarray) -> Reduced:
    value, reason = _paired_series.spearman_rho(x, v)
    return Reduced(value, f"{r.label}{_window(r)}: {reason}" if reason else "")


def _late_over_early(r: Reducer, s: np.ndarray, v: np.ndarray) -> Reduced:
    value, reason = _series.late_over_early(v, r.fraction)
    return Reduced(value, f"{r.label}{_window(r)}: {reason}" if reason else "")


def _steps_to_eps_r2(r: Reducer, s: np.ndarray, v: np.ndarray) -> Reduced:
    eps_range = r.eps_range or (0.0, 0.0)  # required: checked at construction
    value, reason = _series.steps_to_eps_r2(s, v, eps_range, r.per_decade, relative=r.relative)
    return Reduced(value, f"{r.label}: {reason}" if reason else "")


_REDUCTIONS: dict[str, Callable[[Reducer, np.ndarray, np.ndarray], Reduced]] = {
    "final": _final,
    "initial": _initial,
    "min": _extreme(np.min),
    "max": _extreme(np.max),
    "median_window": _median_window,
    "steps_to_eps": _steps_to_eps,
    "rate": _rate,
    "one_minus_rate": _one_minus_rate,
    "final_over_initial": _final_over_initial,
    "max_rise": _max_rise,
    "late_over_early": _late_over_early,
    "loglog_slope": _loglog_slope,
    "spearman": _spearman,
    "steps_to_eps_r2": _steps_to_eps_r2,
}


def _evaluate(text: str, record: TrialRecord) -> Reduced:
    try:
        tree = ast.parse(text, mode="eval").body
        value = float(_expressions.evaluate_node(tree, lambda name: _lookup(name, record)))
    except _expressions.UnresolvedError as err:
        return Reduced(math.nan, f"expr {text!r}: {err}")
    except (ArithmeticError, ValueError) as err:
        return Reduced(math.nan, f"expr {text!r}: {err}")
    return _checked(value, f"expr {text!r}")


def _lookup(name: str, record: TrialRecord) -> float:
    if name in record.config:
        found = _config_value(record, name)
    elif name in record.series:
        values = np.asarray(record.series[name][1], dtype=np.float64)
        finite = values[np.isfinite(values)]
        found = Reduced(float(finite[0])) if finite.size else Reduced(math.nan, "no finite value")
    else:
        found = Reduced(math.nan, "neither a config key nor a recorded metric")
    if found.reason:
        raise _expressions.UnresolvedError(f"{name}: {found.reason}")
    return found.value


def reduce_gap(
    reducer: Reducer, record: TrialRecord, base: TrialRecord | None, *, allow_diverged: bool = False
) -> Reduced:
    """``reducer(record) − reducer(base)``: a paired gap (see ``verdict.pair_with_baseline``)."""
    value = reduce_record(reducer, record, allow_diverged=allow_diverged)
    if value.reason:
        return value
    if base is None:
        return Reduced(math.nan, "no baseline trial with the same config but the baseline's keys")
    base_value = reduce_record(reducer, base, allow_diverged=allow_diverged)
    if base_value.reason:
        return Reduced(math.nan, f"baseline: {base_value.reason}")
    return Reduced(value.value - base_value.value)


def reduce_all(
    reducer: Reducer, records: list[TrialRecord], *, allow_diverged: bool = False
) -> list[Reduced]:
    """Reduce every record (same order)."""
    return [reduce_record(reducer, r, allow_diverged=allow_diverged) for r in records]
