r"""Claim kinds: what a study's results must show, declared as data and judged on records.

Every kind is a frozen pydantic model (``kind`` is the discriminator) with
``judge(records, axes=()) -> Verdict``. Common fields: ``id``, ``description``, ``reference``,
``where`` (keep records whose config matches, e.g. ``{"optimizer.name" = "gd"}``; a list value
means "one of") and ``allow_diverged`` (reduce diverged / failed trials too, instead of making
the claim INCONCLUSIVE). Bands are data: the code never moves them.

=============  ==========================================================================
kind           PASS when
=============  ==========================================================================
power_law      the bootstrap CI of the median log–log exponent (over seeds) ⊂ ``band``
slope          the same for a linear slope (``log_x`` / ``log_y`` optional)
bound          ``lhs ≤ rhs·(1 + slack) + atol`` at every common checkpoint of every trial
monotone       median Spearman ρ of y vs x ≥ ``rho_min`` (≤ −``rho_min`` when decreasing)
reaches        ``metric`` crosses ``threshold`` within ``budget`` in ≥ ``fraction`` of trials
compare        CI of statistic(A) − statistic(B) (or its absolute value) ⊂ ``band``
agrees         ``|y1 − y2| ≤ atol + rtol·|y2|`` for every trial
within         the reduction ``y`` lies in ``band`` for every trial
optimum_shift  CI of the spread (octaves) of the per-group argmin ``x*`` ⊂ ``band``
seed_spread    per-group statistic over seeds (cv, min/mean, mean): CI of its log–log
               exponent vs the group ⊂ ``band``, or every group's value in ``band``
=============  ==========================================================================

FAIL when the CI lies outside the band (or the inequality / fraction is not met);
INCONCLUSIVE when the evidence cannot decide: too few points, too short a range, a poor fit, a
nan reduction (diverged run, rejected rate fit) — the reason names the trials.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Annotated, Any, Literal

import numpy as np
from pydantic import (
    BaseModel,
    Field,
    NonNegativeFloat,
    NonNegativeInt,
    PositiveInt,
)

from gdscope.studies import _fitting
from gdscope.studies.claim_base import Band, BudgetReducer, XReducer, _Claim, _Model
from gdscope.studies.optimum import OptimumShiftClaim
from gdscope.studies.pointwise import AgreesClaim, WithinClaim
from gdscope.studies.reducers import (
    BAD_STATUSES,
    Reducer,
    reduce_record,
)
from gdscope.studies.spread import SeedSpreadClaim
from gdscope.studies.table import TrialRecord
from gdscope.studies.verdict import (
    Status,
    Verdict,
    band_status,
    fmt,
    fmt_band,
    label,
    listing,
    no_match_reason,
    select,
)

if TYPE_CHECKING:
    from gdscope.studies.spec import Study


class _Fit(_Model):
    """How to fit y against x per seed (shared by power_law, slope and compare)."""

    x: XReducer
    y: XReducer
    min_points: PositiveInt = 4
    min_r2: float = Field(default=0.9, ge=0, le=1)
    min_seeds: PositiveInt = 3
    ci: float = Field(default=0.9, gt=0, lt=1)
    n_boot: PositiveInt = 2000

    def _seed_fit(
        self, records: Sequence[TrialRecord], axes: Sequence[str], allow_diverged: bool
    ) -> tuple[_fitting.SeedPoints, _fitting.SeedFit]:
        points = _fitting.seed_points(self.x, self.y, records, axes, allow_diverged=allow_diverged)
        loglog = getattr(self, "kind", "") == "power_law"
        fit = _fitting.fit_seeds(
            points,
            loglog=loglog,
            log_x=getattr(self, "log_x", False),
            log_y=getattr(self, "log_y", False),
            min_points=self.min_points,
            min_decades=getattr(self, "min_decades", 0.0),
            min_r2=self.min_r2,
            min_seeds=self.min_seeds,
            ci=self.ci,
            n_boot=self.n_boot,
        )
        return points, fit


class _PowerLawFit(_Fit):
    min_decades: NonNegativeFloat = 1.0


class _SlopeFit(_Fit):
    min_points: PositiveInt = 3
    log_x: bool = False
    log_y: bool = False


def _fitted_verdict(
    claim: _Claim, fit: _Fit, records: list[TrialRecord], axes: Sequence[str]
) -> Verdict:
    band = claim.band  # type: ignore[attr-defined]
    points, seeds = fit._seed_fit(records, axes, claim.allow_diverged)
    what = "exponent" if isinstance(fit, _PowerLawFit) else "slope"
    summary = (
        f"median {what} {fmt(seeds.median)}, {fit.ci:.0%} CI [{fmt(seeds.lo)}, {fmt(seeds.hi)}]"
    )
    extra = {"ci": (seeds.lo, seeds.hi), "n_points": seeds.n_points, "evidence": points.evidence}
    problems = points.problems + seeds.problems
    if problems:
        return claim._verdict(
            "INCONCLUSIVE", seeds.median, f"{listing(problems)} ({summary})", **extra
        )
    status, where = band_status(seeds.lo, seeds.hi, band)
    reason = f"{summary} {where} band {fmt_band(band)} over {len(seeds.per_seed)} seeds"
    return claim._verdict(status, seeds.median, reason, **extra)


class PowerLawClaim(_Claim, _PowerLawFit):
    """``y ∝ x^p`` with the median exponent's CI inside ``band``."""

    kind: Literal["power_law"]
    band: Band

    def _judge(self, records: list[TrialRecord], axes: Sequence[str]) -> Verdict:
        return _fitted_verdict(self, self, records, axes)


class SlopeClaim(_Claim, _SlopeFit):
    """``y ≈ a + s·x`` (optionally in ``log x`` / ``log y``) with the median slope's CI in ``band``."""

    kind: Literal["slope"]
    band: Band

    def _judge(self, records: list[TrialRecord], axes: Sequence[str]) -> Verdict:
        return _fitted_verdict(self, self, records, axes)


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


class MonotoneClaim(_Claim):
    """``y`` increases (or decreases) with ``x``: median over seeds of Spearman ρ meets ``rho_min``.

    ``seed_mode = "mean"`` first averages ``y`` over seeds at each ``x`` and computes one ρ.
    ``allowed_inversions`` (if given) also bounds the median number of adjacent inversions.
    """

    kind: Literal["monotone"]
    x: XReducer
    y: XReducer
    direction: Literal["increasing", "decreasing"]
    rho_min: float = Field(default=0.9, gt=0, le=1)
    allowed_inversions: NonNegativeInt | None = None
    min_points: PositiveInt = 3
    seed_mode: Literal["per_seed", "mean"] = "per_seed"

    def _judge(self, records: list[TrialRecord], axes: Sequence[str]) -> Verdict:
        from gdscope.probes.trends import spearman

        points = _fitting.seed_points(
            self.x, self.y, records, axes, allow_diverged=self.allow_diverged
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
        inv = float(np.median(inversions)) if inversions else math.nan
        extra = {
            "band": band,
            "n_points": sum(len(p) for p in groups.values()),
            "evidence": points.evidence,
        }
        summary = f"median Spearman ρ {fmt(rho)} over {len(rhos)} seed group(s), median inversions {fmt(inv)}"
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

    def _budget(self, record: TrialRecord) -> Any:
        from gdscope.studies.reducers import Reduced

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


class PowerLawMeasure(_PowerLawFit):
    """Statistic of one compare group: the median log–log exponent over seeds."""

    kind: Literal["power_law"]


class SlopeMeasure(_SlopeFit):
    """Statistic of one compare group: the median linear slope over seeds."""

    kind: Literal["slope"]


class MedianMeasure(_Model):
    """Statistic of one compare group: the median of a reducer over the group's trials."""

    kind: Literal["median"]
    y: XReducer
    ci: float = Field(default=0.9, gt=0, lt=1)
    n_boot: PositiveInt = 2000


Measure = Annotated[PowerLawMeasure | SlopeMeasure | MedianMeasure, Field(discriminator="kind")]


class CompareClaim(_Claim):
    """statistic(A) − statistic(B) (``absolute``: its absolute value) has its CI inside ``band``.

    Groups are the records matching ``where_a`` / ``where_b``; both are summarised by ``measure``
    (a power_law or slope fit per seed, or the median of a reducer). The CI resamples the per-seed
    (or per-trial) values of each group independently.
    """

    kind: Literal["compare"]
    where_a: dict[str, Any]
    where_b: dict[str, Any]
    measure: Measure
    absolute: bool = False
    band: Band

    def _judge(self, records: list[TrialRecord], axes: Sequence[str]) -> Verdict:
        values, problems, evidence = {}, [], []
        for name, where in (("A", self.where_a), ("B", self.where_b)):
            group = select(records, where)
            if not group:
                problems.append(f"group {name}: {no_match_reason(records, where)}")
                values[name] = []
                continue
            vals, why, ev = self._measure(group, axes)
            values[name] = vals
            problems += [f"group {name}: {p}" for p in why]
            evidence += [{"group": name, **e} for e in ev]
        ci, boots = self.measure.ci, self.measure.n_boot
        stat, lo, hi = _fitting.bootstrap_difference(
            values["A"], values["B"], absolute=self.absolute, ci=ci, n_boot=boots
        )
        sa, sb = (float(np.median(values[k])) if values[k] else math.nan for k in ("A", "B"))
        what = "|A − B|" if self.absolute else "A − B"
        summary = (
            f"A={fmt(sa)}, B={fmt(sb)}, {what}={fmt(stat)}, {ci:.0%} CI [{fmt(lo)}, {fmt(hi)}]"
        )
        extra = {
            "ci": (lo, hi),
            "n_points": len(values["A"]) + len(values["B"]),
            "evidence": evidence,
        }
        if problems:
            return self._verdict("INCONCLUSIVE", stat, f"{listing(problems)} ({summary})", **extra)
        status, where = band_status(lo, hi, self.band)
        return self._verdict(status, stat, f"{summary} {where} band {fmt_band(self.band)}", **extra)

    def _measure(
        self, records: list[TrialRecord], axes: Sequence[str]
    ) -> tuple[list[float], list[str], list[dict[str, Any]]]:
        measure = self.measure
        if isinstance(measure, MedianMeasure):
            vals, problems, evidence = [], [], []
            for record in records:
                red = reduce_record(measure.y, record, allow_diverged=self.allow_diverged)
                evidence.append({"trial": label(record, axes), "y": red.value})
                if red.reason:
                    problems.append(f"{label(record, axes)}: {red.reason}")
                else:
                    vals.append(red.value)
            return vals, problems, evidence
        points, fit = measure._seed_fit(records, axes, self.allow_diverged)
        vals = [v for v in fit.per_seed.values() if math.isfinite(v)]
        return vals, points.problems + fit.problems, points.evidence


ClaimModel = (
    PowerLawClaim
    | SlopeClaim
    | BoundClaim
    | MonotoneClaim
    | ReachesClaim
    | CompareClaim
    | AgreesClaim
    | WithinClaim
    | OptimumShiftClaim
    | SeedSpreadClaim
)
Claim = Annotated[ClaimModel, Field(discriminator="kind")]
CLAIM_KINDS: dict[str, type[BaseModel]] = {
    "power_law": PowerLawClaim,
    "slope": SlopeClaim,
    "bound": BoundClaim,
    "monotone": MonotoneClaim,
    "reaches": ReachesClaim,
    "compare": CompareClaim,
    "agrees": AgreesClaim,
    "within": WithinClaim,
    "optimum_shift": OptimumShiftClaim,
    "seed_spread": SeedSpreadClaim,
}


def judge_study(study: Study, records: Sequence[TrialRecord]) -> list[Verdict]:
    """Judge every claim of ``study`` on ``records`` (in the study's claim order)."""
    return [claim.judge(records, study.axes) for claim in study.claims]
