r"""``paired_compare``: a fitted statistic of group A minus that of group B, seed by seed.

``compare`` summarises each group by the median of its per-seed fits and resamples the two groups
independently. When both groups are measured on the *same* seeds (the same data and the same
initial network, e.g. GD and NAG started from one init), most of the seed-to-seed spread is shared:
a seed whose kernel drifts more slows both optimizers. ``paired_compare`` keeps the pairing: per
seed it takes

.. math::  d_s = p_A(s) - p_B(s),

the difference of the two groups' fitted exponents (``power_law``) or slopes (``slope``) on that
seed, and the statistic is the median of :math:`d_s` over the seeds (its absolute value with
``absolute``) with a bootstrap percentile CI that resamples seeds (Efron & Tibshirani 1993, ch. 13).
PASS when the CI lies inside ``band``, FAIL when outside, INCONCLUSIVE when it straddles an edge or
a fit cannot be trusted (as for ``compare``: every per-seed fit is gated on ``min_points``,
``min_decades`` and ``min_r2``), or when a seed was fitted in one group only.

With ``pair = "trial"`` the pairing is finer: every trial of A is paired with the trial of B whose
config is the same except for the keys of ``where_a`` / ``where_b`` (same seed, same sweep point),
and each seed fits the *ratio* :math:`y_A / y_B` (``power_law``; the difference
:math:`y_A - y_B` for ``slope``) against ``x`` read on the A trial, e.g. the steps GD needs over
the steps NAG needs against κ at init. By linearity of least squares this exponent equals
:math:`p_A(s) - p_B(s)` when both groups share ``x``, but its fit quality is that of the ratio,
not of each group: ``min_r2`` gates it only when ``band`` names a value
(:func:`~gdscope.studies._fitting.names_a_value`), as for a ``power_law`` claim.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from typing import Annotated, Any, Literal

import numpy as np
from pydantic import Field

from gdscope.studies import _fitting
from gdscope.studies.claim_base import Band, _Claim
from gdscope.studies.fitted import PowerLawMeasure, SlopeMeasure
from gdscope.studies.reducers import Reduced, reduce_record
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

__all__ = ["PairedCompareClaim", "paired_median"]

FittedMeasure = Annotated[PowerLawMeasure | SlopeMeasure, Field(discriminator="kind")]


def paired_median(
    differences: Sequence[float],
    *,
    absolute: bool = False,
    ci: float = 0.9,
    n_boot: int = 2000,
    seed: int = 0,
) -> tuple[float, float, float]:
    """Median of per-seed differences (or its absolute value) and a bootstrap percentile CI.

    >>> paired_median([0.3, 0.3, 0.3])
    (0.3, 0.3, 0.3)
    """
    d = np.array([v for v in differences if math.isfinite(v)], dtype=np.float64)
    if d.size == 0:
        return math.nan, math.nan, math.nan
    rng = np.random.default_rng(seed)
    medians = np.median(d[rng.integers(0, d.size, (n_boot, d.size))], axis=1)
    stat = float(np.median(d))
    if absolute:
        medians, stat = np.abs(medians), abs(stat)
    lo, hi = np.quantile(medians, [(1 - ci) / 2, (1 + ci) / 2])
    return stat, float(lo), float(hi)


class PairedCompareClaim(_Claim):
    """Per seed, the fitted statistic of A minus that of B; the median's CI over seeds ⊂ ``band``.

    ``pair = "seed"``: difference of the two groups' per-seed fits (``x`` may differ between the
    groups, e.g. a κ measured in each run). ``pair = "trial"``: per seed, the fit of the ratio
    ``y_A / y_B`` (difference for ``slope``) of paired trials against ``x`` of the A trial.
    """

    kind: Literal["paired_compare"]
    where_a: dict[str, Any]
    where_b: dict[str, Any]
    measure: FittedMeasure
    pair: Literal["seed", "trial"] = "seed"
    absolute: bool = False
    band: Band

    def _judge(self, records: list[TrialRecord], axes: Sequence[str]) -> Verdict:
        groups = {name: select(records, where) for name, where in self._wheres()}
        missing = [
            f"group {name}: {no_match_reason(records, where)}"
            for name, where in self._wheres()
            if not groups[name]
        ]
        if missing:
            return self._verdict("INCONCLUSIVE", math.nan, listing(missing))
        if self.pair == "seed":
            per_seed, problems, warnings, evidence = self._by_seed(groups, axes)
        else:
            per_seed, problems, warnings, evidence = self._by_trial(groups, axes)
        measure = self.measure
        stat, lo, hi = paired_median(
            list(per_seed.values()), absolute=self.absolute, ci=measure.ci, n_boot=measure.n_boot
        )
        what = "exponent" if measure.kind == "power_law" else "slope"
        if self.pair == "seed":
            what = f"{what} {'|A − B|' if self.absolute else 'A − B'}"
        else:
            ratio = "A/B" if measure.kind == "power_law" else "A − B"
            what = f"{'|' if self.absolute else ''}{what} of {ratio}{'|' if self.absolute else ''}"
        values = ", ".join(fmt(v) for v in per_seed.values())
        summary = (
            f"per-seed {what}: median {fmt(stat)}, {measure.ci:.0%} CI [{fmt(lo)}, {fmt(hi)}] "
            f"over {len(per_seed)} paired seeds ({values})"
        )
        extra = {"ci": (lo, hi), "n_points": len(per_seed), "evidence": evidence}
        if problems:
            return self._verdict("INCONCLUSIVE", stat, f"{listing(problems)} ({summary})", **extra)
        status, where = band_status(lo, hi, self.band)
        reason = f"{summary} {where} band {fmt_band(self.band)}"
        if warnings:
            reason += f"; warning (the CI decides for this band): {listing(warnings)}"
        return self._verdict(status, stat, reason, **extra)

    def _wheres(self) -> tuple[tuple[str, dict[str, Any]], ...]:
        return (("A", self.where_a), ("B", self.where_b))

    def _by_seed(
        self, groups: Mapping[str, list[TrialRecord]], axes: Sequence[str]
    ) -> tuple[dict[Any, float], list[str], list[str], list[dict[str, Any]]]:
        fits: dict[str, dict[Any, float]] = {}
        problems: list[str] = []
        evidence: list[dict[str, Any]] = []
        for name, group in groups.items():
            points, fit = self.measure._seed_fit(group, axes, self.allow_diverged)
            fits[name] = {s: v for s, v in fit.per_seed.items() if math.isfinite(v)}
            problems += [f"group {name}: {p}" for p in points.problems + fit.problems]
            evidence += [{"group": name, **e} for e in points.evidence]
        a, b = fits["A"], fits["B"]
        shared = sorted(set(a) & set(b), key=repr)
        alone = sorted(set(a) ^ set(b), key=repr)
        if alone:
            problems.append(f"seed(s) fitted in one group only: {', '.join(map(str, alone))}")
        if len(shared) < self.measure.min_seeds:
            problems.append(
                f"{len(shared)} seed(s) fitted in both groups, needs ≥ {self.measure.min_seeds}"
            )
        per_seed = {s: a[s] - b[s] for s in shared}
        evidence += [
            {"seed": s, "A": a[s], "B": b[s], "difference": d} for s, d in per_seed.items()
        ]
        return per_seed, problems, [], evidence

    def _by_trial(
        self, groups: Mapping[str, list[TrialRecord]], axes: Sequence[str]
    ) -> tuple[dict[Any, float], list[str], list[str], list[dict[str, Any]]]:
        measure = self.measure
        keys = set(self.where_a) | set(self.where_b)

        def rest(record: TrialRecord) -> str:
            kept = {k: v for k, v in record.config.items() if k not in keys}
            return json.dumps(kept, sort_keys=True, default=str)

        partners = {rest(b): b for b in groups["B"]}
        points = _fitting.SeedPoints()
        loglog = measure.kind == "power_law"
        for record in groups["A"]:
            name, seed = label(record, axes), record.config.get("seed")
            rx = reduce_record(measure.x, record, allow_diverged=self.allow_diverged)
            ry = self._paired_y(record, partners.get(rest(record)), loglog)
            point: dict[str, Any] = {"trial": name, "seed": seed, "x": rx.value, "y": ry.value}
            why = "; ".join(
                f"{what}: {r.reason}" for what, r in ((measure.x.label, rx), ("y", ry)) if r.reason
            )
            if why:
                point["note"] = why
                points.problems.append(f"{name}: {why}")
            else:
                points.by_seed.setdefault(seed, []).append((rx.value, ry.value, name))
            points.evidence.append(point)
        fit = measure.fit_points(points, gate_r2=_fitting.names_a_value(self.band))
        per_seed = {s: v for s, v in fit.per_seed.items() if math.isfinite(v)}
        return per_seed, points.problems + fit.problems, fit.warnings, points.evidence

    def _paired_y(self, record: TrialRecord, partner: TrialRecord | None, ratio: bool) -> Reduced:
        """``y(A) / y(B)`` (``ratio``) or ``y(A) − y(B)`` for a trial and its B partner."""
        if partner is None:
            return Reduced(math.nan, "no B trial with the same config but the where keys")
        y = self.measure.y
        a = reduce_record(y, record, allow_diverged=self.allow_diverged)
        b = reduce_record(y, partner, allow_diverged=self.allow_diverged)
        if a.reason or b.reason:
            return Reduced(math.nan, f"{y.label}: {a.reason or 'B: ' + b.reason}")
        if not ratio:
            return Reduced(a.value - b.value)
        if b.value == 0:
            return Reduced(math.nan, f"{y.label} of the B trial is 0")
        return Reduced(a.value / b.value)
