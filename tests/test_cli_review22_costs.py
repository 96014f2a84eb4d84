"""A study's ``estimated_cost`` is a wall time two workers could give it, run alone.

The texts were written from a whole-catalogue run, where studies share one pool of workers and
interleave: a study's span there is not its cost. "70 trials, 41 s on 2 CPU cores with
--workers 2 (258 s of trial time)" cannot be (two workers need at least 129 s), nor can
"30 trials, 81 s … (1 s of trial time)". ``cost_text`` replaces such a wall time by half the
trial time and says it is estimated from it; the catalogue's texts follow the same rule.
"""

import re

import pytest

from _helpers import load_script
from gdscope.plan import catalog
from gdscope.report.collect import StudyView
from gdscope.studies import load_study

costs = load_script("scripts", "estimated_costs")

RUN = {"last_run": "2026-12-04T10:00:00+00:00"}
MACHINE = {"cpu": "AMD EPYC", "hostname": "vm", "torch": "2.13.0+cpu"}
FINISHED = re.compile(r"^\d+ trials, (≈ )?(\d+) s .*?\((\d+) s of trial time")
STOPPED = re.compile(r"^more than (≈ )?(\d+) s .*?stopped with .*?\((\d+) s of trial time")


def _trial(finished: str, took: float) -> dict[str, object]:
    return {
        "finished_at": f"2026-12-04T10:{finished}+00:00",
        "wall_time_s": took,
        "provenance": MACHINE,
    }


def _view(*trials: dict[str, object]) -> StudyView:
    return StudyView("s", "paper", {}, [], trials=list(trials), runs=RUN)


def test_a_span_shorter_than_two_workers_allow_is_estimated_from_the_trial_time():
    # 3 trials of 86 s each finished within 41 s: they ran beside other studies' trials
    view = _view(_trial("00:15", 86.0), _trial("00:30", 86.0), _trial("00:41", 86.0))
    assert costs.cost_text(view, planned=3) == (
        "3 trials, ≈ 129 s (estimated from the trial time) on 2 CPU cores with --workers 2 "
        "(258 s of trial time; measured 2026-12-04 on AMD EPYC / vm / 2.13.0+cpu)"
    )


def test_a_span_far_longer_than_the_trial_time_is_estimated_from_it():
    # 1 s of trials spread over 81 s: the study waited for others in the shared pool
    view = _view(_trial("00:01", 0.5), _trial("01:21", 0.5))
    text = costs.cost_text(view, planned=2)
    assert text.startswith("2 trials, ≈ 1 s (estimated from the trial time) on 2 CPU cores")
    assert "80 s" not in text and "81 s" not in text


def test_a_span_two_workers_can_give_is_kept():
    view = _view(_trial("00:10", 10.0), _trial("00:20", 10.0))  # 20 s of trials in 20 s
    assert costs.cost_text(view, planned=2).startswith("2 trials, 20 s on 2 CPU cores")
    assert costs.alone(10, 20) and costs.alone(30, 20) and not costs.alone(31, 20)
    assert not costs.alone(9, 20) and costs.alone(9.5, 20, rounding=0.5)


def test_a_stopped_run_is_never_said_to_have_taken_less_than_its_trials_allow():
    trials = [_trial(f"0{k}:00", 400.0) for k in range(1, 5)]  # 1600 s of trials by 10:04
    text = costs.cost_text(_view(*trials), planned=10)
    assert text.startswith(
        "more than ≈ 800 s (estimated from the trial time) on 2 CPU cores with --workers 2: "
        "stopped with 4 of 10 trials stored (1600 s of trial time"
    ), text
    limited = costs.cost_text(_view(*trials[:1]), planned=10, limit="600 s")
    assert limited.startswith("more than 600 s on 2 CPU cores")  # 600 ≥ 400 / 2: kept


def _entries():
    for name, path in catalog().items():
        for scale, text in load_study(path).estimated_cost.items():
            yield pytest.param(text, id=f"{name}-{scale}")


@pytest.mark.parametrize("text", list(_entries()))
def test_every_catalogue_wall_time_fits_its_trial_time(text):
    if text.startswith("more than") and "stopped before any" in text:
        return  # nothing stored: no trial time to compare with
    finished, stopped = FINISHED.match(text), STOPPED.match(text)
    assert finished or stopped, f"unrecognised estimated_cost text: {text}"
    if finished:
        wall, trial = int(finished[2]), int(finished[3])
        assert costs.alone(wall, trial, rounding=1.0), text  # both rounded to whole seconds
    else:
        wall, trial = int(stopped[2]), int(stopped[3])
        assert wall >= trial / 2 - 1.0, text  # a lower bound: it cannot be too long
    if (finished or stopped)[1] and "sitting" not in text:  # an estimate other than a resume's
        assert "(estimated from the trial time)" in text or "trials, ≈" in text, text
