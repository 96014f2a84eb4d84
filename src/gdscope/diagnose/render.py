"""A :class:`~gdscope.diagnose.verdicts.Diagnosis` as terminal tables, strict JSON or one HTML page.

The page is self-contained (no scripts, no external files): the summary, the checks with their
numbers and thresholds, and an inline SVG figure of the loss and of the sharpness against the
critical sharpness ``S*`` (``2/η`` for GD), drawn with the report's helpers
(:mod:`gdscope.report.canvas`, :mod:`gdscope.report.vector`).
"""

from __future__ import annotations

import html
import json
import math
import os

import numpy as np
from rich.table import Table

from gdscope import _output
from gdscope.diagnose.measure import EDGE_FRACTION, Measurements
from gdscope.diagnose.verdicts import LAZY_DRIFT, LAZY_MOVEMENT, Diagnosis, fit_r2, format_rate
from gdscope.report import canvas
from gdscope.report.labels import format_against

__all__ = ["STATUS_STYLE", "checks_table", "summary_table", "to_json", "write_html"]

STATUS_STYLE = {"holds": "green", "fails": "red", "n/a": "yellow"}


def to_json(diagnosis: Diagnosis) -> str:
    """Return the diagnosis as strict JSON (no NaN or Infinity: those are ``null``)."""
    return json.dumps(diagnosis.to_dict(), allow_nan=False, ensure_ascii=False)


def summary_rows(diagnosis: Diagnosis) -> list[tuple[str, str]]:
    """Return the summary as ``(quantity, value)`` rows: the run, init, the run's end, the regime."""
    m, p = diagnosis.measurements, diagnosis.predictions
    cfg = m.config
    factory = cfg.model.factory.ref if cfg.model.factory else cfg.model.kind
    data = cfg.data.factory.ref if cfg.data.factory else cfg.data.name
    momentum = "" if m.momentum is None else f", β = {m.momentum:g}"
    batch = "full batch" if cfg.batch_size is None else f"batch {cfg.batch_size}"
    edge = (
        "n/a"
        if m.edge_note
        else f"{_g(m.stability_edge)} (η/edge = {format_against(m.lr / m.stability_edge, 1.0, _g)})"
    )
    return [
        ("model", f"{factory} ({m.parameters:,} parameters)"),
        ("data", f"{data}: {m.n_train} examples, {m.outputs} output(s), loss {m.loss}"),
        (
            "run",
            f"{cfg.optimizer.name}, η = {m.lr:g}{momentum}, {batch}, {cfg.steps} steps, {cfg.dtype}",
        ),
        ("probe sets", f"NTK {m.ntk_examples} examples, Hessian {m.hessian_examples} examples"),
        ("sharpness S₀", _g(m.sharpness_init)),
        ("largest stable η", edge),
        ("above the edge", {None: "n/a", True: "yes", False: "no"}[m.above_edge]),
        _edge_of_stability_row(diagnosis),
        ("max sharpness along the run", _g(m.sharpness_max)),
        (
            "NTK λ_min, λ_max, κ (of K₀/p)",
            f"{_g(m.ntk_lambda_min)}, {_g(m.ntk_lambda_max)}, {_g(m.ntk_kappa)}",
        ),
        ("predicted GD loss rate ρ_GD²", format_rate(p["gd_loss_rate"])),
        ("predicted NAG rate 1 − 1/√κ (tuned)", format_rate(p["nag_tuned_residual_rate"])),
        ("NTK drift ‖K_T − K₀‖_F/‖K₀‖_F", format_against(m.ntk_drift, LAZY_DRIFT, _g)),
        ("weight movement ‖θ_T − θ₀‖/‖θ₀‖", format_against(m.weight_movement, LAZY_MOVEMENT, _g)),
        ("PL ratio at init, min", f"{_g(m.pl_ratio_init)}, {_g(m.pl_ratio_min)}"),
        ("loss at init → end", f"{_g(m.loss_init)} → {_g(m.loss_final)}"),
        ("fitted loss rate ρ (R²)", _fitted_rate(m)),
        ("status", f"{m.status} after {m.steps} steps ({m.wall_time_s:.1f} s)"),
        ("regime", f"{diagnosis.regime}: {diagnosis.regime_reason}"),
    ]


def _fitted_rate(m: Measurements) -> str:
    """``0.914 (0.9812)``; a rejected fit says so: ``0.8734 (R² 0.94997 < 0.95: fit rejected)``."""
    r2 = fit_r2(m)
    return f"{format_rate(m.loss_rate)} ({r2 if m.loss_rate_ok else f'R² {r2}'})"


def _edge_of_stability_row(diagnosis: Diagnosis) -> tuple[str, str]:
    """Return the summary's edge-of-stability row, worded as its check decides it.

    ``reached at step t`` where the check holds, ``not reached`` where it fails, and ``n/a``
    with the check's reason otherwise (S₀ already at the edge, an adaptive optimizer, a short or
    diverged run); ``S*`` is shown where the optimizer has one.
    """
    m = diagnosis.measurements
    check = diagnosis.check("edge_of_stability")
    s_star = f"S* = {_g(m.critical_sharpness)}" if math.isfinite(m.critical_sharpness) else ""
    if check.status == "holds":
        value = f"reached at step {m.edge_step} ({s_star})"
    elif check.status == "fails":
        value = f"not reached ({s_star})"
    else:
        value = f"n/a ({s_star}): {check.threshold}" if s_star else f"n/a: {check.threshold}"
    return f"edge of stability (S ≥ {EDGE_FRACTION}·S*)", value


def summary_table(diagnosis: Diagnosis) -> Table:
    """Return the summary rows as a rich table."""
    table = Table("quantity", "value", box=None, header_style="bold", title="gdscope diagnose")
    for name, value in summary_rows(diagnosis):
        table.add_row(name, value)
    return table


def checks_table(diagnosis: Diagnosis) -> Table:
    """Return the theory checks as a rich table: claim, status, measured numbers, threshold."""
    table = Table("check", "status", "measured", "threshold / reason", header_style="bold")
    for c in diagnosis.checks:
        style = STATUS_STYLE[c.status]
        table.add_row(
            f"{c.claim}\n[dim]{c.reference}[/]", f"[{style}]{c.status}[/]", c.measured, c.threshold
        )
    return table


def write_html(diagnosis: Diagnosis, path: str | os.PathLike[str], option: str = "--html") -> None:
    """Write one self-contained HTML page of the diagnosis to ``path`` (atomically)."""
    target = _output.check_target(path, option)
    page = html_page(diagnosis)
    with _output.replacing(target, option) as out:
        out.write(page)


def html_page(diagnosis: Diagnosis) -> str:
    """Return the HTML page of the diagnosis."""
    e = html.escape
    rows = "".join(f"<tr><th>{e(k)}</th><td>{e(v)}</td></tr>" for k, v in summary_rows(diagnosis))
    checks = "".join(
        f"<tr><td>{e(c.claim)}<br><small>{e(c.reference)}</small></td>"
        f'<td class="{e(c.status.replace("/", ""))}">{e(c.status)}</td>'
        f"<td>{e(c.measured)}</td><td>{e(c.threshold)}</td></tr>"
        for c in diagnosis.checks
    )
    return (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        "<title>gdscope diagnose</title><style>"
        "body{font-family:sans-serif;max-width:60em;margin:2em auto;padding:0 1em}"
        "table{border-collapse:collapse;margin:1em 0}th,td{border:1px solid #ccc;padding:.3em .6em;"
        "text-align:left;vertical-align:top}.holds{color:#2ca02c}.fails{color:#d62728}"
        ".na{color:#b8860b}svg{max-width:100%;height:auto}</style></head><body>"
        f"<h1>gdscope diagnose: {e(diagnosis.regime)}</h1><p>{e(diagnosis.regime_reason)}</p>"
        f"<table>{rows}</table><h2>Theory checks</h2><table><tr><th>check</th><th>status</th>"
        f"<th>measured</th><th>threshold / reason</th></tr>{checks}</table>"
        f"<h2>Loss and sharpness</h2>{_figure(diagnosis)}</body></html>\n"
    )


def _figure(diagnosis: Diagnosis) -> str:
    """Inline SVG of :func:`_draw` in the report's style (empty when nothing was recorded)."""
    chart = canvas.render(_draw, diagnosis)
    return "" if chart is None else chart.svg


def _draw(diagnosis: Diagnosis) -> canvas.Drawn | None:
    """Draw the loss (log scale, left axis) and the sharpness with ``S*`` (right axis)."""
    m = diagnosis.measurements
    steps, loss = (np.asarray(v, dtype=np.float64) for v in m.records.get("loss", ([], [])))
    if not loss.size:
        return None
    fig, ax = canvas.figure()
    ax.plot(steps, np.where(loss > 0, loss, np.nan), color="#1f77b4", linewidth=1.1, label="loss")
    if canvas.wants_log(loss[loss > 0]):
        ax.set_yscale("log")
    ax.set_ylabel("loss")
    canvas.steps_axis(ax)
    right = ax.twinx()
    s_steps, sharp = (np.asarray(v, dtype=np.float64) for v in m.records.get("sharpness", ([], [])))
    if sharp.size:
        right.plot(s_steps, sharp, "o-", color="#ff7f0e", markersize=2.5, linewidth=1.1)
        right.lines[-1].set_label("sharpness")
    if math.isfinite(m.critical_sharpness) and not m.edge_note:
        right.axhline(
            m.critical_sharpness,
            color="#d62728",
            linestyle=":",
            linewidth=1.4,
            label="S* (2/η for GD)",
        )
    right.set_ylabel("sharpness")
    lines, names = ax.get_legend_handles_labels()
    more, more_names = right.get_legend_handles_labels()
    right.legend(lines + more, names + more_names, loc="best")
    caption = (
        f"Training loss (left axis) and sharpness on the Hessian probe set of "
        f"{m.hessian_examples} examples (right axis) against step; the dotted line is S*, the "
        "sharpness at which the learning rate is the stability edge."
    )
    return fig, "Loss and sharpness against step", caption


def _g(value: float | None) -> str:
    return (
        "n/a"
        if value is None or (isinstance(value, float) and math.isnan(value))
        else f"{value:.4g}"
    )
