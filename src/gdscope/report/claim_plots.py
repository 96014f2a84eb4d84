"""Figures of claims judged trial by trial or on curves.

- :func:`within`: each trial's value (green inside the band, red outside) against the shaded band;
- :func:`agrees`: ``y1`` against ``y2`` per trial, with the identity line and the tolerance;
- :func:`monotone`: ``y`` against ``x`` per seed (the claim: it rises, or falls);
- :func:`optimum_shift`: the median ``y`` over seeds against ``x`` (log₂) per group, the optimum
  of each group starred (e.g. the loss against the learning rate per width);
- :func:`bound`: ``lhs`` (solid) and ``rhs`` (dashed) against step per trial;
- :func:`reaches`: the metric against step per trial with the threshold (and 2/η for sharpness);
- :func:`evidence`: for any other claim, its evidence points (``x``/``y`` or ``y`` per trial).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np
from matplotlib.lines import Line2D

from gdscope.report import canvas, labels, series
from gdscope.report.canvas import Drawn
from gdscope.report.collect import ClaimView, StudyView
from gdscope.report.fits import points

OK, BAD = "#2ca02c", "#d62728"


def _values(claim: ClaimView, key: str) -> list[tuple[str, float, bool]]:
    """``(trial, value, ok)`` of the evidence rows with a finite ``key``."""
    return [
        (str(e.get("trial", "")), float(e[key]), bool(e.get("ok", True)))
        for e in claim.evidence
        if labels.finite(e.get(key))
    ]


def _y_label(spec: Mapping[str, Any]) -> str:
    """Label the claim's ``y``, as a gap to its baseline trials when it has ``baseline``."""
    y = labels.reducer(spec.get("y"))
    baseline = spec.get("baseline")
    if not baseline:
        return y
    where = ", ".join(f"{k}={v}" for k, v in baseline.items())
    return f"{y} − baseline ({where})"


def _per_trial(claim: ClaimView, key: str, xlabel: str) -> tuple[Any, Any] | None:
    """Horizontal dot plot of ``key`` per trial, coloured by ``ok``."""
    rows = _values(claim, key)
    if not rows:
        return None
    names = [labels.shorten(r[0], 46) for r in rows]
    left = 0.2 + 0.052 * max(len(n) for n in names) if len(rows) <= 40 else 0.8
    fig, ax = canvas.figure(height=min(1.3 + 0.2 * len(rows), 7.5), left=max(left, 0.8))
    ys = np.arange(len(rows))
    values = [r[1] for r in rows]
    ax.scatter(values, ys, s=18, c=[OK if r[2] else BAD for r in rows], zorder=3)
    if canvas.wants_log(values, decades=2.0):
        ax.set_xscale("log")
    if len(rows) <= 40:
        ax.set_yticks(ys, names, fontsize=6.5)
    else:
        ax.set_ylabel("trial")
    ax.set_ylim(len(rows) - 0.5, -0.5)
    ax.set_xlabel(xlabel)
    return fig, ax


def _ok_keys(claim: ClaimView, key: str, yes: str, no: str) -> list[Line2D]:
    """Legend entries of the green and red dots of :func:`_per_trial` (those drawn)."""
    return _dots({r[2] for r in _values(claim, key)}, yes, no)


def _dots(flags: set[bool], yes: str, no: str) -> list[Line2D]:
    """Legend entries for green (``True`` in ``flags``) and red (``False``) dots."""
    found = [(OK, yes)] * (True in flags) + [(BAD, no)] * (False in flags)
    return [Line2D([], [], color=c, marker="o", linestyle="", label=n) for c, n in found]


def within(claim: ClaimView, study: StudyView) -> Drawn | None:
    """``within``: each trial's value against the band it must lie in."""
    ylabel = _y_label(claim.spec)
    drawn = _per_trial(claim, "y", ylabel)
    if drawn is None:
        return None
    fig, ax = drawn
    band = (claim.verdict or {}).get("band") or claim.spec.get("band")
    canvas.vband(ax, band)
    canvas.legend(ax, handles=_ok_keys(claim, "y", "inside the band", "outside"))
    caption = (
        f"{ylabel} of each trial (green: inside, red: outside) against the shaded band "
        f"{labels.interval(band)}."
    )
    return fig, f"{claim.claim_id}: each trial against the band", caption


def agrees(claim: ClaimView, study: StudyView) -> Drawn | None:
    """``agrees``: ``y1`` against ``y2`` per trial, with ``y1 = y2`` and the tolerance around it."""
    rows = [
        (float(e["y2"]), float(e["y1"]), bool(e.get("ok", True)))
        for e in claim.evidence
        if labels.finite(e.get("y1")) and labels.finite(e.get("y2"))
    ]
    if not rows:
        return None
    spec = claim.spec
    atol, rtol = float(spec.get("atol", 0.0)), float(spec.get("rtol", 0.0))
    fig, ax = canvas.figure()
    xs = np.array([r[0] for r in rows])
    every = [v for r in rows for v in r[:2]]
    log = canvas.wants_log(every, decades=1.5)
    lo, hi = min(every), max(every)
    grid = (
        np.geomspace(lo, hi, 60)
        if log
        else np.linspace(lo - 0.05 * abs(lo) - 1e-12, hi + 0.05 * abs(hi) + 1e-12, 60)
    )
    tol = atol + rtol * np.abs(grid)
    ax.fill_between(
        grid,
        grid - tol,
        grid + tol,
        color=canvas.BAND_COLOR,
        alpha=0.15,
        lw=0,
        label=f"tolerance (atol={atol:g}, rtol={rtol:g})",
    )
    ax.plot(grid, grid, color="black", linewidth=0.9, label="y1 = y2")
    ax.scatter(xs, [r[1] for r in rows], s=18, c=[OK if r[2] else BAD for r in rows], zorder=3)
    if log:
        ax.set_xscale("log")
        ax.set_yscale("log")
    ax.set_xlabel(labels.reducer(spec.get("y2")))
    ax.set_ylabel(labels.reducer(spec.get("y1")))
    flags = {r[2] for r in rows}
    canvas.legend(ax, handles=_dots(flags, "within tolerance", "not within"))
    caption = (
        f"{labels.reducer(spec.get('y1'))} against {labels.reducer(spec.get('y2'))}, one dot per "
        "trial (green: within tolerance, red: not); the line is equality."
    )
    return fig, f"{claim.claim_id}: y1 against y2", caption


def monotone(claim: ClaimView, study: StudyView) -> Drawn | None:
    """``monotone``: ``y`` against ``x`` for each seed, joined in ``x`` order."""
    pts = points(claim.evidence)
    if not pts:
        return None
    spec, verdict = claim.spec, claim.verdict or {}
    fig, ax = canvas.figure()
    seeds = sorted({repr(p[2]): p[2] for p in pts}.items(), key=lambda s: labels.natural(s[1]))
    for (seed, _), color in zip(seeds, canvas.colors(len(seeds)), strict=True):
        mine = sorted((p[0], p[1]) for p in pts if repr(p[2]) == seed)
        ax.plot(
            *zip(*mine, strict=True),
            "o-",
            color=color,
            markersize=4,
            linewidth=1,
            label=f"seed {seed}",
        )
    if canvas.wants_log([p[0] for p in pts], 1.0):
        ax.set_xscale("log")
    if canvas.wants_log([p[1] for p in pts], 2.0):
        ax.set_yscale("log")
    ax.set_xlabel(labels.reducer(spec.get("x")))
    ax.set_ylabel(_y_label(spec))
    canvas.legend(ax)
    direction = spec.get("direction", "increasing")
    caption = (
        f"{_y_label(spec)} against {labels.reducer(spec.get('x'))} per seed; the "
        f"claim: {direction} (median Spearman ρ {labels.number(verdict.get('statistic'))}, "
        f"needs {labels.interval(verdict.get('band'))})."
    )
    return fig, f"{claim.claim_id}: {direction} trend", caption


def optimum_shift(claim: ClaimView, study: StudyView) -> Drawn | None:
    """``optimum_shift``: median ``y`` over seeds against ``x`` per group, each optimum starred."""
    spec, verdict = claim.spec, claim.verdict or {}
    cells: dict[Any, dict[float, list[float]]] = {}
    for e in claim.evidence:
        if labels.finite(e.get("x")) and isinstance(e.get("y"), int | float):
            y = float(e["y"]) if not e.get("worst") else math.inf
            cells.setdefault(e.get("group"), {}).setdefault(float(e["x"]), []).append(y)
    if not cells:
        return None
    minimize = spec.get("minimize", True)
    fig, ax = canvas.figure()
    groups = sorted(cells, key=labels.natural)
    worst_x: list[tuple[float, Any]] = []
    for group, color in zip(groups, canvas.colors(len(groups)), strict=True):
        xs = np.array(sorted(cells[group]))
        ys = np.array([np.median(cells[group][x]) for x in xs])
        ok = np.isfinite(ys)
        ax.plot(
            xs[ok],
            ys[ok],
            "o-",
            color=color,
            markersize=3.5,
            linewidth=1.1,
            label=f"{spec.get('group_by', 'group')}={group!r}",
        )
        worst_x += [(float(x), color) for x in xs[~ok]]
        if ok.any():
            best = int(np.argmin(ys[ok]) if minimize else np.argmax(ys[ok]))
            ax.scatter(
                xs[ok][best],
                ys[ok][best],
                marker="*",
                s=140,
                color=color,
                zorder=4,
                edgecolor="black",
                linewidth=0.5,
            )
    ax.set_xscale("log", base=2)
    finite_y = [y for g in cells.values() for vs in g.values() for y in vs if math.isfinite(y)]
    if canvas.wants_log(finite_y, 1.5):
        ax.set_yscale("log")
    top = ax.get_ylim()[1]
    for x, color in worst_x:
        ax.scatter(x, top, marker="x", color=color, clip_on=False, zorder=4)
    ax.set_xlabel(labels.reducer(spec.get("x")))
    ax.set_ylabel(f"median {labels.reducer(spec.get('y'))} over seeds")
    canvas.legend(ax)
    caption = (
        f"Median {labels.reducer(spec.get('y'))} over seeds against {labels.reducer(spec.get('x'))} "
        f"per {spec.get('group_by', 'group')}; stars mark each group's optimum, crosses on the top "
        f"edge diverged or non-finite runs. Spread of the optimum: "
        f"{labels.number(verdict.get('statistic'))} octaves, CI {labels.interval(verdict.get('ci'))}, "
        f"band {labels.interval(verdict.get('band'))}."
    )
    return fig, f"{claim.claim_id}: optimum per group", caption


def bound(claim: ClaimView, study: StudyView) -> Drawn | None:
    """``bound``: ``lhs`` (solid) and ``rhs`` (dashed) against step, per trial."""
    lhs, rhs = str(claim.spec.get("lhs", "")), str(claim.spec.get("rhs", ""))
    chosen = [r for r in study.records if lhs in r.series and rhs in r.series]
    if not chosen:
        return None
    shown = canvas.thin(chosen, 10)
    fig, ax = canvas.figure()
    every: list[float] = []
    for record, color in zip(shown, canvas.colors(len(shown)), strict=True):
        for metric, style in ((lhs, "-"), (rhs, "--")):
            steps, values = canvas.decimate(*series.curve(record, metric))
            every += values[np.isfinite(values)].tolist()
            name = labels.shorten(labels.trial(record, study.axes), 60) if style == "-" else None
            ax.plot(
                steps,
                values,
                style,
                color=color,
                linewidth=1.1,
                marker="o",
                markersize=2,
                label=name,
            )
    if canvas.wants_log(every, 2.0):
        ax.set_yscale("log")
    canvas.steps_axis(ax)
    keys = [
        Line2D([], [], color="#555", linestyle="-", label=f"solid: {labels.metric_name(lhs)}"),
        Line2D([], [], color="#555", linestyle="--", label=f"dashed: {labels.metric_name(rhs)}"),
    ]
    canvas.legend(ax, handles=keys)
    spec = claim.spec
    caption = (
        f"{lhs} (solid) must stay ≤ {rhs}·(1 + {spec.get('slack', 0):g}) + {spec.get('atol', 0):g} "
        f"(dashed) at every checkpoint; one colour per trial. Worst ratio "
        f"{labels.number((claim.verdict or {}).get('statistic'))}."
    )
    return fig, f"{claim.claim_id}: {lhs} against {rhs}", caption


def reaches(claim: ClaimView, study: StudyView) -> Drawn | None:
    """``reaches``: the metric against step per trial, with the threshold it must cross."""
    spec = claim.spec
    metric = str(spec.get("metric", ""))
    threshold = spec.get("threshold")
    budgets = sorted({float(e["budget"]) for e in claim.evidence if labels.finite(e.get("budget"))})
    side = "≥" if spec.get("direction") == "above" else "≤"
    budget = (
        f" within {labels.number(budgets[0])} steps"
        if len(budgets) == 1
        else f" within per-trial budgets {labels.number(budgets[0])}–{labels.number(budgets[-1])}"
        if budgets
        else ""
    )
    caption = (
        f"{labels.metric_name(metric)} against step per trial; the claim: it gets {side} "
        f"{labels.number(threshold)} (dashed){budget} in ≥ "
        f"{labels.number(spec.get('fraction', 1.0))} of the trials."
    )
    drawn = series.metric_curves(
        study.records,
        study.axes,
        metric,
        title=f"{claim.claim_id}: {labels.metric_name(metric)} against the threshold",
        caption=caption,
        threshold=float(threshold) if labels.finite(threshold) else None,
        stability=metric == "sharpness",
    )
    if drawn is not None and len(budgets) == 1:
        drawn[0].axes[0].axvline(budgets[0], color="#555", linestyle="-.", linewidth=1)
    return drawn


def evidence(claim: ClaimView, study: StudyView) -> Drawn | None:
    """Any other claim: its evidence as ``y`` against ``x``, or ``y`` per trial."""
    pts = points(claim.evidence)
    if pts:
        fig, ax = canvas.figure()
        ax.scatter([p[0] for p in pts], [p[1] for p in pts], s=16)
        ax.set_xlabel("x")
        ax.set_ylabel("y")
        return fig, f"{claim.claim_id}: evidence", "The claim's evidence points, y against x."
    drawn = _per_trial(claim, "y", "y")
    if drawn is None:
        return None
    return drawn[0], f"{claim.claim_id}: evidence", "The claim's evidence, one value per trial."


def curve_metric(claim: ClaimView) -> tuple[str, Mapping[str, Any]] | None:
    """Return the metric (and reducer) a ``within`` claim reads in the metric's own units.

    ``initial``, ``final``, ``min``, ``max`` and ``median_window`` keep the units of the series,
    so the band can be drawn on the curve itself (e.g. sharpness against its plateau band).
    """
    y = claim.spec.get("y")
    if claim.kind != "within" or not isinstance(y, Mapping):
        return None
    if y.get("reduce") not in ("initial", "final", "min", "max", "median_window"):
        return None
    return (str(y["metric"]), y) if y.get("metric") else None
