r"""The Hessian eigenvalue density a trial recorded (the ``hessian_density`` probe), as a figure.

The probe records, per checkpoint, the Gauss quadrature of stochastic Lanczos quadrature: for
each of ``n_v`` probe vectors ``v`` the nodes ``θ_k^{(v)}`` (Ritz values) and weights
``τ_k^{(v)}`` (each row summing to 1), as ``hessian_density/node_<v>_<k>`` and
``hessian_density/weight_<v>_<k>``. The figure draws the Gaussian-smoothed density

.. math::  φ_σ(t) = \frac1{n_v} Σ_v Σ_k τ_k^{(v)}\, \frac{e^{-(t − θ_k^{(v)})^2 / 2σ^2}}{σ\sqrt{2π}},

an estimate of ``(1/P) Σ_i g_σ(t − λ_i)`` over the ``P`` Hessian eigenvalues (Lin, Saad & Yang
2016; Ghorbani, Krishnan & Xiao 2019, whose figures are drawn this way: log density against
eigenvalue), at the first and the last checkpoint each trial recorded.
"""

from __future__ import annotations

import re

import numpy as np
from matplotlib.lines import Line2D

from gdscope.report import canvas, labels
from gdscope.report.canvas import Drawn
from gdscope.report.collect import StudyView
from gdscope.studies.table import TrialRecord

FAMILY = "hessian_density/"
"""The probe's metric family (``gdscope.training.curvature.DENSITY_FAMILY``; no torch here)."""
SIGMA_FRACTION = 0.01
"""The smoothing width ``σ`` as a fraction of the spread of the nodes drawn."""
FLOOR = 1e-6
"""Densities below ``FLOOR`` times the figure's peak are not drawn (a log axis)."""
MAX_TRIALS = 6
"""Trials drawn at most (two curves each), evenly spaced."""
_NAME = re.compile(r"^hessian_density/(node|weight)_(\d+)_(\d+)$")

Quadrature = tuple[np.ndarray, np.ndarray]
"""``(nodes, weights)``, each ``(n_v, m)``."""


def quadratures(record: TrialRecord) -> dict[int, Quadrature]:
    """Return ``{step: (nodes, weights)}`` of the densities ``record`` holds (``{}`` if none).

    >>> steps = np.array([0, 50])
    >>> series = {
    ...     "hessian_density/node_0_00": (steps, np.array([1.0, 2.0])),
    ...     "hessian_density/weight_0_00": (steps, np.array([1.0, 1.0])),
    ... }
    >>> record = TrialRecord(hash="h", config={}, status="completed", series=series)
    >>> {s: (q[0].tolist(), q[1].tolist()) for s, q in quadratures(record).items()}
    {0: ([[1.0]], [[1.0]]), 50: ([[2.0]], [[1.0]])}
    """
    entries: dict[int, dict[tuple[str, int, int], float]] = {}
    for metric, (steps, values) in record.series.items():
        found = _NAME.match(metric)
        if found is None:
            continue
        kind, probe, k = found.group(1), int(found.group(2)), int(found.group(3))
        for step, value in zip(
            np.asarray(steps).tolist(), np.asarray(values).tolist(), strict=True
        ):
            entries.setdefault(int(step), {})[(kind, probe, k)] = float(value)
    out: dict[int, Quadrature] = {}
    for step, values in sorted(entries.items()):
        probes = 1 + max(p for _, p, _ in values)
        m = 1 + max(k for _, _, k in values)
        nodes, weights = np.full((probes, m), np.nan), np.zeros((probes, m))
        for (kind, probe, k), value in values.items():
            (nodes if kind == "node" else weights)[probe, k] = value
        usable = np.isfinite(nodes) & np.isfinite(weights)
        out[step] = (np.where(usable, nodes, 0.0), np.where(usable, weights, 0.0))
    return out


def smoothed(quadrature: Quadrature, t: np.ndarray, sigma: float) -> np.ndarray:
    """Return ``φ_σ(t)``: the quadrature's Gaussian-smoothed density at the points ``t``.

    >>> nodes, weights = np.array([[0.0, 1.0]]), np.array([[0.5, 0.5]])
    >>> t = np.linspace(-5, 6, 2201)
    >>> round(float(smoothed((nodes, weights), t, 0.1).sum() * (t[1] - t[0])), 6)
    1.0
    """
    nodes, weights = quadrature
    z = (t[:, None, None] - nodes[None]) / sigma
    kernel = np.exp(-0.5 * z**2) / (sigma * np.sqrt(2 * np.pi))
    rows = weights.sum(axis=1)
    return (kernel * weights[None]).sum(axis=2).sum(axis=1) / max(int((rows > 0).sum()), 1)


def density_curves(study: StudyView) -> Drawn | None:
    """Draw each trial's Hessian eigenvalue density at its first and last recorded checkpoint."""
    order = labels.record_order(study.axes)
    found = [(r, quadratures(r)) for r in sorted(study.records, key=order)]
    chosen = [(r, _ends(q)) for r, q in found if q]
    if not chosen:
        return None
    shown = canvas.thin(chosen, MAX_TRIALS)
    every = np.concatenate([_drawn_nodes(q) for _, ends in shown for _, q in ends])
    lo, hi = float(every.min()), float(every.max())
    sigma = SIGMA_FRACTION * (hi - lo) if hi > lo else SIGMA_FRACTION * max(abs(hi), 1.0)
    t = np.linspace(lo - 5 * sigma, hi + 5 * sigma, 600)
    curves = [[(step, smoothed(q, t, sigma)) for step, q in ends] for _, ends in shown]
    floor = FLOOR * max(float(d.max()) for drawn in curves for _, d in drawn)
    fig, ax = canvas.figure()
    for (record, _), drawn, colour in zip(shown, curves, canvas.colors(len(shown)), strict=True):
        for index, (_, density) in enumerate(drawn):
            first = index == 0 and len(drawn) > 1
            ax.plot(
                t,
                np.where(density >= floor, density, np.nan),
                "--" if first else "-",
                color=colour,
                linewidth=1.1,
                label=None if first else labels.shorten(labels.trial(record, study.axes), 60),
            )
    ax.set_yscale("log")
    ax.set_xlabel("Hessian eigenvalue")
    ax.set_ylabel("density (log scale)")
    canvas.legend(ax, handles=_checkpoint_keys([ends for _, ends in shown]))
    probes, m = shown[0][1][0][1][0].shape
    more = len(chosen) - len(shown)
    note = f" {len(shown)} of {len(chosen)} trials shown, evenly spaced." if more else ""
    caption = (
        "Eigenvalue density of the training loss's Hessian by stochastic Lanczos quadrature "
        f"({probes} Rademacher probe vectors × {m} Gauss nodes), smoothed by a Gaussian of "
        f"σ = {labels.number(sigma)} ({SIGMA_FRACTION:g} of the spread of the nodes), at the "
        "first (dashed) and last (solid) checkpoint each trial recorded; log density, cut "
        f"below {FLOOR:g} of the peak. The bulk sits near 0; isolated bumps on the right are "
        "the outlying top eigenvalues (the sharpness)." + note
    )
    return fig, "Hessian eigenvalue density (SLQ)", caption


def _checkpoint_keys(ends: list[list[tuple[int, Quadrature]]]) -> list[Line2D]:
    """Legend entries of the two line styles: the first checkpoint (dashed), the last (solid)."""
    firsts = {e[0][0] for e in ends if len(e) > 1}
    lasts = {e[-1][0] for e in ends if len(e) > 1}
    if not firsts:
        return []
    first = f"step {firsts.pop()}" if len(firsts) == 1 else "first checkpoint"
    last = f"step {lasts.pop()}" if len(lasts) == 1 else "last checkpoint"
    return [
        Line2D([], [], color="#555", linestyle="--", linewidth=1.1, label=f"dashed: {first}"),
        Line2D([], [], color="#555", linestyle="-", linewidth=1.1, label=f"solid: {last}"),
    ]


def _ends(found: dict[int, Quadrature]) -> list[tuple[int, Quadrature]]:
    """Return the first and last recorded ``(step, quadrature)`` (one if only one step)."""
    steps = sorted(found)
    return [(s, found[s]) for s in dict.fromkeys((steps[0], steps[-1]))]


def _drawn_nodes(quadrature: Quadrature) -> np.ndarray:
    """Return the nodes that carry weight (not the zero-weight padding of an early stop)."""
    nodes, weights = quadrature
    return nodes[weights > 0] if (weights > 0).any() else nodes.reshape(-1)
