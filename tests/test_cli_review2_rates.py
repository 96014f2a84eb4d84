"""What ``gdscope diagnose`` prints of rates near 1, and the option its Du-rate reason names.

``predicted ρ_GD² = 1`` and ``fitted loss rate ρ (R²) 1 (1)`` were printed where the JSON held
0.99997 and 0.99998: four significant digits cannot tell such rates apart from 1 or from each
other. The Du-rate check told a command-line user to "pass ntk_examples ≥ n", an argument
only the Python API has (the option is ``--probe-size``).
"""

import pytest

from _helpers import diagnose_tiny, lazy_gd_run
from gdscope.diagnose import render
from gdscope.diagnose.verdicts import judge


@pytest.fixture(scope="module")
def measured(tmp_path_factory):
    """The measurements of one tiny diagnosed run (12 steps), to vary field by field."""
    return diagnose_tiny(tmp_path_factory, "ratenets", lr=0.1).measurements


def test_rates_near_1_print_the_digits_that_tell_them_apart(measured):
    # η λ_min = 0.1 · 3e-4 = 3e-5: ρ_GD = 1 − 3e-5, ρ_GD² = 0.99994...; fitted 0.99997
    m = lazy_gd_run(measured, ntk_examples=measured.n_train)
    diagnosis = judge(m)
    rows = dict(render.summary_rows(diagnosis))
    assert rows["fitted loss rate ρ (R²)"] == "0.99997 (0.99)"
    assert rows["predicted GD loss rate ρ_GD²"] == "0.99994"
    assert rows["predicted NAG rate 1 − 1/√κ (tuned)"] == "0.9755"  # 4 digits away from 1
    check = diagnosis.check("ntk_rate")
    assert "fitted ρ = 0.99997 " in check.measured, check.measured
    assert check.measured.endswith("= 0.99994"), check.measured
    pl = diagnosis.check("pl").measured
    assert "fitted ρ = 0.99997," in pl and pl.endswith("1 − ημ = 0.99999"), pl
    nag = diagnosis.check("nag").measured
    assert "GD 1 − 1/κ = 0.99940" not in nag and "GD 1 − 1/κ = 0.9994," in nag, nag
    for text in (*rows.values(), check.measured, pl, nag):
        assert " = 1," not in text and " = 1 " not in text and not text.startswith("1 ("), text


def test_an_r2_near_1_is_told_apart_from_1(measured):
    m = lazy_gd_run(measured, ntk_examples=measured.n_train, loss_rate_r2=0.99998)
    diagnosis = judge(m)
    assert dict(render.summary_rows(diagnosis))["fitted loss rate ρ (R²)"] == "0.99997 (0.99998)"
    assert "(R² = 0.99998)" in diagnosis.check("ntk_rate").measured


def test_rates_away_from_1_keep_four_digits(measured):
    m = lazy_gd_run(measured, ntk_examples=measured.n_train, loss_rate=0.5)
    rows = dict(render.summary_rows(judge(m)))
    assert rows["fitted loss rate ρ (R²)"] == "0.5 (0.99)"


def test_the_du_rate_reason_names_the_commands_option(measured):
    m = lazy_gd_run(measured, ntk_examples=4, n_train=12)
    check = judge(m).check("ntk_rate")
    assert check.status == "n/a"
    assert "--probe-size 12" in check.threshold, check.threshold
    assert "ntk_examples ≥ n" not in check.threshold
