"""The summary's edge-of-stability row of ``gdscope diagnose`` says what its check says.

Review D #11: a GD run whose sharpness S₀ was at or above 0.95·S* at init printed
``S ≥ 0.95·S* (S* = …)  step 0`` as if it reached the edge while the check said n/a (nothing to
rise to); for Adam the row showed an S* = 2/η that does not apply, beside a check saying n/a.
"""

import dataclasses
import math

import pytest

from _helpers import diagnose_tiny
from gdscope.diagnose import render
from gdscope.diagnose.verdicts import judge


def _diagnose(tmp_path_factory, **options):
    return diagnose_tiny(tmp_path_factory, "edgenets", **options)


@pytest.fixture(scope="module")
def gd_run(tmp_path_factory):
    """The measurements of one tiny full-batch GD run (12 steps), to vary field by field."""
    return _diagnose(tmp_path_factory, lr=0.1).measurements


def _edge_row(diagnosis) -> str:
    """The value of the summary row on S ≥ 0.95·S*."""
    rows = [value for name, value in render.summary_rows(diagnosis) if "0.95·S*" in name]
    assert len(rows) == 1, render.summary_rows(diagnosis)
    return rows[0]


# S* = 20 (η = 0.1); 0.95·S* = 19
CASES = {
    "rises to the edge from below": (
        {"sharpness_init": 5.0, "sharpness_max": 21.0, "edge_step": 40},
        "holds",
        "reached at step 40 (S* = 20)",
    ),
    "never reaches the edge": (
        {"sharpness_init": 5.0, "sharpness_max": 8.0, "edge_step": None},
        "fails",
        "not reached (S* = 20)",
    ),
    "starts at the edge": (
        {"sharpness_init": 19.5, "sharpness_max": 22.0, "edge_step": 0},
        "n/a",
        "n/a (S* = 20): S₀ ≥ 0.95·S* already at init: η starts at the edge, nothing to rise to",
    ),
    "starts above the edge": (
        {"sharpness_init": 30.0, "sharpness_max": 31.0, "edge_step": 0},
        "n/a",
        "n/a (S* = 20): S₀ ≥ 0.95·S* already at init: η starts at the edge, nothing to rise to",
    ),
    "diverged after reaching it": (
        {"sharpness_init": 5.0, "sharpness_max": 40.0, "edge_step": 30, "status": "diverged"},
        "n/a",
        "n/a (S* = 20): the run diverged",
    ),
    "too short": (
        {"sharpness_init": 30.0, "sharpness_max": 30.0, "edge_step": 0, "steps": 5},
        "n/a",
        "n/a (S* = 20): only 5 steps (≥ 10 needed)",
    ),
    "no sharpness measured along the run": (
        {"sharpness_init": 5.0, "sharpness_max": math.nan, "edge_step": None},
        "fails",
        "not reached (S* = 20)",
    ),
}


@pytest.mark.parametrize("case", list(CASES))
def test_the_edge_row_says_what_the_edge_check_says(gd_run, case):
    changes, status, row = CASES[case]
    base = {"lr": 0.1, "critical_sharpness": 20.0, "status": "completed", "steps": 200}
    diagnosis = judge(dataclasses.replace(gd_run, **{**base, **changes}))
    check = diagnosis.check("edge_of_stability")
    assert check.status == status, check
    assert _edge_row(diagnosis) == row


def test_a_gd_run_starting_above_the_edge_is_not_said_to_reach_it(gd_run, tmp_path_factory):
    lr = 1.2 * gd_run.stability_edge  # S₀ = 1.2·2/η: above 0.95·S* at init
    diagnosis = _diagnose(tmp_path_factory, lr=lr)
    m = diagnosis.measurements
    assert m.sharpness_init >= 0.95 * m.critical_sharpness
    assert diagnosis.check("edge_of_stability").status == "n/a"
    row = _edge_row(diagnosis)
    assert row.startswith("n/a (S* = "), row
    assert "step 0" not in row and "reached" not in row, row


def test_adam_has_no_critical_sharpness_and_the_row_says_why_not(tmp_path_factory):
    diagnosis = _diagnose(tmp_path_factory, lr=0.01, optimizer="adam")
    m = diagnosis.measurements
    assert math.isnan(m.critical_sharpness) and m.edge_step is None
    check = diagnosis.check("edge_of_stability")
    assert check.status == "n/a"
    assert "S*" not in check.measured, check.measured
    assert _edge_row(diagnosis) == f"n/a: {m.edge_note}"
    assert "optimizer 'adam' rescales each coordinate" in m.edge_note
    assert diagnosis.to_dict()["measurements"]["critical_sharpness"] is None
    # nor a largest stable η set by S₀ (the JSON said 0.52 where the summary says n/a)
    assert diagnosis.to_dict()["measurements"]["stability_edge"] is None
    assert "edge =" not in diagnosis.check("stability").measured


def test_heavy_ball_keeps_its_critical_sharpness(tmp_path_factory):
    diagnosis = _diagnose(tmp_path_factory, lr=0.1, optimizer="heavy_ball", momentum=0.5)
    m = diagnosis.measurements
    assert m.critical_sharpness == pytest.approx((2 + 2 * 0.5) / 0.1, rel=1e-12)
    assert f"(S* = {m.critical_sharpness:.4g})" in _edge_row(diagnosis)


def test_heavy_ball_without_momentum_records_the_default_beta_it_used(tmp_path_factory):
    """Review: S* = 76 at η = 0.05 implied β = 0.9, but the run line showed no β and the JSON
    had momentum null, so S* could not be read back from what was recorded."""
    diagnosis = _diagnose(tmp_path_factory, lr=0.05, optimizer="heavy_ball")
    m = diagnosis.measurements
    assert m.momentum == 0.9
    assert m.critical_sharpness == pytest.approx((2 + 2 * 0.9) / 0.05, rel=1e-12)
    assert diagnosis.to_dict()["measurements"]["momentum"] == 0.9
    assert "β = 0.9" in dict(render.summary_rows(diagnosis))["run"]
