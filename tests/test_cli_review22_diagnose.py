"""``gdscope diagnose`` prints a number compared with a threshold on the right side of it.

The review's run (adam, 20 steps) rejected its loss-rate fit for R² = 0.94997 < 0.95 while the
table said "fitted loss rate ρ (R²) 0.8734 (0.95)" and the check "R² = 0.95": four
significant digits rounded the value onto its threshold. A rejected fit is now marked as such,
with the digits that tell it from the threshold. ``--help`` showed ``--run`` as
"default diagnose-)": the markdown help took ``<function>`` for an HTML tag.
"""

import pytest

from _helpers import diagnose_tiny, lazy_gd_run, run_cli
from gdscope.diagnose import render
from gdscope.diagnose.verdicts import judge
from gdscope.report.labels import format_against


@pytest.fixture(scope="module")
def measured(tmp_path_factory):
    """The measurements of one tiny diagnosed run (12 steps), to vary field by field."""
    return diagnose_tiny(tmp_path_factory, "review22nets", lr=0.1).measurements


REJECTED = {"loss_rate": 0.8734, "loss_rate_r2": 0.94997, "loss_rate_ok": False}
"""The review's fit: rejected for R² just below 0.95."""


@pytest.mark.parametrize(
    ("value", "threshold", "shown"),
    [
        (0.94997, 0.95, "0.94997"),  # 4 digits: "0.95", on the threshold
        (0.9500004, 0.95, "0.9500004"),  # above it, not equal to it
        (0.0999996, 0.1, "0.0999996"),
        (1.00004, 1.0, "1.00004"),
        (0.95, 0.95, "0.95"),  # equal: equal
        (0.5, 0.95, "0.5"),  # far from it: 4 digits as before
        (0.123456, 0.95, "0.1235"),
    ],
)
def test_a_number_is_never_rounded_onto_or_over_its_threshold(value, threshold, shown):
    assert format_against(value, threshold) == shown
    assert (float(shown) < threshold) == (value < threshold)
    assert (float(shown) == threshold) == (value == threshold)


def test_a_rejected_fit_shows_its_r2_below_the_threshold(measured):
    diagnosis = judge(lazy_gd_run(measured, **REJECTED))
    row = dict(render.summary_rows(diagnosis))["fitted loss rate ρ (R²)"]
    assert row == "0.8734 (R² 0.94997 < 0.95: fit rejected)"
    check = diagnosis.check("ntk_rate")
    assert check.status == "n/a"
    assert "(R² = 0.94997 < 0.95: fit rejected)" in check.measured, check.measured
    assert "R² = 0.95)" not in check.measured and "R² = 0.95 " not in check.threshold
    assert check.threshold == (
        "the loss is not linear on a log scale (R² = 0.94997 < 0.95: fit rejected)"
    )


def test_an_accepted_fit_reads_as_before(measured):
    diagnosis = judge(
        lazy_gd_run(measured, **{**REJECTED, "loss_rate_r2": 0.9812, "loss_rate_ok": True})
    )
    assert dict(render.summary_rows(diagnosis))["fitted loss rate ρ (R²)"] == "0.8734 (0.9812)"
    assert "(R² = 0.9812)" in diagnosis.check("ntk_rate").measured


def test_a_drift_just_below_its_threshold_is_not_printed_as_the_threshold(measured):
    diagnosis = judge(lazy_gd_run(measured, **REJECTED, ntk_drift=0.0999996))
    assert diagnosis.regime == "lazy"
    assert "NTK drift 0.0999996," in diagnosis.regime_reason
    assert dict(render.summary_rows(diagnosis))["NTK drift ‖K_T − K₀‖_F/‖K₀‖_F"] == "0.0999996"
    assert "= 0.0999996," in diagnosis.check("ntk_regime").measured


def test_the_help_of_run_names_its_default(monkeypatch, capsys):
    monkeypatch.setenv("COLUMNS", "200")  # one line per option
    code, out, _ = run_cli(monkeypatch, capsys, "diagnose", "--help")
    assert code == 0
    line = next(line for line in out.splitlines() if "--run " in line)
    assert "default diagnose-<function>)" in line, line
