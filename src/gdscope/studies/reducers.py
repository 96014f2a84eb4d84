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
``rate``                  :math:`\hat ρ` of :func:`~gdscope.stats.rates.fit_linear_rate` (R² ≥ 0.95)
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
from typing import Any, Literal

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

from gdscope.studies import _expressions
from gdscope.studies._reductions import (
    RATE_FITS,
    REDUCTIONS,
    Reduced,
    versus_series,
    window_text,
)
from gdscope.studies._windows import (
    Crossing,
    config_value,
    crossing_step,
    evaluate,
    precision_floor,
    rate_fit_window,
)
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
        floor: absolute numerical floor of a rate fit (default: the first value times
            ``1e-12`` for a float64 trial, ``1e-9`` for a float32 one; ``RELATIVE_FLOORS``).
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
        if (
            isinstance(data, dict)
            and isinstance(data.get("reduce"), str)
            and data["reduce"] in _ALIASES
        ):
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
        return config_value(record, str(reducer.key))
    if record.status in BAD_STATUSES and not allow_diverged and _uses_series(reducer, record):
        detail = f": {record.reason}" if record.reason else ""
        return Reduced(math.nan, f"trial {record.status}{detail}")
    if reducer.reduce == "expr":
        return evaluate(str(reducer.expr), record)
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
        return Reduced(math.nan, f"{reducer.label}: no checkpoints{window_text(reducer)}")
    if reducer.versus is not None:  # the x axis is another series, not the step
        steps, values, why = versus_series(reducer, record, steps, values)
        if why:
            return Reduced(math.nan, why)
    if reducer.reduce in RATE_FITS:
        floor = precision_floor(record)
        return _then(reducer, record, RATE_FITS[reducer.reduce](reducer, steps, values, floor))
    return _then(reducer, record, REDUCTIONS[reducer.reduce](reducer, steps, values))


def _then(reducer: Reducer, record: TrialRecord, reduced: Reduced) -> Reduced:
    """Apply ``reducer.then`` to a series reduction (``value`` is the reduction)."""
    if reducer.then is None or reduced.reason:
        return reduced
    return evaluate(reducer.then, record, values={"value": reduced.value}, what="then")


def _uses_series(reducer: Reducer, record: TrialRecord) -> bool:
    if reducer.reduce != "expr":
        return True
    return any(
        name not in record.config
        for name in _expressions.names(ast.parse(str(reducer.expr), mode="eval"))
    )


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
