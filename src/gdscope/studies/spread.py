r"""``seed_spread``: a statistic across the seeds of each group (e.g. each width), and its trend.

Per group (``group_by``, e.g. ``model.width``) the claim reduces every trial to ``y`` and takes a
statistic over the group's seeds:

- ``cv``: coefficient of variation ``std / mean`` (``ddof = 1``);
- ``min_over_mean``: ``min / mean``;
- ``mean``: the mean.

Then either

- ``trend = "power_law"``: fit :math:`s_g \approx c\,g^p` (log–log least squares over the groups)
  and judge the exponent ``p`` against ``band``. The CI resamples the seeds within each group
  with replacement (``n_boot`` times) and refits. PASS when the CI lies inside ``band``, FAIL
  when it lies outside, INCONCLUSIVE when it straddles an edge; INCONCLUSIVE too with fewer
  than ``min_points`` groups or groups spanning fewer than ``min_decades`` decades. R² is
  reported, not gated.
- ``trend = "none"``: every group's statistic must lie in ``band`` (PASS, else FAIL); the
  reported statistic is the worst group's (the one nearest to, or furthest outside, an edge).

Every group needs ≥ ``min_seeds`` seeds with a finite ``y``, else INCONCLUSIVE naming the group.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, Literal

import numpy as np
from pydantic import Field, PositiveInt

from gdscope.stats.fits import loglog_fit
from gdscope.studies.claim_base import Band, XReducer, _Claim
from gdscope.studies.reducers import reduce_record
from gdscope.studies.table import TrialRecord
from gdscope.studies.verdict import Verdict, band_status, fmt, fmt_band, label, listing

__all__ = ["SeedSpreadClaim", "seed_statistic"]

Statistic = Literal["cv", "min_over_mean", "mean"]


def seed_statistic(values: np.ndarray, statistic: Statistic) -> np.ndarray:
    """Compute the statistic over the last axis of ``values`` (nan where the mean is ≤ 0 for a ratio)."""
    mean = values.mean(axis=-1)
    if statistic == "mean":
        return mean
    with np.errstate(divide="ignore", invalid="ignore"):
        num = values.std(axis=-1, ddof=1) if statistic == "cv" else values.min(axis=-1)
        return np.where(mean > 0, num / np.where(mean > 0, mean, 1.0), np.nan)


def _exponents(log_x: np.ndarray, log_s: np.ndarray) -> np.ndarray:
    """Least-squares slopes of ``log_s[..., g]`` on ``log_x[g]`` along the last axis."""
    dx = log_x - log_x.mean()
    with np.errstate(invalid="ignore"):
        return ((log_s - log_s.mean(axis=-1, keepdims=True)) * dx).sum(axis=-1) / (dx @ dx)


class SeedSpreadClaim(_Claim):
    """A statistic over seeds per ``group_by`` group: its power-law trend, or each value, in ``band``."""

    kind: Literal["seed_spread"]
    group_by: str
    y: XReducer
    statistic: Statistic
    trend: Literal["power_law", "none"]
    band: Band
    min_seeds: int = Field(default=3, ge=2)
    min_points: PositiveInt = 4
    min_decades: float = Field(default=1.0, ge=0)
    ci: float = Field(default=0.9, gt=0, lt=1)
    n_boot: PositiveInt = 2000

    def _judge(self, records: list[TrialRecord], axes: Sequence[str]) -> Verdict:
        problems: list[str] = []
        values: dict[Any, dict[Any, float]] = {}  # values[group][seed] = y
        for record in records:
            name = label(record, axes)
            if self.group_by not in record.config:
                problems.append(f"{name}: config has no key {self.group_by!r}")
                continue
            ry = reduce_record(self.y, record, allow_diverged=self.allow_diverged)
            if ry.reason or not math.isfinite(ry.value):
                problems.append(f"{name}: {self.y.label}: {ry.reason or fmt(ry.value)}")
                continue
            group, seed = record.config[self.group_by], record.config.get("seed")
            by_seed = values.setdefault(group, {})
            if seed in by_seed:
                problems.append(
                    f"{name}: several trials at {self.group_by}={group!r}, seed={seed!r}; "
                    "narrow the claim with `where`"
                )
            by_seed[seed] = ry.value
        groups = sorted(values, key=lambda g: (not isinstance(g, int | float), g))
        arrays = {g: np.array(list(values[g].values()), dtype=np.float64) for g in groups}
        stats: dict[Any, float] = {}
        for g in groups:
            n = arrays[g].size
            if n < self.min_seeds:
                problems.append(
                    f"{self.group_by}={g!r}: {n} seed(s) with a finite {self.y.label}, "
                    f"needs ≥ {self.min_seeds}"
                )
                stats[g] = math.nan
                continue
            stats[g] = float(seed_statistic(arrays[g], self.statistic))
            if math.isnan(stats[g]):
                problems.append(
                    f"{self.group_by}={g!r}: mean {self.y.label} ≤ 0, {self.statistic} undefined"
                )
        evidence = [
            {"group": g, self.group_by: g, "statistic": stats[g], "n_seeds": int(arrays[g].size)}
            for g in groups
        ]
        per_group = ", ".join(f"{g!r}: {fmt(stats[g])}" for g in groups)
        what = f"{self.statistic} of {self.y.label} over seeds per {self.group_by}: {{{per_group}}}"
        n_used = sum(a.size for a in arrays.values())
        if not groups:
            problems.append(f"no trial has a finite {self.y.label}")
        if self.trend == "none":
            return self._judge_each(stats, problems, what, n_used, evidence)
        return self._judge_trend(groups, arrays, stats, problems, what, n_used, evidence)

    def _judge_each(
        self,
        stats: dict[Any, float],
        problems: list[str],
        what: str,
        n_used: int,
        evidence: list[dict[str, Any]],
    ) -> Verdict:
        low, high = self.band
        extra: dict[str, Any] = {"n_points": n_used, "evidence": evidence}
        if problems:
            return self._verdict("INCONCLUSIVE", math.nan, f"{listing(problems)} ({what})", **extra)
        margin = {g: min(s - low, high - s) for g, s in stats.items()}
        worst = min(margin, key=lambda g: margin[g])
        outside = [g for g, m in margin.items() if m < 0]
        stat = stats[worst]
        if outside:
            names = ", ".join(f"{self.group_by}={g!r} ({fmt(stats[g])})" for g in outside)
            reason = f"{what}; outside band {fmt_band(self.band)}: {names}"
            return self._verdict("FAIL", stat, reason, **extra)
        reason = (
            f"{what}; every group inside band {fmt_band(self.band)} "
            f"(worst {self.group_by}={worst!r}: {fmt(stat)})"
        )
        return self._verdict("PASS", stat, reason, **extra)

    def _judge_trend(
        self,
        groups: list[Any],
        arrays: dict[Any, np.ndarray],
        stats: dict[Any, float],
        problems: list[str],
        what: str,
        n_used: int,
        evidence: list[dict[str, Any]],
    ) -> Verdict:
        extra: dict[str, Any] = {"n_points": n_used, "evidence": evidence}
        xs: list[float] = []
        for g in groups:
            ok = isinstance(g, int | float) and not isinstance(g, bool) and g > 0
            if not ok:
                problems.append(f"{self.group_by}={g!r}: a power-law trend needs group values > 0")
            elif not stats[g] > 0 and not math.isnan(stats[g]):
                problems.append(
                    f"{self.group_by}={g!r}: {self.statistic} = {fmt(stats[g])}, log–log fit needs > 0"
                )
            xs.append(float(g) if ok else math.nan)
        fit = loglog_fit(np.array(xs), np.array([stats[g] for g in groups]))
        if fit.n_points < self.min_points:
            problems.append(f"{fit.n_points} usable group(s), needs ≥ {self.min_points}")
        elif fit.decades < self.min_decades:
            problems.append(
                f"{self.group_by} spans {fit.decades:.2f} decades, needs ≥ {self.min_decades:g}"
            )
        if problems:
            reason = f"{listing(problems)} ({what})"
            return self._verdict("INCONCLUSIVE", fit.exponent, reason, **extra)
        lo, hi, degenerate = self._bootstrap(np.log(xs), [arrays[g] for g in groups])
        summary = (
            f"{what}; log–log exponent {fmt(fit.exponent)} (R²={fmt(fit.r2)}, "
            f"{fit.n_points} groups over {fit.decades:.2f} decades), {self.ci:.0%} CI "
            f"[{fmt(lo)}, {fmt(hi)}] resampling seeds within groups"
        )
        extra["ci"] = (lo, hi)
        tail = (1 - self.ci) / 2
        if degenerate > tail:
            reason = (
                f"{degenerate:.0%} of seed resamples give a {self.statistic} ≤ 0 or undefined "
                f"(too few distinct seeds per group) ({summary})"
            )
            return self._verdict("INCONCLUSIVE", fit.exponent, reason, **extra)
        status, where = band_status(lo, hi, self.band)
        reason = f"{summary} {where} band {fmt_band(self.band)}"
        return self._verdict(status, fit.exponent, reason, **extra)

    def _bootstrap(
        self, log_x: np.ndarray, samples: list[np.ndarray]
    ) -> tuple[float, float, float]:
        """CI of the exponent over seed resamples, and the fraction of degenerate resamples."""
        rng = np.random.default_rng(0)
        cols = []
        for vals in samples:
            picks = rng.integers(vals.size, size=(self.n_boot, vals.size))
            cols.append(seed_statistic(vals[picks], self.statistic))
        s = np.stack(cols, axis=-1)  # (n_boot, groups)
        with np.errstate(divide="ignore", invalid="ignore"):
            log_s = np.where(s > 0, np.log(np.where(s > 0, s, 1.0)), np.nan)
        slopes = _exponents(log_x, log_s)
        finite = slopes[np.isfinite(slopes)]
        degenerate = 1 - finite.size / slopes.size
        if finite.size == 0:
            return math.nan, math.nan, degenerate
        tail = (1 - self.ci) / 2
        lo, hi = np.quantile(finite, [tail, 1 - tail])
        return float(lo), float(hi), degenerate
