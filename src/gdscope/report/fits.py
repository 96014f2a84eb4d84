"""Figures of fitted claims: the points, the fitted line, its confidence interval and the band.

- :func:`fit`: ``power_law`` and ``slope`` claims. Each seed's points (from the verdict's evidence)
  with that seed's least-squares line, the median fitted line (slope = the verdict's statistic,
  through the centroid of all points), its CI as a grey wedge and the claimed band as green
  dashed lines; log axes where the claim fits logs (log–log for a power law). For a study of
  ``1 − rate`` against ``κ`` this is the rate-against-condition-number plot.
- :func:`compare`: ``compare`` claims. With a fitted measure, groups A and B side by side, each
  with its line; with a median measure, the per-trial values of A and B with their medians.
- :func:`seed_spread`: ``seed_spread`` claims. The per-group statistic over seeds against the
  group, with its log–log trend and band, or with the band every group must lie in.

The lines are recomputed with numpy from the evidence; the statistic drawn is the stored one.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from matplotlib.axes import Axes

from gdscope.report import canvas, labels
from gdscope.report.canvas import Drawn
from gdscope.report.collect import ClaimView, StudyView
from gdscope.stats.fits import slope_fit

Point = tuple[float, float, Any]


def points(evidence: Sequence[Mapping[str, Any]], group: str | None = None) -> list[Point]:
    """``(x, y, seed)`` of the evidence rows with finite ``x`` and ``y`` (of one compare group)."""
    return [
        (float(e["x"]), float(e["y"]), e.get("seed"))
        for e in evidence
        if labels.finite(e.get("x"))
        and labels.finite(e.get("y"))
        and (group is None or e.get("group") == group)
    ]


def _usable(pts: list[Point], log_x: bool, log_y: bool) -> list[Point]:
    return [p for p in pts if (not log_x or p[0] > 0) and (not log_y or p[1] > 0)]


def _t(values: np.ndarray, log: bool) -> np.ndarray:
    return np.log(values) if log else values


def _back(values: np.ndarray, log: bool) -> np.ndarray:
    return np.exp(values) if log else values


def _line(
    ax: Axes,
    tx: np.ndarray,
    centre: tuple[float, float],
    slope: float,
    logs: tuple[bool, bool],
    **kw: Any,
) -> None:
    """Draw ``y' = cy + slope·(x' − cx)`` over the transformed grid ``tx``."""
    (cx, cy), (log_x, log_y) = centre, logs
    ax.plot(_back(tx, log_x), _back(cy + slope * (tx - cx), log_y), **kw)


def _decorate_fit(
    ax: Axes,
    pts: list[Point],
    log_x: bool,
    log_y: bool,
    verdict: Mapping[str, Any],
    what: str,
) -> None:
    """Draw the median line, its CI wedge and the band's edges through the points' centroid."""
    xs = _t(np.array([p[0] for p in pts]), log_x)
    ys = _t(np.array([p[1] for p in pts]), log_y)
    cx, cy = float(xs.mean()), float(ys.mean())
    tx = np.linspace(xs.min(), xs.max(), 50)
    gx = _back(tx, log_x)
    stat = verdict.get("statistic")
    ci = verdict.get("ci") or (math.nan, math.nan)
    if all(labels.finite(c) for c in ci):
        lo, hi = (_back(cy + float(c) * (tx - cx), log_y) for c in ci)
        ax.fill_between(gx, lo, hi, color="#777", alpha=0.18, label=f"CI of the {what}", lw=0)
    if labels.finite(stat):
        label = f"median {what} {labels.number(stat)}"
        _line(ax, tx, (cx, cy), float(stat), (log_x, log_y), color="black", lw=1.6, label=label)
    band = verdict.get("band") or (math.nan, math.nan)
    for edge in band:
        if labels.finite(edge):
            label = f"band edge {labels.number(edge)}"
            style = {"color": canvas.BAND_COLOR, "linestyle": "--", "lw": 1.1, "label": label}
            _line(ax, tx, (cx, cy), float(edge), (log_x, log_y), **style)


def _seed_lines(ax: Axes, pts: list[Point], log_x: bool, log_y: bool) -> None:
    """Each seed's points and least-squares line, one colour per seed."""
    seeds = sorted({repr(p[2]): p[2] for p in pts}.items(), key=lambda s: labels.natural(s[1]))
    for (seed, _), color in zip(seeds, canvas.colors(len(seeds)), strict=True):
        mine = sorted(p for p in pts if repr(p[2]) == seed)
        xs, ys = np.array([p[0] for p in mine]), np.array([p[1] for p in mine])
        ax.scatter(xs, ys, s=14, color=color, label=f"seed {seed}", zorder=3)
        tx, ty = _t(xs, log_x), _t(ys, log_y)
        line = slope_fit(tx, ty)  # the judge's least squares (gdscope.stats), not a second one
        if math.isfinite(line.slope):
            ax.plot(
                xs,
                _back(line.intercept + line.slope * tx, log_y),
                color=color,
                linewidth=0.8,
                alpha=0.7,
            )


def _axes_scales(ax: Axes, log_x: bool, log_y: bool) -> None:
    if log_x:
        ax.set_xscale("log")
    if log_y:
        ax.set_yscale("log")


def fit(claim: ClaimView, study: StudyView) -> Drawn | None:
    """``power_law`` / ``slope``: points per seed, fitted lines, the median line, CI and band."""
    spec = claim.spec
    log_x = claim.kind == "power_law" or bool(spec.get("log_x"))
    log_y = claim.kind == "power_law" or bool(spec.get("log_y"))
    pts = _usable(points(claim.evidence), log_x, log_y)
    if not pts:
        return None
    what = "exponent" if claim.kind == "power_law" else "slope"
    fig, ax = canvas.figure()
    _axes_scales(ax, log_x, log_y)
    _seed_lines(ax, pts, log_x, log_y)
    _decorate_fit(ax, pts, log_x, log_y, claim.verdict or {}, what)
    ax.set_xlabel(labels.reducer(spec.get("x")))
    ax.set_ylabel(labels.reducer(spec.get("y")))
    canvas.legend(ax)
    verdict = claim.verdict or {}
    caption = (
        f"{labels.reducer(spec.get('y'))} against {labels.reducer(spec.get('x'))}, one colour per "
        f"seed with its least-squares line; black: the median {what} "
        f"{labels.number(verdict.get('statistic'))} (grey: its CI "
        f"{labels.interval(verdict.get('ci'))}); green dashed: the band "
        f"{labels.interval(verdict.get('band'))}."
    )
    scale = "log–log" if claim.kind == "power_law" else "fit"
    return fig, f"{claim.claim_id}: {scale} of the {what}", caption


def compare(claim: ClaimView, study: StudyView) -> Drawn | None:
    """``compare``: groups A and B, fitted side by side or as per-trial values with medians."""
    measure = claim.spec.get("measure") or {}
    if any("x" in e for e in claim.evidence):
        return _compare_fits(claim, measure)
    return _compare_values(claim, measure)


def _group_names(claim: ClaimView) -> dict[str, str]:
    return {
        g: f"{g}: "
        + ", ".join(f"{k}={v!r}" for k, v in (claim.spec.get(f"where_{g.lower()}") or {}).items())
        for g in ("A", "B")
    }


def _compare_fits(claim: ClaimView, measure: Mapping[str, Any]) -> Drawn | None:
    kind = measure.get("kind")
    log_x = kind == "power_law" or bool(measure.get("log_x"))
    log_y = kind == "power_law" or bool(measure.get("log_y"))
    names = _group_names(claim)
    fig, ax = canvas.figure()
    _axes_scales(ax, log_x, log_y)
    drawn = 0
    for group, color in zip(("A", "B"), canvas.colors(2), strict=True):
        pts = _usable(points(claim.evidence, group), log_x, log_y)
        if not pts:
            continue
        drawn += 1
        xs, ys = np.array([p[0] for p in pts]), np.array([p[1] for p in pts])
        ax.scatter(xs, ys, s=14, color=color, label=labels.shorten(names[group], 60), zorder=3)
        tx, ty = _t(xs, log_x), _t(ys, log_y)
        line = slope_fit(tx, ty)
        if math.isfinite(line.slope):
            grid = np.linspace(tx.min(), tx.max(), 50)
            ax.plot(
                _back(grid, log_x),
                _back(line.intercept + line.slope * grid, log_y),
                color=color,
                linewidth=1.3,
                label=f"{group}: pooled fit, slope {labels.number(line.slope)}",
            )
    if not drawn:
        return None
    ax.set_xlabel(labels.reducer(measure.get("x")))
    ax.set_ylabel(labels.reducer(measure.get("y")))
    canvas.legend(ax)
    return fig, f"{claim.claim_id}: group A against group B", _compare_caption(claim)


def _compare_values(claim: ClaimView, measure: Mapping[str, Any]) -> Drawn | None:
    names = _group_names(claim)
    values = {
        g: [
            float(e["y"])
            for e in claim.evidence
            if e.get("group") == g and labels.finite(e.get("y"))
        ]
        for g in ("A", "B")
    }
    if not any(values.values()):
        return None
    fig, ax = canvas.figure()
    rng = np.random.default_rng(0)
    for i, (group, color) in enumerate(zip(("A", "B"), canvas.colors(2), strict=True)):
        ys = np.array(values[group])
        if ys.size:
            ax.scatter(i + rng.uniform(-0.12, 0.12, ys.size), ys, s=16, color=color, alpha=0.8)
            ax.plot([i - 0.25, i + 0.25], [np.median(ys)] * 2, color="black", linewidth=1.6)
    if canvas.wants_log([v for vs in values.values() for v in vs], decades=2.0):
        ax.set_yscale("log")
    ax.set_xticks([0, 1], [labels.shorten(names[g], 40) for g in ("A", "B")])
    ax.set_xlim(-0.6, 1.6)
    ax.set_ylabel(labels.reducer(measure.get("y")))
    return fig, f"{claim.claim_id}: group A against group B", _compare_caption(claim)


def _compare_caption(claim: ClaimView) -> str:
    verdict = claim.verdict or {}
    measure = claim.spec.get("measure") or {}
    what = "|A − B|" if claim.spec.get("absolute") else "A − B"
    if measure.get("kind") in ("power_law", "slope"):
        y, x = labels.reducer(measure.get("y")), labels.reducer(measure.get("x"))
        shown = f"{y} against {x} for groups A and B (dots: trials; lines: pooled fits)"
        what = (
            f"{what} of the per-seed {'exponents' if measure['kind'] == 'power_law' else 'slopes'}"
        )
    else:
        shown = f"{labels.reducer(measure.get('y'))} of each trial in groups A and B, with medians"
    return (
        f"{shown}. Judged: {what} = "
        f"{labels.number(verdict.get('statistic'))}, CI {labels.interval(verdict.get('ci'))}, "
        f"band {labels.interval(verdict.get('band'))}."
    )


def seed_spread(claim: ClaimView, study: StudyView) -> Drawn | None:
    """``seed_spread``: each group's statistic over seeds, with its trend and band."""
    spec, verdict = claim.spec, claim.verdict or {}
    rows = [
        (float(e["group"]), float(e["statistic"]))
        for e in claim.evidence
        if labels.finite(e.get("group")) and labels.finite(e.get("statistic"))
    ]
    if not rows:
        return None
    trend = spec.get("trend") == "power_law"
    log = trend and all(x > 0 and y > 0 for x, y in rows)
    pts: list[Point] = [(x, y, None) for x, y in sorted(rows)]
    fig, ax = canvas.figure()
    _axes_scales(ax, log or canvas.wants_log([p[0] for p in pts], 1.0), log)
    ax.plot(
        [p[0] for p in pts],
        [p[1] for p in pts],
        "o-",
        color="C0",
        markersize=4,
        linewidth=0.8,
        label=f"{spec.get('statistic', 'statistic')} over seeds",
    )
    if log:
        _decorate_fit(ax, pts, True, True, verdict, "exponent")
    else:
        canvas.hband(ax, verdict.get("band"))
    group_by = str(spec.get("group_by", "group"))
    ax.set_xlabel(group_by)
    ax.set_ylabel(f"{spec.get('statistic', 'statistic')} of {labels.reducer(spec.get('y'))}")
    canvas.legend(ax)
    how = "its log–log trend, CI and band edges" if log else "the band every group must lie in"
    caption = (
        f"{spec.get('statistic', 'statistic')} over seeds of {labels.reducer(spec.get('y'))} per "
        f"{group_by}, with {how}; statistic {labels.number(verdict.get('statistic'))}, CI "
        f"{labels.interval(verdict.get('ci'))}, band {labels.interval(verdict.get('band'))}."
    )
    return fig, f"{claim.claim_id}: spread over seeds per {group_by}", caption
