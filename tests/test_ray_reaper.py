"""The watchdog that ends a local Ray instance's processes once its driver is gone (no Ray used)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from gdscope.runners import _ray_reaper

pytestmark = pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="reads /proc (Linux)")
HOLD = "import sys, time; f = open(sys.argv[1], 'a'); print('ready', flush=True); time.sleep(600)"


def _holder(path: Path) -> subprocess.Popen[str]:
    """A process that keeps ``path`` open (as a Ray process keeps its log files)."""
    process = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(path)], stdout=subprocess.PIPE, text=True
    )
    assert process.stdout is not None and process.stdout.readline() == "ready\n"
    return process


def _stop(*processes: subprocess.Popen[str]) -> None:
    for process in processes:
        process.kill()
        process.wait()
        if process.stdout is not None:
            process.stdout.close()


@pytest.fixture
def session(tmp_path):
    folder = tmp_path / "ray" / "session_2026-12-04_00-00-00_000000_1"
    (folder / "logs").mkdir(parents=True)
    return folder


def test_reap_kills_the_holders_of_session_files_and_spares_the_rest(session, tmp_path):
    inside = _holder(session / "logs" / "raylet.out")
    spared = _holder(session / "logs" / "driver.log")  # as the driver, excluded
    outside = _holder(tmp_path / "other.log")
    try:
        found = _ray_reaper.holders(str(session))
        assert {inside.pid, spared.pid} <= set(found) and outside.pid not in found
        assert _ray_reaper.reap(str(session), exclude=[spared.pid]) == 1
        assert inside.wait(timeout=5) == -9
        assert spared.poll() is None and outside.poll() is None
    finally:
        _stop(inside, spared, outside)


def test_the_watchdog_reaps_when_its_pipe_closes(session):
    holder = _holder(session / "logs" / "gcs_server.out")
    script = _ray_reaper.__file__
    watchdog = subprocess.Popen(
        [sys.executable, "-I", script, str(session), "1"], stdin=subprocess.PIPE
    )
    try:
        time.sleep(0.3)
        assert holder.poll() is None and watchdog.poll() is None  # waits while the pipe is open
        assert watchdog.stdin is not None
        watchdog.stdin.close()  # as when the driver exits or is killed
        assert watchdog.wait(timeout=10) == 0
        assert holder.wait(timeout=5) == -9
    finally:
        if watchdog.poll() is None:
            watchdog.kill()
            watchdog.wait()
        _stop(holder)


def test_the_watchdog_refuses_a_folder_that_is_not_a_ray_session(tmp_path):
    holder = _holder(tmp_path / "notes.txt")
    try:
        done = subprocess.run(
            [sys.executable, "-I", _ray_reaper.__file__, str(tmp_path), "1"],
            input=b"",
            capture_output=True,
            check=False,
        )
        assert done.returncode == 2 and b"not a Ray session directory" in done.stderr
        assert holder.poll() is None
    finally:
        _stop(holder)


def test_children_holding_names_only_this_processs_children(session):
    child = _holder(session / "logs" / "raylet.out")
    try:
        assert _ray_reaper.children_holding(str(session), os.getpid()) == [child.pid]
        assert _ray_reaper.children_holding(str(session), child.pid) == []
    finally:
        _stop(child)
