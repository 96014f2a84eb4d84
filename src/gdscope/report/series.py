"""Figures drawn from the stored series of a study's trials (one line per trial, against step).

The trials of one group (same swept values, other seeds: :mod:`~gdscope.report.groups`) share a
colour and one legend entry, drawn below the axes (:func:`~gdscope.report.canvas.legend`).

- :func:`training_curves`: the loss (or the objective) against step, log scale when positive;
- :func:`sharpness_curves`: the top Hessian eigenvalue against step with the stability
  threshold 2/η of each learning rate η (Cohen et al., edge of stability), from the ``lr``
  series a monitored run records (a step line when the schedule changes η) or the config's;
  2/η is gradient descent's edge, so no line is drawn for a trial of an adaptive optimizer
  (:func:`is_adaptive`: Adam, AdamW, RMSprop), and the caption says so;
- :func:`preconditioned_curves`: an adaptive optimizer's preconditioned sharpness
  ``λ_max(P⁻¹H)`` against the threshold its probe records (``(2 + 2β₁)/((1 − β₁)η)`` for Adam,
  ``(2 + 2μ)/η`` for RMSprop: Cohen et al. 2022, :mod:`gdscope.probes.preconditioned`);
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
from gdscope.store.schema import MONITOR_KIND
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
ADAPTIVE_OPTIMIZERS = ("adam", "adamw", "rmsprop")
"""Optimizer names (``optimizer.name``) whose edge is not 2/η (``gdscope.config.trial.ADAPTIVE``
and AdamW, spelled out here: the report imports no torch)."""
PRECONDITIONED = "preconditioned_sharpness"
"""The probe, and its metric ``λ_max(P⁻¹H)``, of an adaptive optimizer."""
ADAPTIVE_THRESHOLD = "adaptive_threshold"
"""The threshold of ``λ_max(P⁻¹H)`` the probe records with it (one learning rate)."""
PRECONDITIONED_RATIO = "preconditioned_sharpness_ratio"
"""``λ_max(P⁻¹H)`` over its threshold, recorded by the probe whatever the learning rates."""


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
    edge: str | None = None,
) -> Drawn | None:
    """``metric`` against step, one line per trial (thinned to ``MAX_LINES``), coloured by group.

    The trials of a group (:mod:`~gdscope.report.groups`: the same swept values, other seeds)
    share a colour and one legend entry. Decorations: ``band`` shaded horizontally,
    ``threshold`` as a dashed line, ``window`` shaded vertically, with ``stability`` the
    line 2/η of each trial's learning rate (none for an adaptive optimizer's trial), and with
    ``edge`` the threshold series of that name each trial recorded (a step line).
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
    if edge is not None:
        _recorded_edges(ax, drawn, edge, _EDGE_LABELS.get(edge, edge))
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
    records = [r for g in shown for r in g.records if not is_adaptive(r)]
    _recorded_edges(ax, records, RECORDED_LR, "2/η of the recorded lr", _two_over)
    owners: dict[float, set[int]] = {}
    for index, group in enumerate(shown):
        for r in group.records:
            lr = r.config.get(LR)
            if is_adaptive(r) or curve(r, RECORDED_LR)[0].size:
                continue
            if labels.finite(lr) and lr > 0:
                owners.setdefault(float(lr), set()).add(index)
    own = len(owners) > 1 and all(len(o) == 1 for o in owners.values())
    for lr, owner in sorted(owners.items()):
        label = None if own else f"2/η = {labels.number(2 / lr)} (η = {labels.number(lr)})"
        colour = colours[min(owner)] if own else EDGE
        ax.axhline(2 / lr, color=colour, linestyle=":", linewidth=1.4, label=label)
    if not own:
        return []
    return [Line2D([], [], color="#555", linestyle=":", label="2/η of each group's η")]


def _two_over(rates: np.ndarray) -> np.ndarray:
    """2/η of each recorded rate (NaN where η ≤ 0)."""
    return np.where(rates > 0, 2 / np.where(rates > 0, rates, 1.0), np.nan)


_EDGE_LABELS = {ADAPTIVE_THRESHOLD: "adaptive threshold (recorded)"}


def _recorded_edges(
    ax: Any,
    records: Sequence[TrialRecord],
    metric: str,
    label: str,
    transform: Any = None,
) -> None:
    """Draw each trial's recorded ``metric`` (through ``transform``) as a red dotted step line.

    Trials that recorded the same series (attempts of one schedule) share one line; the first
    line carries ``label``.
    """
    seen: set[tuple[bytes, bytes]] = set()
    for record in records:
        steps, values = curve(record, metric)
        if not steps.size or (steps.tobytes(), values.tobytes()) in seen:
            continue
        name = label if not seen else None
        seen.add((steps.tobytes(), values.tobytes()))
        xs, ys = canvas.decimate(steps, transform(values) if transform else values)
        ax.step(xs, ys, where="post", color=EDGE, linestyle=":", linewidth=1.4, label=name)


def is_adaptive(record: TrialRecord) -> bool:
    """Whether ``record``'s optimizer is adaptive (Adam, AdamW, RMSprop): its edge is not 2/η.

    Known from a study trial's ``optimizer.name``; a monitored run stores no optimizer, but the
    probe ``preconditioned_sharpness`` (scheduled, or its metrics recorded) runs only on one.
    """
    name = record.config.get("optimizer.name")
    if isinstance(name, str) and name.lower() in ADAPTIVE_OPTIMIZERS:
        return True
    probed = (PRECONDITIONED, PRECONDITIONED_RATIO, ADAPTIVE_THRESHOLD)
    return f"probes.{PRECONDITIONED}" in record.config or any(m in record.series for m in probed)


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
    """Sharpness (top Hessian eigenvalue) against step with 2/η: the edge of stability.

    2/η is gradient descent's edge: no line for a trial of an adaptive optimizer
    (:func:`is_adaptive`), whose edge is on the preconditioned sharpness
    (:func:`preconditioned_curves`); the caption says so, and that a monitored run of which the
    optimizer is not known gets the line as GD's edge, not as an adaptive optimizer's.
    """
    records = [r for r in study.records if curve(r, "sharpness")[0].size]
    if not has_curve(records, "sharpness"):
        return None
    adaptive = [r for r in records if is_adaptive(r)]
    where = (
        "the preconditioned sharpness λ_max(P⁻¹H) (next figure)"
        if has_curve(adaptive, PRECONDITIONED) or has_curve(adaptive, PRECONDITIONED_RATIO)
        else f"the preconditioned sharpness λ_max(P⁻¹H) (probe {PRECONDITIONED})"
    )
    if len(adaptive) == len(records):
        return metric_curves(
            records,
            study.axes,
            "sharpness",
            title="Sharpness (adaptive optimizer: no 2/η)",
            caption=(
                "Top Hessian eigenvalue of the training loss against step for each trial. 2/η, "
                "the edge of stability of gradient descent, is not drawn: it is not the "
                "threshold of an adaptive optimizer (Adam, RMSprop), whose edge is on "
                f"{where}."
            ),
        )
    caption = (
        "Top Hessian eigenvalue of the training loss against step for each trial; the dotted "
        "line is 2/η, where GD on a quadratic with that curvature turns unstable (for a "
        "monitored run, 2/η of the lr it recorded at each step)."
    )
    if adaptive:
        caption += (
            f" No 2/η line for the {len(adaptive)} of {len(records)} trials with an adaptive "
            f"optimizer (Adam, RMSprop): it is not their threshold, which is on {where}."
        )
    if any(r.config.get("kind") == MONITOR_KIND and not is_adaptive(r) for r in records):
        caption += (
            " A monitored run does not store its optimizer: 2/η is the edge of gradient "
            "descent and does not apply to an adaptive optimizer (Adam, RMSprop), whose edge "
            f"is on the preconditioned sharpness (schedule the probe {PRECONDITIONED})."
        )
    return metric_curves(
        records,
        study.axes,
        "sharpness",
        title="Sharpness against 2/η",
        caption=caption,
        stability=True,
    )


def preconditioned_curves(study: StudyView) -> Drawn | None:
    """Draw an adaptive optimizer's preconditioned sharpness against the threshold it recorded.

    ``λ_max(P⁻¹H)`` with each trial's recorded ``adaptive_threshold`` (Cohen et al. 2022:
    ``(2 + 2β₁)/((1 − β₁)η)`` for Adam/AdamW, ``(2 + 2μ)/η`` for RMSprop); where only the ratio
    to the threshold was recorded (groups of different learning rates), the ratio against 1.
    """
    thresholds = (
        "(2 + 2β₁)/((1 − β₁)η) for Adam/AdamW (38/η at β₁ = 0.9), (2 + 2μ)/η for RMSprop with "
        "momentum μ, where the update with P frozen turns unstable (Cohen et al. 2022, adaptive "
        "edge of stability); 2/η, gradient descent's edge, is not this one."
    )
    if has_curve(study.records, PRECONDITIONED):
        return metric_curves(
            study.records,
            study.axes,
            PRECONDITIONED,
            title="Preconditioned sharpness against the adaptive threshold",
            caption=(
                "λ_max(P⁻¹H) (P the optimizer's diagonal preconditioner) against step for each "
                f"trial; the dotted line is the threshold each trial recorded: {thresholds}"
            ),
            edge=ADAPTIVE_THRESHOLD,
        )
    if has_curve(study.records, PRECONDITIONED_RATIO):
        return metric_curves(
            study.records,
            study.axes,
            PRECONDITIONED_RATIO,
            title="Preconditioned sharpness over the adaptive threshold",
            caption=(
                "λ_max(P⁻¹H) (P the optimizer's diagonal preconditioner) over its threshold "
                f"against step for each trial; the dashed line 1 is the threshold: {thresholds}"
            ),
            threshold=1.0,
        )
    return None


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
