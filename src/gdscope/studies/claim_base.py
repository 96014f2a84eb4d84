"""What every claim kind shares: the common fields, the verdict builder, band and reducer types."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
)

from gdscope.studies.reducers import (
    Reducer,
    config_reducer,
    expr_reducer,
)
from gdscope.studies.table import TrialRecord
from gdscope.studies.verdict import (
    Status,
    Verdict,
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


class _Claim(_Model):
    """Fields every claim has."""

    id: str = Field(min_length=1)
    description: str = ""
    reference: str | None = None
    where: dict[str, Any] = Field(default_factory=dict)
    allow_diverged: bool = False

    def judge(self, records: Sequence[TrialRecord], axes: Sequence[str] = ()) -> Verdict:
        """Judge the claim on ``records`` (``axes`` only name trials in reasons)."""
        chosen = select(records, self.where)
        if not chosen:
            return self._verdict("INCONCLUSIVE", math.nan, no_match_reason(records, self.where))
        return self._judge(chosen, axes)

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
            **extra,
        )
