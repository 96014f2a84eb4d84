"""The one loop of every kind of run: its checkpoints, the divergence rule and the stop rule.

A run of ``steps`` updates has the checkpoints ``t = 0, 1, …, steps``; checkpoint ``t`` measures
the state θ_t *before* the t-th update. :func:`drive` does, at each checkpoint, in this order:

1. **measure** θ_t (a :class:`Reading`: the watched values and the metrics of θ_t);
2. **divergence**: the run ends with status ``"diverged"`` if a watched value is non-finite or
   above ``DIVERGENCE_FACTOR · max(|v_0|, floor)``, where ``v_0`` is the watched quantity at
   ``t = 0`` and ``floor`` the scale below which a start counts as zero (:class:`Watch`);
3. **stop**: otherwise it ends with status ``"stopped"`` if the stop rule gives a reason;
4. **record** the metrics if the checkpoint is due (every ``every``-th step and always the last
   one, ``t = steps``) or ends the run; a diverged checkpoint records the watched value too;
5. **update** θ_t → θ_{t+1}, unless the run ended or ``t = steps``.

A run that goes to the end has status ``"completed"`` and ``trace.steps = steps``; one that ends
at checkpoint ``t`` has ``trace.steps = t``; ``trace.reason`` says why in one line and
``trace.wall_time_s`` is the time from the start of the run to the end of the loop. Divergence
is a result, not an exception. The network loop (:func:`gdscope.training.train`) and the
objective, lasso and kernel-dynamics trial kinds are driven by :func:`drive`; the ensemble loop
(:func:`gdscope.ensemble.train_ensemble`), which steps many runs at once, judges each member's
checkpoints with :meth:`Run.checkpoint`.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

__all__ = [
    "DIVERGENCE_FACTOR",
    "Reading",
    "Run",
    "Status",
    "StopRule",
    "Trace",
    "Watch",
    "diverged",
    "divergence_limit",
    "drive",
    "end_if_diverged",
]

Status = Literal["completed", "diverged", "stopped"]
DIVERGENCE_FACTOR = 1e6


def divergence_limit(initial: float, floor: float = 1e-30) -> float:
    """Return the value above which a run has diverged: ``DIVERGENCE_FACTOR · max(|initial|, floor)``.

    ``floor`` is the scale below which a start counts as zero: the loss of a network (``1e-30``,
    the default), the test objectives of seed 002 (``1``: their values are of order one), the
    lasso objective (``1e-12``), a relative residual (its start is 1).

    >>> divergence_limit(0.5), divergence_limit(0.0, floor=1.0)
    (500000.0, 1000000.0)
    """
    return DIVERGENCE_FACTOR * max(abs(initial), floor)


def diverged(value: float, limit: float) -> bool:
    """Return whether ``value`` is non-finite or above ``limit`` (:func:`divergence_limit`).

    >>> diverged(float("nan"), 1.0), diverged(2.0, 1.0), diverged(1.0, 1.0)
    (True, True, False)
    """
    return not math.isfinite(value) or value > limit


@dataclass
class Trace:
    """What one run measured: ``records[metric] = (steps, values)``, and how it ended."""

    status: Status
    steps: int
    reason: str
    records: dict[str, tuple[list[int], list[float]]] = field(default_factory=dict)
    wall_time_s: float = field(default=0.0, compare=False)

    @property
    def metrics(self) -> list[str]:
        """Names of the recorded metrics."""
        return list(self.records)

    def series(self, metric: str) -> tuple[np.ndarray, np.ndarray]:
        """Return ``(steps, values)`` arrays of one metric."""
        if metric not in self.records:
            raise KeyError(
                f"metric {metric!r} was not recorded; recorded: {', '.join(self.records)}"
            )
        steps, values = self.records[metric]
        return np.asarray(steps, dtype=np.int64), np.asarray(values, dtype=np.float64)

    def final(self, metric: str) -> float:
        """Return the last recorded value of ``metric``."""
        return float(self.series(metric)[1][-1])

    def rows(self) -> list[tuple[int, str, float]]:
        """Return the records in long form ``(step, metric, value)``, the store's layout."""
        return [
            (step, metric, value)
            for metric, (steps, values) in self.records.items()
            for step, value in zip(steps, values, strict=True)
        ]

    def record(self, step: int, metrics: Mapping[str, float]) -> None:
        """Append ``metrics`` measured at ``step``."""
        for name, value in metrics.items():
            steps, values = self.records.setdefault(name, ([], []))
            steps.append(step)
            values.append(float(value))


@dataclass(frozen=True)
class Watch:
    """The quantity the divergence rule watches in one kind of run.

    Args:
        metric: the metric that holds it (a diverged checkpoint always records it).
        label: how a diverged run's reason names it (``"loss"``, ``"f ="``).
        bound: the limit in words, for the reason (``"1e6 × F(0)"``).
        floor: the scale below which its start counts as zero (:func:`divergence_limit`).

    >>> Watch("f", "f =", "1e6 × max(f(x0), 1)", floor=1.0).reason(float("inf"), 7)
    'f = inf at step 7 (non-finite or > 1e6 × max(f(x0), 1))'

    """

    metric: str
    label: str
    bound: str
    floor: float = 1e-30

    def reason(self, value: float, t: int) -> str:
        """Return the one-line reason of a run that diverged with ``value`` at checkpoint ``t``."""
        return f"{self.label} {value:.3e} at step {t} (non-finite or > {self.bound})"


@dataclass
class Reading:
    """What one checkpoint measured.

    Attributes:
        watched: the values the divergence rule reads, in order (``None``: not measured here);
            the first that breaks the rule is the one a diverged run reports.
        metrics: what the checkpoint records (a stop rule may add to it).
        start: the watched quantity at ``t = 0``, when it is not the first watched value (read
            at the first checkpoint only).
        deferred: metrics measured only if the checkpoint is recorded (a run that records every
            k-th step need not compute them at the others); ``metrics`` win on a shared name.

    """

    watched: tuple[float | None, ...]
    metrics: dict[str, float] = field(default_factory=dict)
    start: float | None = None
    deferred: Callable[[], Mapping[str, float]] | None = None

    def recorded(self) -> Mapping[str, float]:
        """Return what the checkpoint records: ``deferred()`` (measured now), then ``metrics``."""
        return self.metrics if self.deferred is None else {**self.deferred(), **self.metrics}


StopRule = Callable[[int, Reading], str | None]
"""``rule(t, reading) -> reason or None``: the run stops at ``t`` when it gives a reason; it may
add what a stopped checkpoint records to ``reading.metrics``."""


def end_if_diverged(trace: Trace, t: int, reading: Reading, watch: Watch, limit: float) -> bool:
    """Apply the divergence rule at checkpoint ``t``; on divergence record ``reading`` and end.

    Returns whether the run diverged (then ``trace`` holds the checkpoint, with
    ``watch.metric`` set to the offending value if it was not measured, status ``"diverged"``,
    ``steps = t`` and the reason).
    """
    bad = next((v for v in reading.watched if v is not None and diverged(v, limit)), None)
    if bad is None:
        return False
    reading.metrics.setdefault(watch.metric, bad)
    _end(trace, t, reading, "diverged", watch.reason(bad, t))
    return True


def _end(trace: Trace, t: int, reading: Reading, status: Status, reason: str) -> None:
    trace.record(t, reading.recorded())
    trace.status, trace.steps, trace.reason = status, t, reason


class Run:
    """The ending rules of one run, applied checkpoint by checkpoint; ``trace`` is the result.

    Args:
        steps: number of updates; the checkpoints are ``0, …, steps``.
        watch: what the divergence rule watches.
        every: record every ``every``-th checkpoint (and the last, and one that ends the run).
        note: appended to the reason of a completed run (``"ran {steps} steps{note}"``).

    """

    def __init__(self, steps: int, watch: Watch, *, every: int = 1, note: str = "") -> None:
        self.steps, self.watch, self.every = steps, watch, every
        self.trace = Trace(status="completed", steps=steps, reason=f"ran {steps} steps{note}")
        self.limit: float | None = None

    def due(self, t: int) -> bool:
        """Whether checkpoint ``t`` is recorded even if the run goes on."""
        return t % self.every == 0 or t == self.steps

    def checkpoint(self, t: int, reading: Reading, stop: StopRule | None = None) -> bool:
        """Judge checkpoint ``t`` (divergence, then ``stop``, then record); return whether it ends."""
        if self.limit is None:
            start = reading.start
            if start is None:
                start = next(v for v in reading.watched if v is not None)
            self.limit = divergence_limit(start, self.watch.floor)
        if end_if_diverged(self.trace, t, reading, self.watch, self.limit):
            return True
        reason = stop(t, reading) if stop is not None else None
        if reason is not None:
            _end(self.trace, t, reading, "stopped", reason)
            return True
        if self.due(t):
            self.trace.record(t, reading.recorded())
        return False


def drive(
    steps: int,
    measure: Callable[[int], Reading],
    update: Callable[[int], object],
    *,
    watch: Watch,
    every: int = 1,
    stop: StopRule | None = None,
    note: str = "",
    started: float | None = None,
) -> Trace:
    """Run the loop of the module docstring: ``measure(t)``, judge, record, ``update(t)``.

    Args:
        steps: number of updates (``≥ 0``); ``update(t)`` moves θ_t to θ_{t+1}.
        measure: ``measure(t)`` reads the state at checkpoint ``t``.
        update: one update; its return value is ignored.
        watch: what the divergence rule watches.
        every: record every ``every``-th checkpoint (the last one and an ending one always).
        stop: the stop rule (default: none).
        note: appended to the reason of a completed run.
        started: ``time.perf_counter()`` when the run began (its setup counts in the wall
            time); default: now.

    Returns:
        The run's :class:`Trace`.

    Example: gradient descent on ``f(x) = x²``; at step 0.25 it halves ``x``, at 3 it diverges.

        >>> def gd(lr, stop=None):
        ...     x = [1.0]
        ...     def measure(t):
        ...         return Reading((x[0] ** 2,), {"f": x[0] ** 2})
        ...     def update(t):
        ...         x[0] -= lr * 2 * x[0]
        ...     return drive(6, measure, update, watch=Watch("f", "f =", "1e6 f(x0)"), stop=stop,
        ...                  every=2)
        >>> trace = gd(0.25)
        >>> trace.status, trace.steps, trace.records["f"][0]
        ('completed', 6, [0, 2, 4, 6])
        >>> trace = gd(3.0)
        >>> trace.status, trace.steps, trace.reason
        ('diverged', 5, 'f = 9.766e+06 at step 5 (non-finite or > 1e6 f(x0))')
        >>> trace = gd(0.25, stop=lambda t, r: "small" if r.watched[0] < 0.1 else None)
        >>> trace.status, trace.steps, trace.records["f"]
        ('stopped', 2, ([0, 2], [1.0, 0.0625]))

    """
    begin = time.perf_counter() if started is None else started
    run = Run(steps, watch, every=every, note=note)
    for t in range(steps + 1):
        if run.checkpoint(t, measure(t), stop):
            break
        if t < steps:
            update(t)
    run.trace.wall_time_s = time.perf_counter() - begin
    return run.trace
