"""Claims judged trial by trial: two reductions agree, or one reduction lies within a band."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, Literal

from pydantic import (
    NonNegativeFloat,
)

from gdscope.studies.claim_base import Band, XReducer, _Claim
from gdscope.studies.reducers import (
    reduce_gap,
    reduce_record,
)
from gdscope.studies.table import TrialRecord
from gdscope.studies.verdict import (
    Verdict,
    fmt,
    fmt_band,
    label,
    listing,
    no_match_reason,
    pair_with_baseline,
)


class AgreesClaim(_Claim):
    """Two reductions agree in every trial: ``|y1 − y2| ≤ atol + rtol·|y2|``."""

    kind: Literal["agrees"]
    y1: XReducer
    y2: XReducer
    atol: NonNegativeFloat = 0.0
    rtol: NonNegativeFloat = 0.0

    def _judge(self, records: list[TrialRecord], axes: Sequence[str]) -> Verdict:
        problems, evidence, off = [], [], []
        worst = 0.0
        for record in records:
            name = label(record, axes)
            a = reduce_record(self.y1, record, allow_diverged=self.allow_diverged)
            b = reduce_record(self.y2, record, allow_diverged=self.allow_diverged)
            why = "; ".join(r.reason for r in (a, b) if r.reason)
            if why:
                problems.append(f"{name}: {why}")
                continue
            gap = abs(a.value - b.value)
            rel = gap / abs(b.value) if b.value != 0 else (0.0 if gap == 0 else math.inf)
            worst = max(worst, rel)
            ok = gap <= self.atol + self.rtol * abs(b.value)
            evidence.append(
                {"trial": name, "y1": a.value, "y2": b.value, "rel_diff": rel, "ok": ok}
            )
            if not ok:
                off.append(f"{name}: {fmt(a.value)} vs {fmt(b.value)}")
        extra = {"n_points": len(evidence), "evidence": evidence}
        tol = f"atol={self.atol:g}, rtol={self.rtol:g}"
        if off:
            return self._verdict(
                "FAIL", worst, f"{self.y1.label} ≠ {self.y2.label} ({tol}): {listing(off)}", **extra
            )
        if problems:
            return self._verdict("INCONCLUSIVE", worst, listing(problems), **extra)
        reason = f"{self.y1.label} = {self.y2.label} within {tol} in {len(evidence)} trials; worst relative difference {fmt(worst)}"
        return self._verdict("PASS", worst, reason, **extra)


class WithinClaim(_Claim):
    """One reduction lies inside ``band`` in every trial (e.g. ``floor / lr ∈ [0.25, 1]``).

    With ``baseline`` (a ``where`` filter) the reduction is a paired gap: the records matching it
    are baselines, and every other record's ``y`` is taken minus that of the baseline whose config
    is the same except for the baseline's keys (e.g. residual − plain at each depth and seed).
    """

    kind: Literal["within"]
    y: XReducer
    band: Band
    baseline: dict[str, Any] | None = None

    def _judge(self, records: list[TrialRecord], axes: Sequence[str]) -> Verdict:
        problems, evidence, off = [], [], []
        lo, hi = self.band
        pairs: list[tuple[TrialRecord, TrialRecord | None]] | None
        pairs = [(r, None) for r in records]
        if self.baseline is not None:
            pairs = pair_with_baseline(records, self.baseline)
            if pairs is None:
                return self._verdict(
                    "INCONCLUSIVE", math.nan, no_match_reason(records, self.baseline)
                )
        for record, base in pairs:
            name = label(record, axes)
            if self.baseline is None:
                y = reduce_record(self.y, record, allow_diverged=self.allow_diverged)
            else:
                y = reduce_gap(self.y, record, base, allow_diverged=self.allow_diverged)
            if y.reason:
                problems.append(f"{name}: {y.reason}")
                continue
            ok = lo <= y.value <= hi
            evidence.append({"trial": name, "y": y.value, "ok": ok})
            if not ok:
                off.append(f"{name}: {fmt(y.value)}")
        values = [e["y"] for e in evidence]
        worst = least_margin(values, self.band)
        extra = {"n_points": len(evidence), "evidence": evidence}
        gap = "" if self.baseline is None else f" − baseline {self.baseline}"
        where = f"{self.y.label}{gap} ∈ {fmt_band(self.band)}"
        if off:
            return self._verdict("FAIL", worst, f"{where} fails for {listing(off)}", **extra)
        if problems:
            return self._verdict("INCONCLUSIVE", worst, listing(problems), **extra)
        span = f"values in [{fmt(min(values))}, {fmt(max(values))}]"
        return self._verdict(
            "PASS",
            worst,
            f"{where} in all {len(evidence)} trials; {span}, nearest an edge {fmt(worst)}",
            **extra,
        )


def least_margin(values: Sequence[float], band: tuple[float, float]) -> float:
    """Return the value nearest an edge of ``band`` (or furthest outside it); nan for none.

    The margin of ``v`` is ``min(v − low, high − v)``; ties go to the larger ``|v|``, so that
    with ``band = [0, 2]`` the values 0.73 and 1.27 (both 0.73 from an edge) give 1.27.

    >>> least_margin([0.73, 1.27, 1.0], (0.0, 2.0)), least_margin([3.0, 5.0], (-math.inf, 4.0))
    (1.27, 5.0)
    """
    if not values:
        return math.nan
    low, high = band
    return min(values, key=lambda v: (min(v - low, high - v), -abs(v)))
