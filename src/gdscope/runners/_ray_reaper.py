"""End a local Ray instance's processes when the gdscope process that started it is gone.

``ray.init()`` on one machine starts the GCS server, the raylet, a dashboard and log monitors
as children of the driver, with ``prctl(PR_SET_PDEATHSIG)``, so they die with it. The raylet's
own children do not: killed with the driver, the dashboard agent and the runtime-env agent wait
for the dead GCS for about a minute, and a worker busy with a trial runs it to its end
(measured with Ray 2.60: 60 s after a ``kill -9`` of the driver). Nothing the driver runs
survives a ``SIGKILL``, so the cleaning is done by this watchdog, a separate process in its own
session (a Ctrl-C or a kill of the driver's process group does not reach it).

What belongs to the instance: every process with a file open under the instance's session
directory (``…/ray/session_<date>_<pid>``): each Ray process keeps its log files there open,
whatever its process title (``ray::DashboardAgent`` overwrites its command line and its
environment). The watchdog reads its standard input, a pipe whose only writer is the driver;
end of file means the driver exited or closed it (after ``ray.shutdown()``), whether by a
return, an exception, ``SIGTERM`` or ``SIGKILL``. It then sends ``SIGKILL`` to those processes,
except the driver, and scans again until none is left.

Run as a script (standard library only, so it starts in milliseconds and imports neither
gdscope nor torch)::

    python _ray_reaper.py SESSION_DIR DRIVER_PID

Linux only (it reads ``/proc``); :func:`gdscope.runners.ray.run_trials` starts it where
``/proc`` exists and the instance is its own.
"""

from __future__ import annotations

import os
import signal
import sys
import time
from collections.abc import Iterable

_ROUNDS = 50
"""Scans after the first kill (0.1 s apart): a raylet may start a worker while it is killed."""


def holders(session_dir: str, exclude: Iterable[int] = ()) -> list[int]:
    """Return the pids of the processes with a file open under ``session_dir``.

    Processes of other users (whose descriptors cannot be read) and ``exclude`` are left out.

    >>> import tempfile
    >>> with tempfile.TemporaryDirectory() as folder:
    ...     with open(os.path.join(folder, "log"), "w"):
    ...         mine = holders(folder)
    ...     after = holders(folder)
    >>> (os.getpid() in mine, os.getpid() in after)
    (True, False)
    """
    prefix = os.path.join(os.path.abspath(session_dir), "")
    skip = set(exclude)
    found = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit() or int(entry.name) in skip:
            continue
        try:
            with os.scandir(f"/proc/{entry.name}/fd") as fds:
                if any(_target(fd.path).startswith(prefix) for fd in fds):
                    found.append(int(entry.name))
        except OSError:  # gone, or another user's
            continue
    return found


def children_holding(session_dir: str, parent: int) -> list[int]:
    """Return the children of ``parent`` among :func:`holders` of ``session_dir``.

    A Ray instance started by ``parent`` has its GCS server and raylet among them; one it
    joined (started by ``ray start``) has none.
    """
    return [pid for pid in holders(session_dir, exclude=[parent]) if _parent_of(pid) == parent]


def reap(session_dir: str, exclude: Iterable[int] = ()) -> int:
    """``SIGKILL`` every :func:`holders` of ``session_dir`` until none is left; return the count.

    Scans at most ``_ROUNDS`` more times, 0.1 s apart, for processes started while killing.
    """
    skip = {os.getpid(), *exclude}
    killed: set[int] = set()
    for _ in range(_ROUNDS + 1):
        pids = holders(session_dir, skip)
        if not pids:
            break
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
                killed.add(pid)
            except OSError:  # exited meanwhile
                continue
        time.sleep(0.1)
    return len(killed)


def _target(fd: str) -> str:
    try:
        return os.readlink(fd)
    except OSError:
        return ""


def _parent_of(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/stat") as handle:
            stat = handle.read()
    except OSError:
        return None
    return int(stat.rsplit(")", 1)[1].split()[1])  # after "pid (comm)": state, ppid, …


def main(argv: list[str]) -> int:
    """Wait for end of file on standard input, then :func:`reap` (the driver is spared)."""
    session_dir, driver = argv[1], int(argv[2])
    if not os.path.basename(os.path.normpath(session_dir)).startswith("session_"):
        print(f"_ray_reaper: not a Ray session directory: {session_dir!r}", file=sys.stderr)
        return 2
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    while sys.stdin.buffer.read(4096):
        pass
    reap(session_dir, exclude=[driver])
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
