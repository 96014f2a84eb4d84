r"""``threshold``: the smallest ``x`` at which a trial succeeds, per group and seed, and its scaling.

A study sweeps a searched axis ``x`` (e.g. ``model.width``, a ×2 grid) and a group axis
``group`` (e.g. ``data.n``, or ``{reduce = "expr", expr = "model.depth - 2"}``) over seeds. A
trial *succeeds* when its reduction ``y`` is ≥ ``level`` (``direction = "above"``; ≤ with
``"below"``), e.g. ``y = {reduce = "max", metric = "interpolated"}`` with ``level = 1``: it
reached 100% train accuracy within its step budget. Per ``(group, seed)`` cell the claim reads

.. math::  x^* = \min\{x_k : \text{every trial at } x_j \ge x_k \text{ succeeds}\},

the start of the run of successes that reaches the largest ``x`` of the cell's grid (a success
below ``x*`` followed by a failure is shown as a warning, not used), and fits per seed

.. math::  \log x^*_g = a + p \log g,

the exponent ``p`` by least squares over the groups. The statistic is the median ``p`` over
seeds with a bootstrap percentile CI (seeds resampled with replacement, ``n_boot`` times), as for
``power_law``; PASS when the CI lies inside ``band``, FAIL when outside, INCONCLUSIVE when it
straddles an edge. ``min_points`` groups spanning ``min_decades`` decades and ``min_seeds`` seeds
are needed; a per-seed R² < ``min_r2`` gates only a band that names a value
(:func:`~gdscope.studies._fitting.names_a_value`), else it is a warning.

The grid must bracket ``x*``. A cell whose largest ``x`` fails is *unreached* (``x* > x_max``), a
cell whose smallest ``x`` already succeeds is *below the grid* (``x* ≤ x_min``); neither is
dropped. Such a cell is an interval (``[log x_max, ∞)`` or ``(−∞, log x_min]``), and since the
least-squares slope is linear in the ``log x*``, each seed's exponent has exact bounds
``[p_lo, p_hi]`` over every value its censored cells may take. The median is monotone, so
``median p_lo ≤ median p ≤ median p_hi``, and the claim judges the CI
``[q(median p_lo), q(median p_hi)]`` (lower and upper bootstrap quantiles over the same seed
resamples; with no censored cell this is the usual CI of the median exponent). Exponents are
rounded to 1e-12, so that tied ``x*`` (frequent on a ×2 grid) give a slope of exactly 0 rather
than the ±1e-17 of round-off, which would decide a band edge at 0. A censored minority of seeds leaves both ends finite and the claim can decide; when
too many seeds are censored an end is infinite: never a PASS on that side, a FAIL when every
exponent consistent with the data lies outside ``band``. The reason always names the censored
cells; the reported statistic is then the median exponent with each censored cell at its grid
edge. The quantization of the grid (``x*`` is known to one grid step) is not added to the CI;
seed-to-seed variation carries it.

Diverged trials count as not succeeding (named in the reason); a failed trial (an exception), a
trial whose ``y`` cannot be reduced, or two trials at the same ``(group, seed, x)`` make the
claim INCONCLUSIVE.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
from pydantic import Field, NonNegativeFloat, PositiveInt

from gdscope.studies import _fitting
from gdscope.studies.claim_base import Band, XReducer, _Claim
from gdscope.studies.reducers import reduce_record
from gdscope.studies.table import TrialRecord
from gdscope.studies.verdict import Verdict, band_status, fmt, fmt_band, label, listing

__all__ = ["Cell", "ThresholdClaim", "exponent_bounds", "onset"]

_HUGE = 1e300  # stands for ±inf inside np.quantile (linear interpolation of inf gives nan)
_DIGITS = 12  # exponents are rounded to 1e-12 before they meet a band edge


@dataclass
class Cell:
    """One ``(group, seed)``: success per grid value of ``x`` and the onset ``x*``."""

    group: float
    seed: Any
    tried: dict[float, bool] = field(default_factory=dict)
    names: dict[float, str] = field(default_factory=dict)

    def onset(self) -> tuple[float, Literal["exact", "unreached", "below_grid"], list[float]]:
        """``(x*, censoring, stray successes)``; see :func:`onset`."""
        xs = sorted(self.tried)
        return onset(xs, [self.tried[x] for x in xs])


def onset(
    xs: Sequence[float], ok: Sequence[bool]
) -> tuple[float, Literal["exact", "unreached", "below_grid"], list[float]]:
    """Smallest ``x`` from which every larger ``x`` succeeds, how it is censored, stray successes.

    ``xs`` ascending. Returns ``(x*, "exact", strays)``; ``(xs[-1], "unreached", strays)``
    when the largest ``x`` fails (``x* > xs[-1]``); ``(xs[0], "below_grid", [])`` when every
    ``x`` succeeds (``x* ≤ xs[0]``). ``strays`` are successes below ``x*`` (non-monotone cells).

    >>> onset([4, 8, 16, 32], [False, True, False, True])
    (32, 'exact', [8])
    >>> onset([4, 8], [False, False])
    (8, 'unreached', [])
    >>> onset([4, 8], [True, True])
    (4, 'below_grid', [])
    """
    k = len(xs)
    while k > 0 and ok[k - 1]:
        k -= 1
    strays = [x for x, good in zip(xs[:k], ok[:k], strict=True) if good]
    if k == len(xs):
        return xs[-1], "unreached", strays
    if k == 0:
        return xs[0], "below_grid", []
    return xs[k], "exact", strays


def exponent_bounds(log_g: np.ndarray, low: np.ndarray, high: np.ndarray) -> tuple[float, float]:
    r"""Smallest and largest least-squares slope of ``y`` on ``log_g`` with ``low ≤ y ≤ high``.

    The slope :math:`\sum_i w_i y_i`, :math:`w_i = (u_i - \bar u)/\sum_j (u_j - \bar u)^2`, is
    linear in ``y``, so its extremes take each ``y_i`` at an end of its interval; ends may be
    ``±inf``.

    >>> exponent_bounds(np.array([0.0, 1.0]), np.array([0.0, 2.0]), np.array([0.0, np.inf]))
    (2.0, inf)
    """
    u = log_g - log_g.mean()
    spread = float(u @ u)
    if spread == 0:
        return math.nan, math.nan
    w = u / spread
    with np.errstate(invalid="ignore"):
        lo = np.where(w > 0, w * low, np.where(w < 0, w * high, 0.0))
        hi = np.where(w > 0, w * high, np.where(w < 0, w * low, 0.0))
    return float(lo.sum()), float(hi.sum())


class ThresholdClaim(_Claim):
    """Exponent of the smallest succeeding ``x`` against ``group`` (median over seeds) in ``band``."""

    kind: Literal["threshold"]
    x: XReducer
    group: XReducer
    y: XReducer
    level: float
    direction: Literal["above", "below"] = "above"
    band: Band
    min_points: PositiveInt = 4
    min_decades: NonNegativeFloat = 1.0
    min_r2: float = Field(default=0.9, ge=0, le=1)
    min_seeds: PositiveInt = 3
    ci: float = Field(default=0.9, gt=0, lt=1)
    n_boot: PositiveInt = 2000

    def _judge(self, records: list[TrialRecord], axes: Sequence[str]) -> Verdict:
        cells, problems, diverged = self._cells(records, axes)
        points = _fitting.SeedPoints()
        evidence: list[dict[str, Any]] = []
        censored: list[str] = []
        strays: list[str] = []
        bounds: dict[Any, list[tuple[float, float, float]]] = {}  # seed -> (log g, lo, hi)
        for cell in sorted(cells.values(), key=lambda c: (repr(c.seed), c.group)):
            x_star, how, stray = cell.onset()
            where = f"{self.group.label}={fmt(cell.group)}, seed={cell.seed!r}"
            if stray:
                strays.append(f"{where}: succeeds at {self.x.label}={fmt(stray[0])} below x*")
            lo = hi = math.log(x_star)
            if how == "unreached":
                hi = math.inf
                censored.append(f"{where}: not reached by {self.x.label}={fmt(x_star)}")
            elif how == "below_grid":
                lo = -math.inf
                censored.append(f"{where}: already at {self.x.label}={fmt(x_star)}")
            points.by_seed.setdefault(cell.seed, []).append((cell.group, x_star, where))
            bounds.setdefault(cell.seed, []).append((math.log(cell.group), lo, hi))
            evidence.append(
                {
                    "group": cell.group,
                    "seed": cell.seed,
                    "x": cell.group,
                    "y": x_star,
                    "censored": how,
                    "grid": sorted(cell.tried),
                    "succeeded": [cell.tried[v] for v in sorted(cell.tried)],
                }
            )
        fit = _fitting.fit_seeds(
            points,
            loglog=True,
            min_points=self.min_points,
            min_decades=self.min_decades,
            min_r2=self.min_r2,
            min_seeds=self.min_seeds,
            ci=self.ci,
            n_boot=self.n_boot,
            gate_r2=_fitting.names_a_value(self.band),
        )
        problems += fit.problems
        table = self._table(evidence)
        extra: dict[str, Any] = {"n_points": len(evidence), "evidence": evidence}
        notes = ""
        if diverged:
            notes += f"; diverged, counted as not succeeding: {listing(diverged)}"
        if strays:
            notes += f"; warning, not monotone in {self.x.label}: {listing(strays)}"
        if fit.warnings:
            notes += f"; warning (the CI decides for this band): {listing(fit.warnings)}"
        if problems or not evidence:
            why = listing(problems) or "no trial to judge"
            extra["ci"] = (fit.lo, fit.hi)
            return self._verdict("INCONCLUSIVE", fit.median, f"{why} ({table}){notes}", **extra)
        low, high = self._bounded_ci(bounds)
        extra["ci"] = (low, high)
        median = round(fit.median, _DIGITS)
        if not censored:
            status, where = band_status(low, high, self.band)
            reason = (
                f"{table}; median exponent of x* vs {self.group.label} {fmt(median)}, "
                f"{self.ci:.0%} CI [{fmt(low)}, {fmt(high)}] over {len(fit.per_seed)} "
                f"seeds {where} band {fmt_band(self.band)}{notes}"
            )
            return self._verdict(status, median, reason, **extra)
        status, where = band_status(low, high, self.band)
        advice = f"; widen the {self.x.label} grid to decide" if status == "INCONCLUSIVE" else ""
        reason = (
            f"{table}; x* outside the grid in {len(censored)} cell(s) ({listing(censored)}), so "
            f"each seed's exponent is only bounded and the median over seeds lies between the "
            f"medians of the bounds: {self.ci:.0%} CI [{fmt(low)}, {fmt(high)}] {where} band "
            f"{fmt_band(self.band)}{advice}{notes}"
        )
        return self._verdict(status, median, reason, **extra)

    def _cells(
        self, records: Sequence[TrialRecord], axes: Sequence[str]
    ) -> tuple[dict[tuple[float, Any], Cell], list[str], list[str]]:
        """Success of every trial, by ``(group, seed)`` cell; problems; diverged trials."""
        cells: dict[tuple[float, Any], Cell] = {}
        problems: list[str] = []
        diverged: list[str] = []
        for record in records:
            name = label(record, axes)
            if record.status == "failed":
                problems.append(f"{name}: trial failed: {record.reason}")
                continue
            rx = reduce_record(self.x, record)
            rg = reduce_record(self.group, record)
            bad = [
                f"{r.label}: {z.reason or f'{fmt(z.value)} is not > 0'}"
                for r, z in ((self.x, rx), (self.group, rg))
                if z.reason or not z.value > 0
            ]
            if bad:
                problems.append(f"{name}: {'; '.join(bad)}")
                continue
            ry = reduce_record(self.y, record, allow_diverged=True)
            if record.status == "diverged":
                diverged.append(name)
                ok = False
            elif ry.reason:
                problems.append(f"{name}: {self.y.label}: {ry.reason}")
                continue
            else:
                ok = ry.value >= self.level if self.direction == "above" else ry.value <= self.level
            seed = record.config.get("seed")
            cell = cells.setdefault((rg.value, seed), Cell(rg.value, seed))
            if rx.value in cell.tried:
                problems.append(
                    f"{name} and {cell.names[rx.value]}: two trials at the same "
                    f"{self.group.label}, seed and {self.x.label}; narrow the claim with `where`"
                )
                continue
            cell.tried[rx.value] = bool(ok)
            cell.names[rx.value] = name
        return cells, problems, diverged

    def _bounded_ci(
        self, bounds: dict[Any, list[tuple[float, float, float]]]
    ) -> tuple[float, float]:
        """CI ``[q(median p_lo), q(median p_hi)]`` over seed resamples of the exponent bounds."""
        lows, highs = [], []
        for seed in sorted(bounds, key=repr):
            rows = np.array(sorted(bounds[seed]), dtype=np.float64)
            p_lo, p_hi = exponent_bounds(rows[:, 0], rows[:, 1], rows[:, 2])
            # x* on a ×2 grid ties often; a tie's slope is 0, not the ±1e-17 of round-off
            lows.append(round(p_lo, _DIGITS))
            highs.append(round(p_hi, _DIGITS))
        lo_arr = np.clip(np.array(lows), -_HUGE, _HUGE)
        hi_arr = np.clip(np.array(highs), -_HUGE, _HUGE)
        rng = np.random.default_rng(0)
        picks = rng.integers(0, lo_arr.size, (self.n_boot, lo_arr.size))
        tail = (1 - self.ci) / 2
        low = float(np.quantile(np.median(lo_arr[picks], axis=1), tail))
        high = float(np.quantile(np.median(hi_arr[picks], axis=1), 1 - tail))
        return _unclip(low), _unclip(high)

    def _table(self, evidence: list[dict[str, Any]]) -> str:
        """``x* per group over seeds: {n=8: [8, 16, >256], ...}``."""
        by_group: dict[float, list[str]] = {}
        for row in evidence:
            mark = {"exact": "", "unreached": ">", "below_grid": "≤"}[row["censored"]]
            by_group.setdefault(row["group"], []).append(f"{mark}{fmt(row['y'])}")
        cells = ", ".join(f"{fmt(g)}: [{', '.join(v)}]" for g, v in sorted(by_group.items()))
        return (
            f"x* = smallest {self.x.label} from which {self.y.label} {self._goal()}, per "
            f"{self.group.label} (seeds in order): {{{cells}}}"
        )

    def _goal(self) -> str:
        return f"{'≥' if self.direction == 'above' else '≤'} {self.level:g}"


def _unclip(value: float) -> float:
    if value >= _HUGE / 1e100:
        return math.inf
    if value <= -_HUGE / 1e100:
        return -math.inf
    return value
