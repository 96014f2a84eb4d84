"""Figures drawn from the stored series of a study's trials (one line per trial, against step).

The trials of one group (same swept values, other seeds: :mod:`~gdscope.report.groups`) share a
colour and one legend entry, drawn below the axes (:func:`~gdscope.report.canvas.legend`).

- :func:`training_curves`: the loss (or the objective) against step, log scale when positive;
- :func:`sharpness_curves`: the top Hessian eigenvalue against step with the stability
  threshold 2/η of each learning rate η (Cohen et al., edge of stability), from the ``lr``
  series a monitored run records (a step line when the schedule changes η) or the config's;
- :func:`ntk_vs_width`: the NTK's smallest eigenvalue at initialization against width, per seed,
  with the median over seeds;
- :func:`metric_curves`: any metric against step, with a claim's band, threshold or window.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
from matplotlib.lines import Line2D

from gdscope.report import canvas, groups, labels
from gdscope.report.canvas import Drawn
from gdscope.report.collect import StudyView
from gdscope.studies.table import TrialRecord

LOSSES = ("loss", "f_gap", "objective", "f", "residual")
"""Metrics a study's training curves show, the first one recorded at ≥ 2 checkpoints wins."""
LAMBDA_MIN = ("ntk_lambda_min_over_n", "ntk_lambda_min")
WIDTH = "model.width"
LR = "optimizer.lr"
EDGE = "#d62728"
"""The colour of 2/η when it is not a group's own."""
RECORDED_LR = "lr"
"""The learning rate a monitored run records at each step (``mon.step(t, lr=...)``)."""


def curve(record: TrialRecord, metric: str) -> tuple[np.ndarray, np.ndarray]:
    """Return ``(steps, values)`` of ``metric`` in ``record`` (empty when not recorded)."""
    steps, values = record.series.get(metric, (np.empty(0), np.empty(0)))
    return np.asarray(steps, dtype=np.float64), np.asarray(values, dtype=np.float64)


def has_curve(records: Sequence[TrialRecord], metric: str, points: int = 2) -> bool:
    """Whether some record has ``metric`` at ≥ ``points`` checkpoints."""
    return any(curve(r, metric)[0].size >= points for r in records)


def metric_curves(
    records: Sequence[TrialRecord],
    axes: Sequence[str],
    metric: str,
    *,
    title: str,
    caption: str,
    band: Sequence[float] | None = None,
    threshold: float | None = None,
    window: Sequence[float] | None = None,
    stability: bool = False,
) -> Drawn | None:
    """``metric`` against step, one line per trial (thinned to ``MAX_LINES``), coloured by group.

    The trials of a group (:mod:`~gdscope.report.groups`: the same swept values, other seeds)
    share a colour and one legend entry. Decorations: ``band`` shaded horizontally,
    ``threshold`` as a dashed line, ``window`` shaded vertically, and with ``stability`` the
    line 2/η of each trial's learning rate.
    """
    chosen = [r for r in records if curve(r, metric)[0].size]
    if not chosen:
        return None
    shown = groups.thin(groups.of(chosen, axes), canvas.MAX_LINES)
    drawn = [r for g in shown for r in g.records]
    colours = canvas.colors(len(shown))
    fig, ax = canvas.figure()
    every = np.concatenate([curve(r, metric)[1] for r in drawn])
    log = canvas.wants_log(every, decades=2.0)
    for group, colour in zip(shown, colours, strict=True):
        for k, record in enumerate(group.records):
            steps, values = canvas.decimate(*curve(record, metric))
            if log:
                values = np.where(values > 0, values, np.nan)
            style = {"marker": "o", "markersize": 2.5} if steps.size < 40 else {}
            name = group.label if k == 0 else None  # one legend entry per group
            ax.plot(steps, values, color=colour, linewidth=1.1, label=name, **style)
    if log:
        ax.set_yscale("log")
    extra = _stability_lines(ax, shown, colours) if stability else []
    if threshold is not None and math.isfinite(threshold) and (not log or threshold > 0):
        ax.axhline(threshold, color="black", linestyle="--", linewidth=1, label="threshold")
    if window is not None and len(window) == 2:
        lo, hi = (float(w) for w in window)
        ax.axvspan(lo, hi, color="#999", alpha=0.12, label="window", zorder=0)
    canvas.hband(ax, band)
    canvas.steps_axis(ax)
    ax.set_ylabel(labels.metric_name(metric))
    legend = canvas.legend(ax, handles=extra)
    note = (
        f" ({len(drawn)} of {len(chosen)} trials shown, evenly spaced)"
        if len(drawn) < len(chosen)
        else ""
    )
    if len(drawn) > len(shown):
        note += " One colour per group; its seeds share the colour."
    note += " Log scale." if log else ""
    if not legend:  # too many entries for a legend: say what the colours mean
        order = ", ".join([*axes, "seed"])
        note += f" Colours run from dark to light in the order of {order}."
    return fig, title, caption + note


def _stability_lines(ax: Any, shown: Sequence[groups.Group], colours: Sequence[Any]) -> list[Any]:
    """Draw 2/η: from a trial's recorded ``lr`` series (a monitored run), else its config's lr.

    When each η belongs to one group, its line takes the group's colour and the legend gets one
    entry for all of them (returned, to pass to :func:`canvas.legend`); else the lines are red,
    each named by its η.
    """
    records = [r for g in shown for r in g.records]
    recorded = [r for r in records if curve(r, RECORDED_LR)[0].size]
    seen: list[tuple[bytes, bytes]] = []
    for record in recorded:
        steps, rates = curve(record, RECORDED_LR)
        if (steps.tobytes(), rates.tobytes()) in seen:  # attempts with the same schedule
            continue
        label = "2/η of the recorded lr" if not seen else None
        seen.append((steps.tobytes(), rates.tobytes()))
        edge = np.where(rates > 0, 2 / np.where(rates > 0, rates, 1.0), np.nan)
        xs, ys = canvas.decimate(steps, edge)
        ax.step(xs, ys, where="post", color=EDGE, linestyle=":", linewidth=1.4, label=label)
    owners: dict[float, set[int]] = {}
    for index, group in enumerate(shown):
        for r in group.records:
            lr = r.config.get(LR)
            if labels.finite(lr) and lr > 0 and not curve(r, RECORDED_LR)[0].size:
                owners.setdefault(float(lr), set()).add(index)
    own = len(owners) > 1 and all(len(o) == 1 for o in owners.values())
    for lr, owner in sorted(owners.items()):
        label = None if own else f"2/η = {labels.number(2 / lr)} (η = {labels.number(lr)})"
        colour = colours[min(owner)] if own else EDGE
        ax.axhline(2 / lr, color=colour, linestyle=":", linewidth=1.4, label=label)
    if not own:
        return []
    return [Line2D([], [], color="#555", linestyle=":", label="2/η of each group's η")]


def training_curves(study: StudyView) -> Drawn | None:
    """Draw the loss of every trial against step (log scale when positive)."""
    metric = next((m for m in LOSSES if has_curve(study.records, m)), None)
    if metric is None:
        return None
    name = labels.metric_name(metric)
    return metric_curves(
        study.records,
        study.axes,
        metric,
        title=f"Training curves: {name}",
        caption=f"{name} against step for each trial of the study.",
    )


def sharpness_curves(study: StudyView) -> Drawn | None:
    """Sharpness (top Hessian eigenvalue) against step with 2/η: the edge of stability."""
    if not has_curve(study.records, "sharpness"):
        return None
    return metric_curves(
        study.records,
        study.axes,
        "sharpness",
        title="Sharpness against 2/η",
        caption=(
            "Top Hessian eigenvalue of the training loss against step for each trial; the dotted "
            "line is 2/η, where GD on a quadratic with that curvature turns unstable (for a "
            "monitored run, 2/η of the lr it recorded at each step)."
        ),
        stability=True,
    )


def ntk_vs_width(study: StudyView) -> Drawn | None:
    """Draw the NTK's smallest eigenvalue at init against width: seeds and their median."""
    metric = next((m for m in LAMBDA_MIN if has_curve(study.records, m, points=1)), None)
    widths = {r.config.get(WIDTH) for r in study.records if labels.finite(r.config.get(WIDTH))}
    if metric is None or len(widths) < 2:
        return None
    others = [k for k in study.axes if k != WIDTH]
    groups: dict[str, list[tuple[float, float]]] = {}
    for record in study.records:
        width, value = record.config.get(WIDTH), _first_finite(record, metric)
        if labels.finite(width) and value is not None:
            key = labels.trial(record, others).rsplit("seed=", 1)[0].rstrip(", ") or "all trials"
            groups.setdefault(key, []).append((float(width), value))
    if not groups:
        return None
    fig, ax = canvas.figure()
    every = [v for pts in groups.values() for _, v in pts]
    ordered = sorted(groups.items(), key=lambda item: labels.natural(item[0]))
    for (key, pts), color in zip(ordered, canvas.colors(len(groups)), strict=True):
        xs, ys = np.array(pts).T
        ax.scatter(xs, ys, s=12, color=color, alpha=0.6)
        grid = np.unique(xs)
        medians = [float(np.median(ys[xs == w])) for w in grid]
        ax.plot(grid, medians, color=color, linewidth=1.3, label=f"{key}: median over seeds")
    ax.set_xscale("log", base=2)
    if canvas.wants_log(every, decades=1.0):
        ax.set_yscale("log")
    ax.set_xlabel("width")
    ax.set_ylabel(f"{labels.metric_name(metric)} at init")
    canvas.legend(ax)
    caption = (
        f"Smallest NTK eigenvalue ({metric}) at the first checkpoint against width; dots are "
        "trials (one per seed), lines the median over seeds."
    )
    return fig, "NTK spectrum against width", caption


def _first_finite(record: TrialRecord, metric: str) -> float | None:
    _, values = curve(record, metric)
    finite = values[np.isfinite(values)]
    return float(finite[0]) if finite.size else None
