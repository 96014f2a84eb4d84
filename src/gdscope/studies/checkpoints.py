"""Claims judged on the checkpoints of recorded series: ``bound`` and ``reaches``.

``bound``: ``lhs ≤ rhs·(1 + slack) + atol`` at every checkpoint both metrics share, in every
trial. ``reaches``: a metric crosses a threshold within a (per-trial) step budget in at least a
fraction of the trials of every group.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, Literal

import numpy as np
from pydantic import Field, NonNegativeFloat

from gdscope.studies.claim_base import BudgetReducer, _Claim
from gdscope.studies.reducers import BAD_STATUSES, Reduced, Reducer, reduce_record
from gdscope.studies.table import TrialRecord
from gdscope.studies.verdict import Status, Verdict, fmt, label, listing


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

    ``budget`` is a number, a reducer, or an expression string evaluated per trial
    (``"40*sqrt(kappa)"``); omitted, any step counts. PASS when, in every ``group_by`` group (or
    overall), at least ``fraction`` of the trials reach it; the statistic is the smallest fraction.
    """

    kind: Literal["reaches"]
    metric: str
    threshold: float
    direction: Literal["below", "above"] = "below"
    budget: float | BudgetReducer | None = None
    fraction: float = Field(default=1.0, gt=0, le=1)
    group_by: str | None = None

    def _judge(self, records: list[TrialRecord], axes: Sequence[str]) -> Verdict:
        problems: list[str] = []
        evidence: list[dict[str, Any]] = []
        groups: dict[Any, list[bool]] = {}
        for record in records:
            name = label(record, axes)
            if record.status in BAD_STATUSES and not self.allow_diverged:
                problems.append(f"{name}: trial {record.status}")
                continue
            budget = self._budget(record)
            if budget.reason:
                problems.append(f"{name}: budget: {budget.reason}")
                continue
            if self.metric not in record.series:
                problems.append(f"{name}: no metric {self.metric!r} recorded")
                continue
            step = self._first_step(record)
            ok = step is not None and step <= budget.value
            group = record.config.get(self.group_by) if self.group_by else "all"
            groups.setdefault(group, []).append(ok)
            evidence.append(
                {
                    "trial": name,
                    "group": group,
                    "reached_at": step,
                    "budget": budget.value,
                    "ok": ok,
                }
            )
        fractions = {g: float(np.mean(v)) for g, v in groups.items()}
        worst = min(fractions.values()) if fractions else math.nan
        extra = {"band": (self.fraction, 1.0), "n_points": len(evidence), "evidence": evidence}
        side = "≤" if self.direction == "below" else "≥"
        goal = f"{self.metric} {side} {self.threshold:g}"
        summary = ", ".join(
            f"{self.group_by}={g!r}: {f:.0%}" if self.group_by else f"{f:.0%}"
            for g, f in fractions.items()
        )
        if problems or not fractions:
            return self._verdict("INCONCLUSIVE", worst, listing(problems) or "no trials", **extra)
        status: Status = "PASS" if worst >= self.fraction else "FAIL"
        reason = f"{goal} within budget in {summary} of trials; needs ≥ {self.fraction:.0%}"
        return self._verdict(status, worst, reason, **extra)

    def _budget(self, record: TrialRecord) -> Reduced:
        if self.budget is None:
            return Reduced(math.inf)
        if isinstance(self.budget, Reducer):
            return reduce_record(self.budget, record, allow_diverged=True)
        return Reduced(float(self.budget))

    def _first_step(self, record: TrialRecord) -> int | None:
        steps, values = (np.asarray(a, dtype=np.float64) for a in record.series[self.metric])
        hit = np.isfinite(values) & (
            values <= self.threshold if self.direction == "below" else values >= self.threshold
        )
        return int(steps[int(np.argmax(hit))]) if hit.any() else None
