"""A `gdscope run` killed at any moment resumes to the store an uninterrupted run gives."""

import os
import signal
import sqlite3
import subprocess
import sys
import time
from contextlib import closing
from pathlib import Path

import pytest

from _stores import assert_same_results, integrity_ok
from gdscope import api
from gdscope.store import Store

STUDY = "lazy-training"  # 15 smoke trials: a kill lands mid-run
GDSCOPE = str(Path(sys.executable).with_name("gdscope"))


def _command(results: Path) -> list[str]:
    return [GDSCOPE, "run", STUDY, "--scale", "smoke", "--workers", "2", "--results", str(results)]


def _start(results: Path, log: Path) -> subprocess.Popen:
    with open(log, "w") as handle:  # the child keeps its own copy of the descriptor
        return subprocess.Popen(
            _command(results),
            stdout=subprocess.DEVNULL,
            stderr=handle,
            start_new_session=True,  # its own process group: the kill takes the workers too
        )


def _finished(results: Path) -> list[tuple]:
    """Rows of stored trials (read-only; an absent or half-created store reads as empty)."""
    path = results / "gdscope.sqlite"
    if not path.exists():
        return []
    try:
        with closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30)) as conn:
            return conn.execute(
                "SELECT hash, status, wall_time_s, finished_at, provenance_json FROM trials "
                "ORDER BY hash"
            ).fetchall()
    except sqlite3.OperationalError:  # schema not created yet
        return []


def _wait_for(condition, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    results = tmp_path_factory.mktemp("uninterrupted")
    api.run_study(STUDY, scale="smoke", results=results, workers=2)
    return Store(results)


@pytest.mark.parametrize(
    "kill_after",
    [  # the default run keeps one kill mid-run; the others (≈ 20 s each) run with -m slow
        pytest.param(0, id="at-start", marks=pytest.mark.slow),
        pytest.param(1, id="after-1"),
        pytest.param(6, id="after-6", marks=pytest.mark.slow),
    ],
)
def test_sigkill_at_any_moment_then_resume_equals_an_uninterrupted_run(
    reference, tmp_path, kill_after
):
    results = tmp_path / "results"
    process = _start(results, tmp_path / "killed.log")
    if kill_after == 0:
        time.sleep(1.5)  # interpreter, imports, store creation: before any trial is stored
    else:
        _wait_for(lambda: len(_finished(results)) >= kill_after or process.poll() is not None)
    assert process.poll() is None, "the run finished before it could be killed"
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    assert process.returncode == -signal.SIGKILL
    before = _finished(results)
    assert len(before) >= kill_after
    if results.exists() and (results / "gdscope.sqlite").exists():
        assert integrity_ok(Store(results))

    resumed = subprocess.run(_command(results), capture_output=True, text=True, check=False)
    assert resumed.returncode == 0, resumed.stderr
    total = len(_finished(reference.directory))
    assert f"{total} trials ({total - len(before)} run, 0 failed)" in resumed.stderr
    after = {row[0]: row for row in _finished(results)}
    assert all(after[row[0]] == row for row in before), "a finished trial was redone"
    assert integrity_ok(Store(results))
    assert_same_results(Store(results), reference)


@pytest.mark.slow  # ~20-40 s; the default run stays under 10 minutes
def test_a_second_run_on_a_locked_results_dir_stops_at_once(reference, tmp_path):
    """A run holding the directory (here this test, deterministically) keeps a second one out."""
    results = tmp_path / "results"
    holder = Store(results)
    with holder.writer():
        second = subprocess.run(_command(results), capture_output=True, text=True, check=False)
    assert second.returncode == 2
    assert second.stderr.strip().splitlines() == [
        f"error: results dir {results} is in use by another gdscope run (pid {os.getpid()}); "
        "wait for it or use --results DIR2"
    ]
    assert _finished(results) == []  # it wrote nothing
    after = subprocess.run(_command(results), capture_output=True, text=True, check=False)
    assert after.returncode == 0, after.stderr  # once released, the same command runs
    assert integrity_ok(Store(results))
    assert_same_results(Store(results), reference)
