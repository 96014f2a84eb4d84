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
``steps_to_eps_r2``       R² of the line through :math:`(\log(1/ε), T(ε))` for ``ε`` log-spaced over
                          ``eps_range`` (``per_decade`` points per decade; ``relative`` as above)
``config``                the trial's config value at the dotted ``key``
``expr``                  arithmetic on config keys and metrics, e.g. ``"40*sqrt(kappa)"``
========================  ==========================================================================

``window = [a, b]`` restricts every series reducer to the checkpoints ``a ≤ step ≤ b``.
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
    NonNegativeInt,
    PositiveFloat,
    PositiveInt,
    model_validator,
)

from gdscope.probes.rates import fit_linear_rate, steps_to_epsilon
from gdscope.studies import _expressions, _series
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
    "steps_to_eps_r2",
    "config",
    "expr",
]
BAD_STATUSES = ("diverged", "failed")
_ALIASES = {"ratio_final_initial": "final_over_initial"}  # the design note's spelling

_SERIES = {"final", "initial", "min", "max", "median_window", "steps_to_eps", "rate"}
_SERIES |= {"one_minus_rate", "final_over_initial", "max_rise", "steps_to_eps_r2"}
_OPTIONS: dict[str, set[str]] = {name: {"metric", "window"} for name in _SERIES}
_OPTIONS["steps_to_eps"] |= {"eps", "relative"}
_OPTIONS["rate"] |= {"skip", "floor"}
_OPTIONS["one_minus_rate"] |= {"skip", "floor"}
_OPTIONS["max_rise"] |= {"relative"}
_OPTIONS["steps_to_eps_r2"] |= {"relative", "eps_range", "per_decade"}
_OPTIONS["config"] = {"key"}
_OPTIONS["expr"] = {"expr"}
_REQUIRED = {"config": {"key"}, "expr": {"expr"}, "median_window": {"metric", "window"}}
_REQUIRED |= {"steps_to_eps": {"metric", "eps"}, "steps_to_eps_r2": {"metric", "eps_range"}}


class Reduced(NamedTuple):
    """One trial reduced to a number; ``reason`` says why ``value`` is nan (else ``""``)."""

    value: float
    reason: str = ""


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
        skip: transient to skip in a rate fit (``"auto"`` or a number of points).
        floor: absolute numerical floor of a rate fit (default ``1e-12`` × first value).

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
    skip: Literal["auto"] | NonNegativeInt = "auto"
    floor: PositiveFloat | None = None

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
        if self.window is not None and not self.window[0] <= self.window[1]:
            raise ValueError(f"window must be [a, b] with a ≤ b, got {list(self.window)}")
        if self.eps_range is not None and not self.eps_range[0] < self.eps_range[1]:
            raise ValueError(
                f"eps_range must be [low, high] with 0 < low < high, got {list(self.eps_range)}"
            )
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
        return f"{self.reduce}({self.metric})"

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
    if reducer.window is not None:
        keep = (steps >= reducer.window[0]) & (steps <= reducer.window[1])
        steps, values = steps[keep], values[keep]
    if values.size == 0:
        return Reduced(math.nan, f"{reducer.label}: no checkpoints{_window(reducer)}")
    return _REDUCTIONS[reducer.reduce](reducer, steps, values)


def _uses_series(reducer: Reducer, record: TrialRecord) -> bool:
    if reducer.reduce != "expr":
        return True
    return any(
        name not in record.config
        for name in _expressions.names(ast.parse(str(reducer.expr), mode="eval"))
    )


def _window(reducer: Reducer) -> str:
    return "" if reducer.window is None else f" in window {list(reducer.window)}"


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
