"""The write lock of a results directory: an advisory ``flock`` on ``DIR/.lock`` holding a pid.

``flock`` locks belong to an open file, so the lock is released when its holder closes the file or
dies (no stale locks after a crash), and two opens in one process exclude each other too. The lock
file itself is never deleted: deleting it would let two processes lock two different files.
"""

from __future__ import annotations

import os
from pathlib import Path

from gdscope._output import LOCK_FILE

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows: no advisory lock
    fcntl = None

LOCK_NAME = LOCK_FILE
"""The lock file's name; outputs are refused there (:func:`gdscope._output.check_target`)."""


class StoreError(RuntimeError):
    """The results directory cannot be used (written by a newer gdscope, not a directory, ...)."""


class StoreBusy(StoreError):  # noqa: N818 - the name the API and CLI catch
    """Another process holds the results directory's write lock."""


def acquire(directory: Path) -> int:
    """Take the exclusive lock of ``directory`` without waiting; return the lock file's fd.

    Raises:
        StoreBusy: another holder has it; the message names the holder's pid.

    """
    fd = os.open(directory / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o644)
    if fcntl is None:  # pragma: no cover - no advisory locks on this platform
        return fd
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        holder = os.read(fd, 32).decode(errors="replace").strip() or "unknown"
        os.close(fd)
        raise StoreBusy(
            f"results dir {directory} is in use by another gdscope run (pid {holder}); "
            "wait for it or use --results DIR2"
        ) from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    return fd


def release(fd: int) -> None:
    """Release a lock taken by ``acquire``."""
    if fcntl is not None:
        fcntl.flock(fd, fcntl.LOCK_UN)
    os.close(fd)
