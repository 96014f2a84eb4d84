"""The Markdown wall time of a monitored run names its attempts; counts agree with their nouns.

A run monitored twice under one name read "resumed: 1 trials stored before": a monitored run
is no study and resumes nothing (each ``gs.monitor`` is a new attempt), and "1 trials" is wrong
for a resumed study too.
"""

import time

from typer.testing import CliRunner

from _helpers import monitor_tiny
from gdscope.cli import app
from gdscope.report.collect import StudyView
from gdscope.report.markdown import elapsed

RUNS = {"last_run": "2026-12-04T10:00:00+00:00"}


def _trial(finished, took):
    return {"finished_at": f"2026-12-04T{finished}+00:00", "wall_time_s": took}


LATEST = [_trial("10:01:40", 7.0), _trial("10:01:50", 2.0)]  # 17 s from 10:01:33


def test_a_monitored_runs_earlier_attempts_are_no_resumed_study():
    earlier = [_trial("09:30:00", 1.0)]
    view = StudyView("my-run", "monitor", {}, [], trials=[*LATEST[1:], *earlier], runs=RUNS)
    assert elapsed(view) == "2 s (latest attempt; 1 earlier attempt)"
    two = [*earlier, _trial("09:40:00", 1.0)]
    view = StudyView("my-run", "monitor", {}, [], trials=[*LATEST[1:], *two], runs=RUNS)
    assert elapsed(view) == "2 s (latest attempt; 2 earlier attempts)"


def test_a_resumed_study_counts_its_trials_in_the_singular_and_plural():
    one = [*LATEST, _trial("09:30:00", 1.0)]
    assert elapsed(StudyView("s", "quick", {}, [], trials=one, runs=RUNS)) == (
        "17 s (resumed: 1 trial stored before)"
    )
    two = [*one, _trial("09:31:00", 1.0)]
    assert elapsed(StudyView("s", "quick", {}, [], trials=two, runs=RUNS)) == (
        "17 s (resumed: 2 trials stored before)"
    )


def test_the_markdown_of_a_run_monitored_twice_says_attempt(tmp_path):
    for attempt in range(2):  # two attempts under one name
        if attempt:
            time.sleep(1.1)  # the store's times are to the second
        monitor_tiny(tmp_path, "twice")
    target = tmp_path / "v.md"
    out = CliRunner().invoke(app, ["report", str(tmp_path), "--markdown", "-o", str(target)])
    assert out.exit_code == 0, out.output
    (row,) = [line for line in target.read_text().splitlines() if line.startswith("| twice |")]
    assert "(latest attempt; 1 earlier attempt)" in row and "resumed" not in row
