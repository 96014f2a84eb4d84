"""Where a reducer looks: crossings that start or end a window, the rate-fit window, expressions.

``Crossing`` is the edge of ``window_from`` / ``window_until`` (the first checkpoint where a series
is ``≥`` or ``≤`` a threshold, itself a number or an expression of the trial's config);
:func:`rate_fit_window` is the window a ``rate`` fit of a series uses; :func:`evaluate` reads an
arithmetic expression on a trial's config keys and metrics.
"""

from __future__ import annotations

import ast
import math
from collections.abc import Mapping

import numpy as np
from pydantic import BaseModel, ConfigDict, model_validator

from gdscope.stats.rates import fit_linear_rate, relative_floor
from gdscope.studies import _expressions, _series
from gdscope.studies._reductions import Reduced, checked
from gdscope.studies.table import TrialRecord


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


def crossing_step(crossing: Crossing, default_metric: str, record: TrialRecord) -> Reduced:
    """Return the first recorded step where ``crossing`` holds in ``record`` (nan with a reason)."""
    metric = crossing.metric or default_metric
    if metric not in record.series:
        recorded = ", ".join(sorted(record.series)) or "none"
        return Reduced(math.nan, f"no metric {metric!r} recorded (recorded: {recorded})")
    threshold = crossing.threshold
    if isinstance(threshold, str):
        value = evaluate(threshold, record)
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

    The fit is the ``rate`` reducer's (``skip = "auto"``, the default floor of the trial's
    precision) on the checkpoints
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
    fit = fit_linear_rate(steps, values, relative_floor=precision_floor(record))
    if not fit.ok:
        return (
            math.nan,
            math.nan,
            f"rate fit of {metric} rejected: R²={fit.r2:.3f} over {fit.n_points} points "
            "(needs R² ≥ 0.95 and ≥ 5 points)",
        )
    return float(steps[fit.start]), float(steps[fit.stop - 1]), ""


def precision_floor(record: TrialRecord) -> float:
    """Return the default relative floor of a rate fit for the trial's ``dtype`` (else float64's).

    Stores written before configs were kept validated may lack ``dtype``: they keep the float64
    floor their verdicts were judged with.
    """
    return relative_floor(record.config.get("dtype"))


def config_value(record: TrialRecord, key: str) -> Reduced:
    """Return the number at the dotted config ``key`` of ``record`` (nan with a reason)."""
    if key not in record.config:
        return Reduced(math.nan, f"config has no key {key!r}")
    value = record.config[key]
    if isinstance(value, bool) or not isinstance(value, int | float):
        return Reduced(math.nan, f"config {key} = {value!r} is not a number")
    return Reduced(float(value))


def evaluate(
    text: str,
    record: TrialRecord,
    *,
    values: Mapping[str, float] | None = None,
    what: str = "expr",
) -> Reduced:
    """Evaluate an arithmetic expression on config keys and metrics (a metric reads its first value).

    ``values`` binds extra names first (``then`` binds ``value`` to the reduction); ``what``
    names the expression in reasons.
    """
    bound = values or {}

    def resolve(name: str) -> float:
        return bound[name] if name in bound else lookup(name, record)

    try:
        tree = ast.parse(text, mode="eval").body
        value = float(_expressions.evaluate_node(tree, resolve))
    except (_expressions.UnresolvedError, ArithmeticError, ValueError) as err:
        return Reduced(math.nan, f"{what} {text!r}: {err}")
    return checked(value, f"{what} {text!r}")


def lookup(name: str, record: TrialRecord) -> float:
    """Return ``name`` of ``record``: a config number, else the first finite value of a metric.

    A config key that holds no number (``loss = "mse"``, the loss function) does not hide the
    recorded metric of the same name (the ``loss`` series).
    """
    found = config_value(record, name) if name in record.config else None
    if (found is None or found.reason) and name in record.series:
        values = np.asarray(record.series[name][1], dtype=np.float64)
        finite = values[np.isfinite(values)]
        found = Reduced(float(finite[0])) if finite.size else Reduced(math.nan, "no finite value")
    elif found is None:
        found = Reduced(math.nan, "neither a config key nor a recorded metric")
    if found.reason:
        raise _expressions.UnresolvedError(f"{name}: {found.reason}")
    return found.value
