"""A PASS or FAIL that rests on one seed says so wherever its verdict is shown.

``gdscope run`` and ``verify`` printed "warning: this PASS rests on one seed"; the HTML report
(and the Markdown verdicts) showed the same PASS without it. Every place now uses one function,
:func:`gdscope.report.labels.one_seed_warning`, with the seeds of the study at the verdict's
scale (a scale may run more seeds than the base).
"""

import pytest

from _helpers import run_cli
from _stores import KERNEL_BASE, study_file
from gdscope import api
from gdscope.report import render_report
from gdscope.report.collect import scaled_seeds
from gdscope.report.labels import one_seed_warning

WARNING = "this PASS rests on one seed (seeds = [0]); run more seeds to see whether it repeats"
BASE = KERNEL_BASE + '"data.n" = 8\n'
CLAIM = 'y = { reduce = "final", metric = "residual" }'


@pytest.fixture(scope="module")
def one_seed(tmp_path_factory):
    """A results folder holding a PASS of a one-seed study (at quick; two seeds at smoke)."""
    folder = tmp_path_factory.mktemp("one-seed")
    study = folder / "one.toml"
    study.write_text(study_file("one", BASE, claim=CLAIM) + "[scales.smoke]\nseeds = [0, 1]\n")
    results = folder / "results"
    for scale in ("quick", "smoke"):
        (verdict,) = api.run_study(study, scale=scale, results=results).verdicts
        assert verdict.status == "PASS"
    return study, results


def test_the_warning_is_one_function_of_the_status_and_the_seeds():
    assert one_seed_warning("PASS", [0]) == WARNING
    assert one_seed_warning("FAIL", [7]).startswith("this FAIL rests on one seed (seeds = [7])")
    assert one_seed_warning("PASS", [0, 1]) == one_seed_warning("INCONCLUSIVE", [0]) == ""
    assert one_seed_warning("PASS", None) == ""  # seeds unknown: nothing said


def test_the_seeds_are_those_of_the_verdicts_scale():
    spec = {"name": "s", "scales": {"smoke": {"seeds": [0, 1]}}}  # base: the default [0]
    assert scaled_seeds(spec, "quick") == [0]
    assert scaled_seeds(spec, "smoke") == [0, 1]
    assert scaled_seeds({}, "quick") is None


def test_the_html_report_warns_where_it_shows_the_verdict(one_seed):
    _, results = one_seed
    page = render_report(results)
    assert page.count(WARNING) == 3  # at a glance, the verdict table, the claim's section
    assert "seeds = [0, 1]" not in page  # the smoke-scale PASS rests on two seeds


def test_the_markdown_verdicts_warn_too(one_seed):
    _, results = one_seed
    page = render_report(results, fmt="markdown")
    quick = page.split("## one (quick)")[1].split("## one (smoke)")[0]
    assert f"*Warning:* {WARNING}" in quick
    assert "Warning" not in page.split("## one (smoke)")[1]


def test_run_and_verify_still_print_it(one_seed, monkeypatch, capsys):
    study, results = one_seed
    code, out, err = run_cli(monkeypatch, capsys, "verify", str(results))
    assert code == 0, err
    assert out.count(f"warning: {WARNING}") == 1  # quick only
    code, out, err = run_cli(
        monkeypatch, capsys, "run", str(study), "--results", str(results), "--no-report"
    )
    assert code == 0, err
    assert f"    warning: {WARNING}" in out


def test_show_warns_as_run_and_verify_do(one_seed, monkeypatch, capsys):
    """``gdscope show`` printed the stored verdicts without the warning."""
    _, results = one_seed
    code, out, err = run_cli(monkeypatch, capsys, "show", str(results))
    assert code == 0, err
    assert out.count(f"warning: {WARNING}") == 1  # quick only: smoke runs two seeds
