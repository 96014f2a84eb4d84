"""The ``monotone`` claim: y increases (or decreases) with x, by Spearman's ρ over seeds."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, Literal

import numpy as np
from pydantic import Field, NonNegativeInt, PositiveInt

from gdscope.studies import _fitting
from gdscope.studies.claim_base import XReducer, _Claim
from gdscope.studies.table import TrialRecord
from gdscope.studies.verdict import (
    Status,
    Verdict,
    fmt,
    listing,
    no_match_reason,
    pair_with_baseline,
)


class MonotoneClaim(_Claim):
    """``y`` increases (or decreases) with ``x``: median over seeds of Spearman ρ meets ``rho_min``.

    ``seed_mode = "mean"`` first averages ``y`` over seeds at each ``x`` and computes one ρ.
    ``baseline`` (a ``where`` filter) makes ``y`` a paired gap: the records matching it are
    baselines, and each other record's ``y`` is taken minus that of the baseline whose config is
    the same except for the baseline's keys (e.g. "the residual − plain gap grows with depth").
    ``allowed_inversions`` (if given) also bounds the number of adjacent inversions of EVERY
    seed group (the worst one is judged: "non-increasing" must hold for each seed, not for most).
    """

    kind: Literal["monotone"]
    x: XReducer
    y: XReducer
    direction: Literal["increasing", "decreasing"]
    rho_min: float = Field(default=0.9, gt=0, le=1)
    allowed_inversions: NonNegativeInt | None = None
    min_points: PositiveInt = 3
    seed_mode: Literal["per_seed", "mean"] = "per_seed"
    baseline: dict[str, Any] | None = None

    def _judge(self, records: list[TrialRecord], axes: Sequence[str]) -> Verdict:
        from gdscope.stats.trends import spearman

        bases = None
        if self.baseline is not None:
            pairs = pair_with_baseline(records, self.baseline)
            if pairs is None:
                return self._verdict(
                    "INCONCLUSIVE", math.nan, no_match_reason(records, self.baseline)
                )
            records, bases = [r for r, _ in pairs], [b for _, b in pairs]
        points = _fitting.seed_points(
            self.x, self.y, records, axes, allow_diverged=self.allow_diverged, bases=bases
        )
        groups = {k: [(p[0], p[1]) for p in v] for k, v in points.by_seed.items()}
        if self.seed_mode == "mean":
            pooled: dict[float, list[float]] = {}
            for pts in groups.values():
                for x, y in pts:
                    pooled.setdefault(x, []).append(y)
            groups = {"mean": [(x, float(np.mean(ys))) for x, ys in sorted(pooled.items())]}
            points.problems[:] = [p for p in points.problems if "several trials" not in p]
        sign = 1.0 if self.direction == "increasing" else -1.0
        band = (self.rho_min, 1.0) if sign > 0 else (-1.0, -self.rho_min)
        problems = list(points.problems)
        rhos, inversions = [], []
        for key, pts in sorted(groups.items(), key=lambda kv: repr(kv[0])):
            fit = spearman([p[0] for p in pts], [p[1] for p in pts])
            if fit.n < self.min_points:
                problems.append(f"seed {key}: {fit.n} points, needs ≥ {self.min_points}")
            elif math.isnan(fit.rho):
                problems.append(f"seed {key}: x or y constant, ρ undefined")
            rhos.append(fit.rho)
            inversions.append(fit.inversions)
        rho = float(np.median(rhos)) if rhos else math.nan
        inv = float(max(inversions)) if inversions else math.nan
        extra = {
            "band": band,
            "n_points": sum(len(p) for p in groups.values()),
            "evidence": points.evidence,
        }
        summary = f"median Spearman ρ {fmt(rho)} over {len(rhos)} seed group(s), most inversions in a seed group {fmt(inv)}"
        if problems or not rhos:
            return self._verdict(
                "INCONCLUSIVE", rho, f"{listing(problems) or 'no points'} ({summary})", **extra
            )
        meets = sign * rho >= self.rho_min
        allowed = self.allowed_inversions
        ok_inv = allowed is None or inv <= allowed
        target = f"{'≥' if sign > 0 else '≤'} {fmt(sign * self.rho_min)}"
        inv_text = "" if allowed is None else f", inversions ≤ {allowed}"
        status: Status = "PASS" if meets and ok_inv else "FAIL"
        return self._verdict(status, rho, f"{summary}; needs ρ {target}{inv_text}", **extra)
