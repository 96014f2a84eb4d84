"""``scripts/estimated_costs.py``: a study's ``estimated_cost`` is what its stored run took."""

from __future__ import annotations

from _helpers import load_script
from gdscope.report.collect import StudyView

costs = load_script("scripts", "estimated_costs")

RUN = {"last_run": "2026-12-04T10:00:00+00:00"}
MACHINE = {"cpu": "AMD EPYC", "hostname": "vm", "torch": "2.13.0+cpu"}


def _trial(finished: str, took: float) -> dict[str, object]:
    return {
        "finished_at": f"2026-12-04T10:{finished}+00:00",
        "wall_time_s": took,
        "provenance": MACHINE,
    }


def test_a_finished_run_states_its_trials_wall_and_trial_time() -> None:
    view = StudyView(
        "s", "paper", {}, [], trials=[_trial("01:40", 7.0), _trial("01:50", 2.0)], runs=RUN
    )
    assert costs.cost_text(view, planned=2) == (
        "2 trials, 17 s on 2 CPU cores with --workers 2 (9 s of trial time; measured 2026-12-04 "
        "on AMD EPYC / vm / 2.13.0+cpu)"
    )


def test_a_stopped_run_says_more_than_and_how_many_trials_it_stored() -> None:
    view = StudyView("s", "paper", {}, [], trials=[_trial("10:00", 600.0)], runs=RUN)
    text = costs.cost_text(view, planned=40)
    assert text.startswith("more than 600 s on 2 CPU cores with --workers 2: stopped with 1 of 40")
    ran_longer = costs.cost_text(view, planned=40, limit="601 s")  # the run outlived its trials
    assert ran_longer.startswith("more than 601 s on 2 CPU cores")
    assert text.endswith("a rerun resumes")


def test_a_run_stopped_before_it_stored_a_trial_says_how_long_it_ran(tmp_path) -> None:
    view = StudyView("s", "paper", {}, [], trials=[], runs=RUN)
    assert costs.cost_text(view, planned=70, limit="600 s") == (
        "more than 600 s on 2 CPU cores with --workers 2: stopped before any of its 70 trials was "
        "stored (measured 2026-12-04); a rerun resumes"
    )
    (tmp_path / "paper-times.tsv").write_text(
        "s\tstopped or failed (exit 124)\t601 s\t2026-12-04\nt\tfinished\t30 s\t2026-12-04\n"
        "t\tstopped or failed (exit 124)\t600 s\t2026-12-05\ns\tfinished\t40 s\t2026-12-05\n"
    )
    assert costs.stopped_after(tmp_path, "t") == "600 s"
    assert costs.stopped_after(tmp_path, "s") is None  # its latest run finished
    assert costs.stopped_after(tmp_path, "u") is None


def test_a_resumed_run_is_costed_by_its_trial_time_not_by_its_last_sitting() -> None:
    earlier = {**_trial("00:00", 500.0), "finished_at": "2026-12-04T09:00:00+00:00"}
    view = StudyView("s", "paper", {}, [], trials=[earlier, _trial("01:40", 100.0)], runs=RUN)
    assert costs.cost_text(view, planned=2).startswith(
        "2 trials, ≈ 300 s on 2 CPU cores with --workers 2 (600 s of trial time"
    )
    assert costs.cost_text(view, planned=3).startswith(  # resumed and stopped again
        "more than ≈ 300 s (in more than one sitting) on 2 CPU cores with --workers 2: stopped "
        "with 2 of 3 trials stored (600 s of trial time"
    )


def test_a_run_whose_trials_failed_is_not_a_measurement() -> None:
    broken = {**_trial("00:30", 0.01), "status": "failed"}
    view = StudyView("s", "paper", {}, [], trials=[broken, _trial("00:40", 1.0)], runs=RUN)
    assert "stopped with 1 of 2 trials stored, 1 failed" in costs.cost_text(view, planned=2)


def test_the_line_is_rewritten_in_place_and_a_scale_not_stored_keeps_its_text(tmp_path) -> None:
    study = tmp_path / "s.toml"
    study.write_text(
        'name = "s"\nestimated_cost = { quick = "old", paper = "typed" }\nseeds = [0]\n'
    )
    view = StudyView("s", "quick", {}, [], trials=[_trial("00:30", 20.0)], runs=RUN)
    original = costs.plan_study
    try:
        costs.plan_study = lambda path, scale, results: type("Plan", (), {"trials": 1})()
        text = costs.rewritten(study, {("s", "quick"): view}, tmp_path)
    finally:
        costs.plan_study = original
    assert text.splitlines()[0] == 'name = "s"' and text.splitlines()[2] == "seeds = [0]"
    assert 'quick = "1 trials, 20 s on 2 CPU cores' in text and 'paper = "typed"' in text
