"""Claims judged on the checkpoints of recorded series: ``bound`` and ``reaches``.

``bound``: ``lhs ≤ rhs·(1 + slack) + atol`` at every checkpoint both metrics share, in every
trial. ``reaches``: a metric crosses a (per-trial) threshold within a (per-trial) step budget in
at least a fraction of the trials of every group.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Annotated, Any, Literal

import numpy as np
from pydantic import BeforeValidator, Field, NonNegativeFloat, ValidationError

from gdscope.studies.claim_base import _Claim
from gdscope.studies.reducers import BAD_STATUSES, Reduced, Reducer, reduce_record
from gdscope.studies.table import TrialRecord
from gdscope.studies.verdict import Status, Verdict, fmt, label, listing


def _number_or_reducer(value: Any) -> Any:
    """Pydantic before-validator: a number stays; a string is an expression; a table a reducer.

    The reducer is built here, so that a bad expression or reducer gives one error on the field
    (not one per member of the ``float | Reducer`` union).
    """
    if (isinstance(value, int | float) and not isinstance(value, bool)) or value is None:
        return value
    if isinstance(value, str):
        value = {"reduce": "expr", "expr": value}
    if isinstance(value, Reducer):
        return value
    if not isinstance(value, Mapping):
        raise ValueError("give a number, an expression string or a reducer table")
    try:
        return Reducer.model_validate(value)
    except ValidationError as err:
        problems = []
        for e in err.errors():
            where = ".".join(str(p) for p in e["loc"])
            what = "unknown key" if e["type"] == "extra_forbidden" else e["msg"]
            problems.append(f"{where}: " * bool(where) + what.removeprefix("Value error, "))
        raise ValueError("; ".join(problems)) from None


NumberOrReducer = Annotated[float | Reducer, BeforeValidator(_number_or_reducer)]
"""A number, or a reducer evaluated per trial; a bare string is an expression
(``threshold = "0.95*2/optimizer.lr"``, ``budget = "40*sqrt(kappa)"``)."""


class BoundClaim(_Claim):
    """``lhs ≤ rhs·(1 + slack) + atol`` at every checkpoint both metrics share, in every trial."""

    kind: Literal["bound"]
    lhs: str
    rhs: str
    slack: NonNegativeFloat = 0.0
    atol: NonNegativeFloat = 0.0

    def _judge(self, records: list[TrialRecord], axes: Sequence[str]) -> Verdict:
        problems, evidence, violated = [], [], []
        worst, checked = -math.inf, 0
        for record in records:
            name = label(record, axes)
            if record.status in BAD_STATUSES and not self.allow_diverged:
                problems.append(f"{name}: trial {record.status}")
                continue
            missing = [m for m in (self.lhs, self.rhs) if m not in record.series]
            if missing:
                problems.append(f"{name}: no metric {', '.join(missing)} recorded")
                continue
            steps, lhs, rhs = _aligned(record, self.lhs, self.rhs)
            keep = np.isfinite(lhs) & np.isfinite(rhs)
            if not keep.all() and not self.allow_diverged:
                problems.append(f"{name}: non-finite values at step {int(steps[~keep][0])}")
                continue
            steps, lhs, rhs = steps[keep], lhs[keep], rhs[keep]
            if steps.size == 0:
                problems.append(f"{name}: {self.lhs} and {self.rhs} share no checkpoint")
                continue
            checked += 1
            with np.errstate(divide="ignore", invalid="ignore"):
                ratio = np.where(rhs != 0, lhs / rhs, np.where(lhs > 0, np.inf, 0.0))
            i = int(np.argmax(ratio))
            worst = max(worst, float(ratio[i]))
            bad = lhs > rhs * (1 + self.slack) + self.atol
            evidence.append(
                {
                    "trial": name,
                    "step": int(steps[i]),
                    "lhs": float(lhs[i]),
                    "rhs": float(rhs[i]),
                    "ratio": float(ratio[i]),
                    "violations": int(bad.sum()),
                    "checkpoints": int(bad.size),
                }
            )
            if bad.any():
                violated.append(
                    f"{name} at step {int(steps[bad][0])} ({int(bad.sum())}/{bad.size})"
                )
        extra = {"n_points": checked, "evidence": evidence}
        inequality = f"{self.lhs} ≤ {self.rhs}·(1+{self.slack:g}) + {self.atol:g}"
        if violated:
            return self._verdict(
                "FAIL", worst, f"{inequality} violated: {listing(violated)}", **extra
            )
        if problems:
            return self._verdict("INCONCLUSIVE", worst, listing(problems), **extra)
        reason = f"{inequality} at every checkpoint of {checked} trials; worst ratio {fmt(worst)}"
        return self._verdict("PASS", worst, reason, **extra)


def _aligned(record: TrialRecord, a: str, b: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    sa, va = (np.asarray(v) for v in record.series[a])
    sb, vb = (np.asarray(v) for v in record.series[b])
    steps, ia, ib = np.intersect1d(sa, sb, return_indices=True)
    return steps, va[ia].astype(np.float64), vb[ib].astype(np.float64)


class ReachesClaim(_Claim):
    """``metric`` goes ≤ (``direction = "below"``) or ≥ ``threshold`` within ``budget`` steps.

    ``threshold`` and ``budget`` are each a number, a reducer, or an expression string evaluated
    per trial on its config keys and metrics (``threshold = "0.95*2/optimizer.lr"``, ``budget =
    "40*sqrt(kappa)"``); ``budget`` omitted, any step counts. PASS when, in every ``group_by``
    group (or overall), at least ``fraction`` of the trials reach it; the statistic is the
    smallest fraction. The evidence holds each trial's threshold, and the reason names the
    thresholds and the trials that missed theirs.
    """

    kind: Literal["reaches"]
    metric: str
    threshold: NumberOrReducer
    direction: Literal["below", "above"] = "below"
    budget: NumberOrReducer | None = None
    fraction: float = Field(default=1.0, gt=0, le=1)
    group_by: str | None = None

    def _judge(self, records: list[TrialRecord], axes: Sequence[str]) -> Verdict:
        problems: list[str] = []
        missed: list[str] = []
        evidence: list[dict[str, Any]] = []
        groups: dict[Any, list[bool]] = {}
        for record in records:
            name = label(record, axes)
            if record.status in BAD_STATUSES and not self.allow_diverged:
                problems.append(f"{name}: trial {record.status}")
                continue
            budget = self._per_trial(self.budget, record)
            if budget.reason:
                problems.append(f"{name}: budget: {budget.reason}")
                continue
            threshold = self._per_trial(self.threshold, record)
            if threshold.reason:
                problems.append(f"{name}: threshold: {threshold.reason}")
                continue
            if self.metric not in record.series:
                problems.append(f"{name}: no metric {self.metric!r} recorded")
                continue
            step, closest = self._first_step(record, threshold.value)
            ok = step is not None and step <= budget.value
            group = record.config.get(self.group_by) if self.group_by else "all"
            groups.setdefault(group, []).append(ok)
            evidence.append(
                {
                    "trial": name,
                    "group": group,
                    "threshold": threshold.value,
                    "reached_at": step,
                    "budget": budget.value,
                    "closest": closest,
                    "ok": ok,
                }
            )
            if not ok:
                missed.append(self._miss(name, threshold.value, step, budget.value, closest))
        fractions = {g: float(np.mean(v)) for g, v in groups.items()}
        worst = min(fractions.values()) if fractions else math.nan
        extra = {"band": (self.fraction, 1.0), "n_points": len(evidence), "evidence": evidence}
        summary = ", ".join(
            f"{self.group_by}={g!r}: {f:.0%}" if self.group_by else f"{f:.0%}"
            for g, f in fractions.items()
        )
        if problems or not fractions:
            return self._verdict("INCONCLUSIVE", worst, listing(problems) or "no trials", **extra)
        status: Status = "PASS" if worst >= self.fraction else "FAIL"
        goal = f"{self.metric} {self._side} {self._threshold_text(evidence)}"
        reached = sorted(e["reached_at"] for e in evidence if e["ok"])
        when = (
            f" (first at step {reached[0]})"
            if reached and reached[0] == reached[-1]
            else f" (first at steps {reached[0]}–{reached[-1]})"
            if reached
            else ""
        )
        within = "within the run" if self.budget is None else "within budget"
        reason = f"{goal} {within} in {summary} of trials{when}; needs ≥ {self.fraction:.0%}"
        if missed:
            reason += f"; missed: {listing(missed)}"
        return self._verdict(status, worst, reason, **extra)

    @property
    def _side(self) -> str:
        return "≤" if self.direction == "below" else "≥"

    def _threshold_text(self, evidence: list[dict[str, Any]]) -> str:
        """Say ``3.8``, or ``0.95*2/optimizer.lr = 3.8`` (``3.8–7.6 per trial`` when it differs)."""
        if not isinstance(self.threshold, Reducer):
            return f"{self.threshold:g}"
        values = sorted({e["threshold"] for e in evidence})
        spread = fmt(values[0]) if len(values) == 1 else f"{fmt(values[0])}–{fmt(values[-1])}"
        return f"{self.threshold.label} = {spread}" + " per trial" * (len(values) > 1)

    def _miss(
        self, name: str, threshold: float, step: int | None, budget: float, closest: float
    ) -> str:
        if step is not None:
            return f"{name} reached {self._side} {fmt(threshold)} at step {step} > budget {fmt(budget)}"
        return f"{name} never reached {self._side} {fmt(threshold)} (closest {fmt(closest)})"

    @staticmethod
    def _per_trial(value: float | Reducer | None, record: TrialRecord) -> Reduced:
        """Return the number, or the reducer's value for ``record`` (``None``: no limit, ``inf``)."""
        if value is None:
            return Reduced(math.inf)
        if isinstance(value, Reducer):
            return reduce_record(value, record, allow_diverged=True)
        return Reduced(float(value))

    def _first_step(self, record: TrialRecord, threshold: float) -> tuple[int | None, float]:
        """Return the first step past ``threshold`` (or ``None``) and the closest value reached."""
        steps, values = (np.asarray(a, dtype=np.float64) for a in record.series[self.metric])
        finite = np.isfinite(values)
        below = self.direction == "below"
        hit = finite & (values <= threshold if below else values >= threshold)
        if not finite.any():
            closest = math.nan
        else:
            closest = float(np.min(values[finite]) if below else np.max(values[finite]))
        return (int(steps[int(np.argmax(hit))]) if hit.any() else None), closest
