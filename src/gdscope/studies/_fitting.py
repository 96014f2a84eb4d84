"""Per-seed fits of ``y`` against ``x`` shared by the power_law, slope and compare claims.

Each trial is reduced to a point ``(x, y)``; points are grouped by ``seed``; each seed's points
are fitted (log–log or linear); the median over seeds gets a bootstrap CI
(:func:`~gdscope.stats.trends.exponent_over_seeds` / ``slope_over_seeds``). Every reason the
fit cannot be trusted is collected as a *problem*, which makes the claim INCONCLUSIVE.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from gdscope.stats.fits import loglog_fit, slope_fit
from gdscope.stats.trends import exponent_over_seeds, slope_over_seeds
from gdscope.studies.reducers import Reducer, reduce_gap, reduce_record
from gdscope.studies.table import TrialRecord
from gdscope.studies.verdict import fmt, label


@dataclass
class SeedPoints:
    """Points ``(x, y, trial label)`` per seed, the evidence, and what went wrong."""

    by_seed: dict[Any, list[tuple[float, float, str]]] = field(default_factory=dict)
    evidence: list[dict[str, Any]] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class SeedFit:
    """Median over seeds of a per-seed fitted statistic, with its CI and the per-seed values."""

    median: float
    lo: float
    hi: float
    per_seed: dict[Any, float]
    n_points: int
    problems: list[str]
    warnings: list[str] = dataclasses.field(default_factory=list)
    """Poor per-seed fits that do not gate the claim (see :func:`names_a_value`)."""


def names_a_value(band: tuple[float, float]) -> bool:
    """Whether a band states a value of the fitted slope: both edges finite, zero excluded.

    The fit-quality rule of gdscope: R² is the share of the variation of y that the line
    explains, so it measures whether "y follows a line with this slope" is a fair summary. It
    gates a claim that names a slope (``[-0.6, -0.4]``: the exponent is −½). It means nothing for
    a claim of no trend (a band around 0: flat data has R² ≈ 0 however flat), and a one-sided
    claim (``[-inf, -0.3]``: falls at least this fast) asks only for a direction and a least
    steepness, which the bootstrap CI over seeds judges, noise included. For those two kinds a
    per-seed R² below ``min_r2`` is shown as a warning in the reason and the CI decides.

    >>> names_a_value((-0.6, -0.4)), names_a_value((-0.1, 0.1)), names_a_value((-math.inf, -0.3))
    (True, False, False)
    """
    lo, hi = band
    return math.isfinite(lo) and math.isfinite(hi) and not lo <= 0 <= hi


def seed_points(
    x: Reducer,
    y: Reducer,
    records: Sequence[TrialRecord],
    axes: Sequence[str],
    *,
    allow_diverged: bool,
    bases: Sequence[TrialRecord | None] | None = None,
) -> SeedPoints:
    """Reduce every record to ``(x, y)`` and group by seed; nan reductions become problems.

    With ``bases`` (one per record, from ``verdict.pair_with_baseline``) ``y`` is the paired gap
    ``y(record) − y(base)``.
    """
    out = SeedPoints()
    for i, record in enumerate(records):
        rx = reduce_record(x, record, allow_diverged=allow_diverged)
        if bases is None:
            ry = reduce_record(y, record, allow_diverged=allow_diverged)
        else:
            ry = reduce_gap(y, record, bases[i], allow_diverged=allow_diverged)
        name, seed = label(record, axes), record.config.get("seed")
        point: dict[str, Any] = {"trial": name, "seed": seed, "x": rx.value, "y": ry.value}
        why = "; ".join(f"{r.label}: {z.reason}" for r, z in ((x, rx), (y, ry)) if z.reason)
        if why:
            point["note"] = why
            out.problems.append(f"{name}: {why}")
        else:
            out.by_seed.setdefault(seed, []).append((rx.value, ry.value, name))
        out.evidence.append(point)
    for seed, points in out.by_seed.items():
        xs = [p[0] for p in points]
        twice = sorted({v for v in xs if xs.count(v) > 1})
        if twice:
            names = [p[2] for p in points if p[0] == twice[0]]
            out.problems.append(
                f"seed {seed}: several trials at x={fmt(twice[0])} ({' | '.join(names)}); "
                "narrow the claim with `where`"
            )
    return out


def fit_seeds(
    points: SeedPoints,
    *,
    loglog: bool,
    log_x: bool = False,
    log_y: bool = False,
    min_points: int,
    min_decades: float,
    min_r2: float,
    min_seeds: int,
    ci: float,
    n_boot: int,
    gate_r2: bool = True,
) -> SeedFit:
    """Fit each seed, check the fit's support, and take the median with a bootstrap CI.

    A per-seed R² below ``min_r2`` is a problem (INCONCLUSIVE) when ``gate_r2``, else a warning.
    """
    problems: list[str] = []
    warnings: list[str] = []
    seeds = sorted(points.by_seed, key=repr)
    rows: list[tuple[np.ndarray, np.ndarray]] = []
    for seed in seeds:
        pts = sorted(points.by_seed[seed])
        xs = np.array([p[0] for p in pts], dtype=np.float64)
        ys = np.array([p[1] for p in pts], dtype=np.float64)
        if loglog:
            problems += _positive(seed, xs, ys)
            fit = loglog_fit(xs, ys)
            r2, n, decades = fit.r2, fit.n_points, fit.decades
        else:
            xs, ys, bad = _logs(seed, xs, ys, log_x, log_y)
            problems += bad
            line = slope_fit(xs, ys)
            r2, n, decades = line.r2, line.n_points, math.inf
        rows.append((xs, ys))
        if n < min_points:
            problems.append(f"seed {seed}: {n} points, needs ≥ {min_points}")
        elif decades < min_decades:
            problems.append(f"seed {seed}: x spans {decades:.2f} decades, needs ≥ {min_decades:g}")
        elif not (r2 >= min_r2):
            (problems if gate_r2 else warnings).append(
                f"seed {seed}: fit R²={fmt(r2)} < {min_r2:g}"
            )
    if len(seeds) < min_seeds:
        problems.append(f"{len(seeds)} seed(s) with usable points, needs ≥ {min_seeds}")
    if not rows:
        return SeedFit(math.nan, math.nan, math.nan, {}, 0, problems, warnings)
    width = max(len(xs) for xs, _ in rows)
    X = np.full((len(rows), width), np.nan)
    Y = np.full((len(rows), width), np.nan)
    for i, (xs, ys) in enumerate(rows):
        X[i, : len(xs)], Y[i, : len(ys)] = xs, ys
    over_seeds = exponent_over_seeds if loglog else slope_over_seeds
    stats = over_seeds(X, Y, ci=ci, n_boot=n_boot)
    per_seed = dict(zip(seeds, stats.per_seed, strict=True))
    n_points = sum(len(xs) for xs, _ in rows)
    return SeedFit(stats.median, stats.lo, stats.hi, per_seed, n_points, problems, warnings)


def _positive(seed: Any, xs: np.ndarray, ys: np.ndarray) -> list[str]:
    bad = [f"x={fmt(a)}, y={fmt(b)}" for a, b in zip(xs, ys, strict=True) if not (a > 0 and b > 0)]
    return [f"seed {seed}: log–log fit needs x, y > 0; got {', '.join(bad)}"] if bad else []


def _logs(
    seed: Any, xs: np.ndarray, ys: np.ndarray, log_x: bool, log_y: bool
) -> tuple[np.ndarray, np.ndarray, list[str]]:
    problems: list[str] = []
    for on, values, name in ((log_x, xs, "x"), (log_y, ys, "y")):
        if on and np.any(values <= 0):
            problems.append(f"seed {seed}: log_{name} needs {name} > 0")
    with np.errstate(divide="ignore", invalid="ignore"):
        xs = np.log(xs) if log_x else xs
        ys = np.log(ys) if log_y else ys
    return xs, ys, problems


def bootstrap_difference(
    a: Sequence[float],
    b: Sequence[float],
    *,
    absolute: bool,
    ci: float,
    n_boot: int,
    seed: int = 0,
    center: Literal["median", "mean"] = "median",
) -> tuple[float, float, float]:
    """Median(a) − median(b), or its absolute value, and a bootstrap percentile CI.

    ``center="mean"`` uses the means instead. ``a`` and ``b`` are resampled independently with
    replacement.
    """
    va = np.array([v for v in a if math.isfinite(v)])
    vb = np.array([v for v in b if math.isfinite(v)])
    if va.size == 0 or vb.size == 0:
        return math.nan, math.nan, math.nan
    average = np.mean if center == "mean" else np.median
    rng = np.random.default_rng(seed)
    ma = average(va[rng.integers(0, va.size, (n_boot, va.size))], axis=1)
    mb = average(vb[rng.integers(0, vb.size, (n_boot, vb.size))], axis=1)
    diff = ma - mb
    stat = float(average(va) - average(vb))
    if absolute:
        diff, stat = np.abs(diff), abs(stat)
    lo, hi = np.quantile(diff, [(1 - ci) / 2, (1 + ci) / 2])
    return stat, float(lo), float(hi)
