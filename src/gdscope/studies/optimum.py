r"""``optimum_shift``: how far the best ``x`` (e.g. the learning rate) moves between groups.

Per group (``group_by``, e.g. ``model.width``) the claim finds ``x* = argmin_x y`` (``argmax``
with ``minimize = false``) of a reducer ``y`` (e.g. the final loss) on the trials' grid of ``x``
(e.g. ``optimizer.lr``), and measures the spread of the optimum across groups in octaves:

.. math::  S = \max_g \log_2 x^*_g - \min_g \log_2 x^*_g .

Seeds: at each ``(group, x)`` the curve value is the median of ``y`` over seeds; ``x*`` is read
off that median curve. The CI resamples seeds with replacement (``n_boot`` times) and recomputes
``S``. PASS when the CI lies inside ``band`` (e.g. ``[0, 1]`` octave), FAIL when it lies
outside, INCONCLUSIVE when it straddles an edge.

A diverged or failed trial, or one whose ``y`` is not finite, counts as the worst possible value
(``+inf`` when minimizing): an lr that blows up is not optimal, and learning-rate grids are meant
to reach the divergent side. The claim is INCONCLUSIVE when a group has fewer than
``min_points`` grid values with a finite ``y``, when the optimum of a group sits on the edge of
its grid (the grid does not bracket it; ``edge_ok = true`` accepts that), with fewer than two
groups, or when numeric groups span fewer than ``min_span_octaves`` octaves
(``log2(max/min)``, e.g. "over ≥ 5 octaves of width"; 0, the default, asks nothing).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, Literal

import numpy as np
from pydantic import Field, PositiveInt

from gdscope.studies.claim_base import Band, XReducer, _Claim
from gdscope.studies.reducers import BAD_STATUSES, reduce_record
from gdscope.studies.table import TrialRecord
from gdscope.studies.verdict import Verdict, band_status, fmt, fmt_band, label, listing

__all__ = ["OptimumShiftClaim", "optimum_spread"]


def _argbest(xs: np.ndarray, ys: np.ndarray, minimize: bool) -> float:
    """``x`` of the best finite-or-inf ``y`` (ties: the smallest ``x``); nan when all are worst."""
    scores = ys if minimize else -ys
    if not np.isfinite(scores).any():
        return math.nan
    return float(xs[int(np.argmin(scores))])


def optimum_spread(
    curves: dict[Any, dict[float, np.ndarray]], minimize: bool = True
) -> tuple[float, dict[Any, float]]:
    """Spread ``max − min`` of ``log2 x*`` over groups and each group's ``x*``.

    Args:
        curves: ``{group: {x: y values over seeds}}``; ``y = ±inf`` marks a worst (diverged) value.
        minimize: pick the ``x`` with the smallest median ``y`` (else the largest).

    Returns:
        ``(spread in octaves, {group: x*})``; the spread is nan if a group has no finite optimum.

    """
    best: dict[Any, float] = {}
    for group, by_x in curves.items():
        xs = np.array(sorted(by_x), dtype=np.float64)
        ys = np.array([np.median(by_x[x]) for x in xs], dtype=np.float64)
        best[group] = _argbest(xs, ys, minimize)
    logs = [math.log2(v) for v in best.values() if math.isfinite(v) and v > 0]
    if len(logs) != len(best) or not logs:
        return math.nan, best
    return max(logs) - min(logs), best


class OptimumShiftClaim(_Claim):
    """Spread (octaves) across ``group_by`` groups of the ``x`` minimizing ``y`` lies in ``band``."""

    kind: Literal["optimum_shift"]
    group_by: str
    x: XReducer
    y: XReducer
    minimize: bool = True
    band: Band
    min_points: PositiveInt = 3
    edge_ok: bool = False
    min_span_octaves: float = Field(default=0.0, ge=0)
    ci: float = Field(default=0.9, gt=0, lt=1)
    n_boot: PositiveInt = 2000

    def _judge(self, records: list[TrialRecord], axes: Sequence[str]) -> Verdict:
        worst = math.inf if self.minimize else -math.inf
        problems: list[str] = []
        evidence: list[dict[str, Any]] = []
        # values[group][x][seed] = y
        values: dict[Any, dict[float, dict[Any, float]]] = {}
        for record in records:
            name = label(record, axes)
            if self.group_by not in record.config:
                problems.append(f"{name}: config has no key {self.group_by!r}")
                continue
            rx = reduce_record(self.x, record)
            if rx.reason or not rx.value > 0:
                problems.append(f"{name}: x: {rx.reason or f'{fmt(rx.value)} is not > 0'}")
                continue
            ry = reduce_record(self.y, record, allow_diverged=True)
            bad = record.status in BAD_STATUSES or not math.isfinite(ry.value)
            y = worst if bad else ry.value
            group = record.config[self.group_by]
            seed = record.config.get("seed")
            values.setdefault(group, {}).setdefault(rx.value, {})[seed] = y
            evidence.append({"trial": name, "group": group, "x": rx.value, "y": y, "worst": bad})
        if len(values) < 2:
            problems.append(f"{len(values)} group(s) of {self.group_by}, needs ≥ 2")
        elif self.min_span_octaves > 0:
            problems.extend(self._span_problems(list(values)))
        seeds = sorted({s for g in values.values() for xv in g.values() for s in xv}, key=repr)

        stat, best = optimum_spread(
            {
                g: {x: np.array(list(by_seed.values())) for x, by_seed in by_x.items()}
                for g, by_x in values.items()
            },
            self.minimize,
        )
        for group, by_x in sorted(values.items(), key=lambda kv: repr(kv[0])):
            xs = sorted(by_x)
            finite = [x for x in xs if any(math.isfinite(v) for v in by_x[x].values())]
            if len(finite) < self.min_points:
                problems.append(
                    f"{self.group_by}={group!r}: {len(finite)} grid values with a finite "
                    f"{self.y.label}, needs ≥ {self.min_points}"
                )
            elif not self.edge_ok and best.get(group) in (xs[0], xs[-1]):
                problems.append(
                    f"{self.group_by}={group!r}: optimum {self.x.label}={fmt(best[group])} is at "
                    f"the edge of the grid [{fmt(xs[0])}, {fmt(xs[-1])}]"
                )
        boots_arr = self._bootstrap(values, seeds)
        if boots_arr.size and np.isfinite(boots_arr).all():
            tail = (1 - self.ci) / 2
            lo, hi = (float(v) for v in np.quantile(boots_arr, [tail, 1 - tail]))
        else:
            lo = hi = stat
        optima = ", ".join(
            f"{g!r}: {fmt(v)}" for g, v in sorted(best.items(), key=lambda kv: repr(kv[0]))
        )
        summary = (
            f"{'argmin' if self.minimize else 'argmax'} {self.x.label} of median "
            f"{self.y.label} per {self.group_by}: {{{optima}}}; spread {fmt(stat)} octaves, "
            f"{self.ci:.0%} CI [{fmt(lo)}, {fmt(hi)}] over {len(seeds)} seed(s)"
        )
        extra = {"ci": (lo, hi), "n_points": len(evidence), "evidence": evidence}
        if problems or math.isnan(stat):
            why = listing(problems) or "a group has no finite optimum"
            return self._verdict("INCONCLUSIVE", stat, f"{why} ({summary})", **extra)
        status, where = band_status(lo, hi, self.band)
        return self._verdict(status, stat, f"{summary} {where} band {fmt_band(self.band)}", **extra)

    def _span_problems(self, groups: list[Any]) -> list[str]:
        """Why the groups do not span ``min_span_octaves`` (empty when they do)."""
        if not all(
            isinstance(g, int | float) and not isinstance(g, bool) and g > 0 for g in groups
        ):
            return [f"min_span_octaves needs positive numeric groups of {self.group_by}"]
        span = math.log2(max(groups) / min(groups))
        if span < self.min_span_octaves - 1e-9:
            return [
                f"{self.group_by} spans {fmt(span)} octaves ({fmt(min(groups))} … "
                f"{fmt(max(groups))}), needs ≥ {fmt(self.min_span_octaves)}"
            ]
        return []

    def _bootstrap(
        self, values: dict[Any, dict[float, dict[Any, float]]], seeds: list[Any]
    ) -> np.ndarray:
        """Spreads of ``n_boot`` seed resamples (empty with one seed or missing cells)."""
        if len(seeds) < 2 or len(values) < 2:
            return np.empty(0)
        groups = list(values)
        grid = sorted({x for by_x in values.values() for x in by_x})
        cube = np.full((len(groups), len(grid), len(seeds)), np.nan)
        for i, g in enumerate(groups):
            for j, x in enumerate(grid):
                for k, s in enumerate(seeds):
                    cube[i, j, k] = values[g].get(x, {}).get(s, np.nan)
        if np.isnan(cube).any():  # a ragged grid: no seed resampling
            return np.empty(0)
        rng = np.random.default_rng(0)
        picks = rng.integers(len(seeds), size=(self.n_boot, len(seeds)))
        curves = np.median(cube[:, :, picks], axis=-1)  # (groups, grid, n_boot)
        scores = curves if self.minimize else -curves
        ok = np.isfinite(scores).any(axis=1)  # (groups, n_boot)
        best = np.log2(np.asarray(grid))[
            np.argmin(np.where(np.isfinite(scores), scores, np.inf), axis=1)
        ]
        spread = best.max(axis=0) - best.min(axis=0)
        return np.where(ok.all(axis=0), spread, np.nan)
