"""Claims judged by fitting y against x per seed: ``power_law``, ``slope``, and ``compare``.

``power_law`` and ``slope`` fit one line per seed (log–log, or linear with optional logs) and
PASS when the bootstrap CI of the median exponent / slope lies inside ``band``; ``compare``
summarises two groups of records by such a fit (or by a median) and checks the CI of their
difference. Bands are data: the code never moves them.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Annotated, Any, Literal

import numpy as np
from pydantic import Field, NonNegativeFloat, PositiveInt

from gdscope.studies import _fitting
from gdscope.studies.claim_base import Band, XReducer, _Claim, _Model
from gdscope.studies.reducers import reduce_record
from gdscope.studies.table import TrialRecord
from gdscope.studies.verdict import (
    Verdict,
    band_status,
    fmt,
    fmt_band,
    label,
    listing,
    no_match_reason,
    select,
)


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
        self,
        records: Sequence[TrialRecord],
        axes: Sequence[str],
        allow_diverged: bool,
        band: tuple[float, float] | None = None,
    ) -> tuple[_fitting.SeedPoints, _fitting.SeedFit]:
        """Fit each seed; R² gates only a claim whose band names a slope.

        ``band=None`` is a compare group's measure, always gated (see
        :func:`_fitting.names_a_value`).
        """
        points = _fitting.seed_points(self.x, self.y, records, axes, allow_diverged=allow_diverged)
        gate_r2 = band is None or _fitting.names_a_value(band)
        return points, self.fit_points(points, gate_r2=gate_r2)

    def fit_points(self, points: _fitting.SeedPoints, *, gate_r2: bool) -> _fitting.SeedFit:
        """Fit each seed's points with this fit's settings (log–log for ``power_law``)."""
        return _fitting.fit_seeds(
            points,
            loglog=getattr(self, "kind", "") == "power_law",
            log_x=getattr(self, "log_x", False),
            log_y=getattr(self, "log_y", False),
            min_points=self.min_points,
            min_decades=getattr(self, "min_decades", 0.0),
            min_r2=self.min_r2,
            min_seeds=self.min_seeds,
            ci=self.ci,
            n_boot=self.n_boot,
            gate_r2=gate_r2,
        )


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
    points, seeds = fit._seed_fit(records, axes, claim.allow_diverged, band)
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
    if seeds.warnings:
        reason += f"; warning (the CI decides for this band): {listing(seeds.warnings)}"
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


class PowerLawMeasure(_PowerLawFit):
    """Statistic of one compare group: the median log–log exponent over seeds."""

    kind: Literal["power_law"]


class SlopeMeasure(_SlopeFit):
    """Statistic of one compare group: the median linear slope over seeds."""

    kind: Literal["slope"]


class MedianMeasure(_Model):
    """Statistic of one compare group: the median or the mean of a reducer over its trials.

    With ``kind = "mean"``, a 0/1 indicator gives the fraction of trials where it holds, e.g.
    the share of a width grid at which a net fits (its median only says whether most do).
    """

    kind: Literal["median", "mean"]
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
        center = "mean" if self.measure.kind == "mean" else "median"
        stat, lo, hi = _fitting.bootstrap_difference(
            values["A"], values["B"], absolute=self.absolute, ci=ci, n_boot=boots, center=center
        )
        average = np.mean if center == "mean" else np.median
        sa, sb = (float(average(values[k])) if values[k] else math.nan for k in ("A", "B"))
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
