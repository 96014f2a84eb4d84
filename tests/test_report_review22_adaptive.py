"""The report draws an adaptive optimizer's sharpness against its own edge, never against 2/η.

The HTML report of a run monitored with Adam drew the sharpness against 2/η (667 at lr 0.003),
the edge of gradient descent, which is no threshold of Adam (Cohen et al. 2022: ``λ_max(P⁻¹H)``
against ``(2 + 2β₁)/((1 − β₁)η)``, 38/η at β₁ = 0.9). Now the preconditioned sharpness the run
recorded is drawn against the threshold its probe recorded, the sharpness of an adaptive
optimizer's trial gets no 2/η line, and a monitored run whose optimizer is not known says
that 2/η is GD's edge.
"""

import numpy as np
import pytest
import torch
from torch import nn

import gdscope as gs
from gdscope.config.trial import ADAPTIVE
from gdscope.report import render_report, series
from gdscope.report.collect import StudyView, collect
from gdscope.store import Store
from gdscope.studies.table import TrialRecord

LR = 0.003


def _adam_run(folder, probes, steps=12):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 16), nn.Tanh(), nn.Linear(16, 1))
    x, y = torch.randn(32, 4), torch.randn(32, 1)
    opt = torch.optim.Adam(model.parameters(), lr=LR)
    with gs.monitor(
        model, gs.losses.mse, (x, y), probes=probes, optimizer=opt, results=folder, run="adam"
    ) as mon:
        mon.step(0, lr=LR)
        for t in range(1, steps + 1):
            opt.zero_grad()
            gs.losses.mse(model(x), y).backward()
            opt.step()
            mon.step(t, lr=LR)
    assert mon.status == "completed", mon.trace.reason
    (view,) = collect(Store(folder, read_only=True))
    return view


def _horizontal_levels(drawn):
    """Every constant level a figure's lines draw (2/η lines, thresholds)."""
    fig, _, _ = drawn
    levels = set()
    for line in fig.axes[0].lines:
        ys = np.asarray(line.get_ydata(), dtype=float)
        ys = ys[np.isfinite(ys)]
        if ys.size and np.all(ys == ys[0]):
            levels.add(round(float(ys[0]), 6))
    return levels


@pytest.fixture(scope="module")
def preconditioned(tmp_path_factory):
    folder = tmp_path_factory.mktemp("adam")
    probes = {"sharpness": 5, "preconditioned_sharpness": 5}
    return folder, _adam_run(folder, probes)


def test_an_adam_run_is_drawn_against_the_adaptive_threshold_not_2_over_lr(preconditioned):
    folder, view = preconditioned
    sharp = series.sharpness_curves(view)
    assert sharp is not None
    assert round(2 / LR, 6) not in _horizontal_levels(sharp)  # 667: not Adam's edge
    assert "2/η" in sharp[1] and "not drawn" in sharp[2] and "adaptive optimizer" in sharp[2]
    drawn = series.preconditioned_curves(view)
    assert drawn is not None
    assert _horizontal_levels(drawn) == {round(38 / LR, 6)}  # (2 + 2β₁)/((1 − β₁)η), β₁ = 0.9
    _, title, caption = drawn
    assert title == "Preconditioned sharpness against the adaptive threshold"
    assert "(2 + 2β₁)/((1 − β₁)η)" in caption and "38/η" in caption
    page = render_report(folder)
    assert "2/η of the recorded lr" not in page
    assert "Preconditioned sharpness against the adaptive threshold" in page
    assert "adaptive threshold (recorded)" in page  # the line's legend entry


def test_a_monitored_run_without_the_adaptive_probe_says_2_over_lr_is_gds_edge(tmp_path):
    view = _adam_run(tmp_path, {"sharpness": 5}, steps=6)
    drawn = series.sharpness_curves(view)
    assert drawn is not None
    _, title, caption = drawn
    assert title == "Sharpness against 2/η"  # the optimizer is not stored: the line stays...
    assert "2/η is the edge of gradient descent" in caption  # ...named for what it is
    assert "does not apply to an adaptive optimizer" in caption
    assert series.preconditioned_curves(view) is None


def _record(name, optimizer, lr, extra=None):
    steps = np.arange(0, 20, 5)
    found = {"sharpness": (steps, np.linspace(1.0, 30.0, steps.size))}
    config = {"optimizer.name": optimizer, "optimizer.lr": lr, "seed": 0}
    return TrialRecord(name, config, "completed", {**found, **(extra or {})})


def test_a_study_trial_of_an_adaptive_optimizer_gets_no_2_over_lr_line():
    adam = _record("a", "adam", 0.01)
    gd = _record("b", "gd", 0.1)
    alone = StudyView("s", "quick", {}, [], records=[adam])
    drawn = series.sharpness_curves(alone)
    assert drawn is not None and round(2 / 0.01, 6) not in _horizontal_levels(drawn)
    mixed = StudyView("s", "quick", {}, [], records=[adam, gd])
    drawn = series.sharpness_curves(mixed)
    assert drawn is not None
    levels = _horizontal_levels(drawn)
    assert round(2 / 0.1, 6) in levels and round(2 / 0.01, 6) not in levels  # GD's only
    assert "No 2/η line for the 1 of 2 trials with an adaptive optimizer" in drawn[2]


def test_only_the_ratio_recorded_is_drawn_against_1():
    steps = np.arange(5, 20, 5)
    ratio = {"preconditioned_sharpness_ratio": (steps, np.array([0.2, 0.6, 0.9]))}
    record = _record("a", "adam", 0.01, ratio)
    drawn = series.preconditioned_curves(StudyView("s", "quick", {}, [], records=[record]))
    assert drawn is not None and 1.0 in _horizontal_levels(drawn)


def test_the_reports_adaptive_names_cover_the_configs():
    assert set(ADAPTIVE) <= set(series.ADAPTIVE_OPTIMIZERS)
