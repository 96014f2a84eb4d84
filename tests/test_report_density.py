"""The report draws the Hessian eigenvalue density a study's trials recorded (``hessian_density``)."""

from __future__ import annotations

import math
import re

import numpy as np
import torch

import gdscope as gs
from _helpers import assert_close
from gdscope.functional import clone_params, params_of
from gdscope.report import density, render_report
from gdscope.report.collect import StudyView
from gdscope.store import Store
from gdscope.studies.table import TrialRecord
from gdscope.training import PROBES, ProbeContext, Trace
from gdscope.training.curvature import DENSITY_FAMILY, density_metric

TITLE = "Hessian eigenvalue density (SLQ)"


def _trace(rows: list[tuple[int, str, float]]) -> Trace:
    """A finished trial's trace holding ``rows`` (step, metric, value)."""
    trace = Trace(status="completed", steps=50, reason="ran 50 steps")
    for step, metric, value in rows:
        trace.record(step, {metric: value})
    return trace


def _density_rows(step: int, spectra: list[list[float]]) -> list[tuple[int, str, float]]:
    """One probe per spectrum, each eigenvalue a node of equal weight (a full decomposition)."""
    rows = []
    for probe, lam in enumerate(spectra):
        for k, node in enumerate(lam):
            rows.append((step, density_metric("node", probe, k), node))
            rows.append((step, density_metric("weight", probe, k), 1 / len(lam)))
    return rows


def _record(name: str, spectra_by_step: dict[int, list[list[float]]], seed: int) -> TrialRecord:
    series: dict[str, tuple[list[int], list[float]]] = {}
    for step, spectra in spectra_by_step.items():
        for s, metric, value in _density_rows(step, spectra):
            steps, values = series.setdefault(metric, ([], []))
            steps.append(s)
            values.append(value)
    return TrialRecord(
        hash=f"{name}{seed}",
        config={"seed": seed},
        status="completed",
        series={m: (np.asarray(a, dtype=np.int64), np.asarray(b)) for m, (a, b) in series.items()},
    )


def test_the_figure_draws_the_smoothed_density_at_the_first_and_last_checkpoint():
    early, late = [0.0, 0.1, 0.2, 1.0], [0.0, 0.1, 0.3, 5.0]
    records = [_record("t", {0: [early], 25: [early], 50: [late]}, seed) for seed in (0, 1)]
    view = StudyView(name="s", scale="quick", spec={}, claims=[], records=records)
    drawn = density.density_curves(view)
    assert drawn is not None
    fig, title, caption = drawn
    assert title == TITLE and "first (dashed) and last (solid)" in caption
    lines = fig.axes[0].get_lines()
    assert len(lines) == 4  # two trials × (step 0, step 50): the middle checkpoint is not drawn
    assert [ln.get_linestyle() for ln in lines] == ["--", "-", "--", "-"]
    assert str(lines[0].get_label()).startswith("_") and lines[1].get_label() == "seed=0"
    legend = [t.get_text() for t in fig.legends[0].get_texts()]
    assert sorted(legend) == ["dashed: step 0", "seed=0", "seed=1", "solid: step 50"]
    assert fig.axes[0].get_yscale() == "log"
    sigma = density.SIGMA_FRACTION * (5.0 - 0.0)  # the spread of every node drawn
    for line, lam in zip(lines[:2], (early, late), strict=True):
        t, shown = (np.asarray(a, dtype=np.float64) for a in line.get_data())
        exact = np.exp(-0.5 * ((t[:, None] - np.array(lam)) / sigma) ** 2).mean(1) / (
            sigma * math.sqrt(2 * math.pi)
        )
        drawn_at = np.isfinite(shown)
        assert drawn_at.sum() > 100
        assert_close(shown[drawn_at], exact[drawn_at], rtol=1e-12)
        assert float(exact[~drawn_at].max(initial=0)) < density.FLOOR * exact.max() * 2
    late_curve = np.asarray(lines[1].get_data()[1], dtype=np.float64)
    t = np.asarray(lines[1].get_data()[0], dtype=np.float64)
    bump = (t > 4) & np.isfinite(late_curve)
    assert abs(float(t[bump][np.argmax(late_curve[bump])]) - 5.0) < 2 * (t[1] - t[0])


def test_a_study_without_the_probe_has_no_density_figure():
    view = StudyView(name="s", scale="quick", spec={}, claims=[], records=[])
    assert density.density_curves(view) is None


def _section(page: str, name: str) -> str:
    sections = re.findall(
        r'<details class="study".*?</details>\n(?=<details class="study"|<section)',
        page,
        flags=re.S,
    )
    return next(s for s in sections if f"<h2>{name} <" in s)


def test_the_figure_appears_in_the_section_of_the_study_that_recorded_it(tmp_path):
    store = Store(tmp_path)
    claim = {"id": "c", "kind": "within", "y": {"reduce": "final", "metric": "loss"}}
    for name, with_density in (("with-density", True), ("without-density", False)):
        spec = {"name": name, "title": name, "claims": [{**claim, "band": [0, 10]}]}
        store.record_study(name, "quick", spec)
        rows = [(0, "loss", 1.0), (50, "loss", 0.5)]
        if with_density:
            rows += _density_rows(0, [[0.0, 1.0]]) + _density_rows(50, [[0.0, 2.0]])
        store.record_trial(name, "quick", {"seed": 0, "name": name}, f"h-{name}", _trace(rows))
    page = render_report(tmp_path)
    assert TITLE in _section(page, "with-density")
    assert TITLE not in _section(page, "without-density")


def test_what_the_probe_records_is_what_the_figure_reads():
    assert density.FAMILY == DENSITY_FAMILY
    g = torch.Generator().manual_seed(0)
    net = gs.models.mlp(3, 5, depth=2, seed=0, dtype=torch.float64)
    x, y = torch.randn(8, 3, generator=g, dtype=torch.float64), torch.randn(8, 1, generator=g)
    ctx = ProbeContext(
        net, params_of(net), clone_params(params_of(net)), gs.losses.mse, (x, y.double()),
        None, 0,
    )  # fmt: skip
    out = PROBES["hessian_density"](ctx)
    record = TrialRecord(
        hash="h",
        config={},
        status="completed",
        series={m: (np.array([7]), np.array([v])) for m, v in out.items()},
    )
    ((step, (nodes, weights)),) = density.quadratures(record).items()
    assert step == 7
    probes, m = nodes.shape
    assert nodes.tolist() == [
        [out[density_metric("node", i, k)] for k in range(m)] for i in range(probes)
    ]
    assert weights.tolist() == [
        [out[density_metric("weight", i, k)] for k in range(m)] for i in range(probes)
    ]
