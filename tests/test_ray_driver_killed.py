"""Killing the driver of a ``--runner ray`` run ends every process of its Ray instance (``ray``).

The driver runs in its own session, with ``RAY_TMPDIR`` a fresh folder, so that the instance's
processes are known two ways: their session id is the driver's pid (the raylet's agents and
workers included, whatever their process title), or they hold a file open under that folder.
Without the watchdog (:mod:`gdscope.runners._ray_reaper`) the dashboard and runtime-env agents
stayed 60 s after a ``kill -9`` and busy workers ran their trial to its end.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

pytest.importorskip("ray")
pytestmark = [
    pytest.mark.ray,
    pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="reads /proc (Linux)"),
]
GDSCOPE = str(Path(sys.executable).with_name("gdscope"))
GRACE_S = 5.0
"""How long the processes may outlive the driver (measured: 0.2 s; Ray alone: 60 s)."""


def instance_processes(folder: str, session: int) -> dict[int, str]:
    """``{pid: command line}`` of the live processes of session ``session`` or with a file open
    under ``folder`` (or naming it in their command line)."""
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            files = [os.readlink(fd) for fd in (entry / "fd").iterdir()]
        except OSError:  # gone, or another user's
            continue
        if stat[0] == "Z":  # exited, not yet collected by its parent
            continue
        mine = int(stat[3]) == session or folder in command
        if mine or any(path.startswith(folder) for path in files):
            found[int(entry.name)] = command.strip()[:120]
    return found


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM], ids=["SIGKILL", "SIGTERM"])
def test_killing_the_driver_ends_every_ray_process_within_seconds(sig, tmp_path):
    folder = tempfile.mkdtemp(prefix="gdr", dir="/tmp")  # short: Ray's socket paths must fit
    command = [GDSCOPE, "run", "weights-stay-near-init", "--scale", "quick", "--runner", "ray"]
    command += ["--results", str(tmp_path / "results"), "--no-report"]
    log = tmp_path / "stderr"
    with log.open("w") as stderr:
        driver = subprocess.Popen(
            command,
            env={**os.environ, "RAY_TMPDIR": folder},
            start_new_session=True,
            stdout=subprocess.DEVNULL,
            stderr=stderr,
        )
    try:
        deadline = time.monotonic() + 120
        while not any(
            "ray::_ray_job" in c for c in instance_processes(folder, driver.pid).values()
        ):
            assert driver.poll() is None, log.read_text()[-2000:]
            assert time.monotonic() < deadline, "no trial started within 120 s"
            time.sleep(0.2)
        before = instance_processes(folder, driver.pid)
        assert len(before) >= 5, before  # driver, GCS, raylet, agents, a busy worker
        driver.send_signal(sig)
        driver.wait(timeout=30)
        killed_at = time.monotonic()
        left = instance_processes(folder, driver.pid)
        while left and time.monotonic() - killed_at < GRACE_S:
            time.sleep(0.1)
            left = instance_processes(folder, driver.pid)
        took = time.monotonic() - killed_at
        assert not left, f"{len(left)} processes left {took:.1f} s after {sig.name}: {left}"
        print(f"{sig.name}: {len(before)} processes, all gone {took:.2f} s after the driver")
    finally:
        for pid in instance_processes(folder, driver.pid):  # a failed check leaves nothing
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
        if driver.poll() is None:
            driver.kill()
            driver.wait()
