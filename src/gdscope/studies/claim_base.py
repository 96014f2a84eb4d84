"""What every claim kind shares: the common fields, the verdict builder, band and reducer types."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictBool,
)

from gdscope.studies.reducers import (
    Reducer,
    config_reducer,
    expr_reducer,
    reduce_record,
)
from gdscope.studies.table import TrialRecord
from gdscope.studies.verdict import (
    Role,
    Status,
    Verdict,
    fmt,
    fmt_band,
    label,
    listing,
    no_match_reason,
    select,
)

XReducer = Annotated[Reducer, BeforeValidator(config_reducer)]
"""A reducer; a bare string is a config key (``x = "data.n"``)."""
BudgetReducer = Annotated[Reducer, BeforeValidator(expr_reducer)]
"""A reducer; a bare string is an expression (``budget = "40*sqrt(kappa)"``)."""


def _ordered(band: tuple[float, float]) -> tuple[float, float]:
    if not band[0] <= band[1]:
        raise ValueError(f"band must be [low, high] with low ≤ high, got {list(band)}")
    return band


Band = Annotated[tuple[float, float], AfterValidator(_ordered)]
"""``[low, high]``; use ``-inf`` / ``inf`` for one-sided claims (``[-inf, -0.3]``)."""


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Keep(_Model):
    """Judge only the trials whose reduced ``y`` lies in ``band``; the rest are named in the reason.

    For claims stated on a subset defined by a measurement, e.g. D1′ "keeping only lazy runs
    (λ_min(H_T)/λ_min(H_0) ∈ [0.5, 1.5]; others are reported, not hidden)". A trial whose ``y``
    cannot be computed (diverged, not recorded) is dropped too, with its reason.
    """

    y: XReducer
    band: Band

    def split(
        self, records: Sequence[TrialRecord], axes: Sequence[str], allow_diverged: bool
    ) -> tuple[list[TrialRecord], list[str]]:
        """Return the kept records and one line per dropped trial (its label and value)."""
        kept, dropped = [], []
        low, high = self.band
        for record in records:
            red = reduce_record(self.y, record, allow_diverged=allow_diverged)
            if red.reason:
                dropped.append(f"{label(record, axes)} ({red.reason})")
            elif low <= red.value <= high:
                kept.append(record)
            else:
                dropped.append(f"{label(record, axes)} ({fmt(red.value)})")
        return kept, dropped

    def describe(self, dropped: Sequence[str], total: int) -> str:
        """Say how many of ``total`` trials were dropped, and name the first few."""
        return (
            f"dropped {len(dropped)} of {total} trials with {self.y.label} outside "
            f"{fmt_band(self.band)}: {listing(list(dropped))}"
        )


class _Claim(_Model):
    """Fields every claim has."""

    id: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$", max_length=80)
    """Letters, digits, ``_ . -`` (no markup, spaces or paths): it names the claim everywhere."""
    description: str = ""
    reference: str | None = None
    where: dict[str, Any] = Field(default_factory=dict)
    keep: Keep | None = None
    allow_diverged: bool = False
    gate: StrictBool = True
    """False for an exploratory claim ("report, not a gate"): judged as usual, stored as
    ``REPORTED`` with what its band would give in the reason, and never counted as a PASS or FAIL."""
    role: Role = "paper"
    """``"paper"`` for a claim of a paper; ``"sanity"`` for an identity or a closed-form recursion
    that cannot fail unless an instrument is wrong: judged as usual, shown apart as an
    instrument check and left out of the totals of paper claims."""
    finding: str | None = None
    """What was measured and why the claim does not hold here, or why the data cannot decide,
    and what scale would decide: required of every claim that is FAIL or INCONCLUSIVE at quick
    scale (a test checks it); printed beside the verdict by ``show`` and the report."""

    def judge(self, records: Sequence[TrialRecord], axes: Sequence[str] = ()) -> Verdict:
        """Judge the claim on ``records`` (``axes`` only name trials in reasons).

        An exploratory claim (``gate = false``) comes back ``REPORTED``; its reason starts with
        the status its band gives.
        """
        verdict = self._select_and_judge(records, axes)
        if self.gate:
            return verdict
        reason = f"exploratory, not a gate (by its band: {verdict.status}): {verdict.reason}"
        return dataclasses.replace(verdict, status="REPORTED", reason=reason)

    def _select_and_judge(self, records: Sequence[TrialRecord], axes: Sequence[str]) -> Verdict:
        """Judge the records matching ``where`` (and ``keep``).

        The records are those matching ``where``, then (with ``keep``) those whose measurement
        lies in ``keep.band``; the dropped ones are listed at the end of the reason.
        """
        chosen = select(records, self.where)
        if not chosen:
            return self._verdict("INCONCLUSIVE", math.nan, no_match_reason(records, self.where))
        if self.keep is None:
            return self._judge(chosen, axes)
        kept, dropped = self.keep.split(chosen, axes, self.allow_diverged)
        note = self.keep.describe(dropped, len(chosen))
        if not kept:
            return self._verdict("INCONCLUSIVE", math.nan, f"no trial kept: {note}")
        verdict = self._judge(kept, axes)
        return (
            dataclasses.replace(verdict, reason=f"{verdict.reason}; {note}") if dropped else verdict
        )

    def _judge(self, records: list[TrialRecord], axes: Sequence[str]) -> Verdict:
        raise NotImplementedError

    def _verdict(self, status: Status, statistic: float, reason: str, **extra: Any) -> Verdict:
        extra.setdefault("ci", None)
        extra.setdefault("band", getattr(self, "band", None))
        extra.setdefault("n_points", 0)
        return Verdict(
            claim_id=self.id,
            status=status,
            statistic=float(statistic),
            reason=reason,
            reference=self.reference,
            description=self.description,
            role=self.role,
            finding=self.finding,
            **extra,
        )
