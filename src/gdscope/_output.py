"""Every file gdscope writes besides its store: never the store, never half a file, no planted link.

:func:`replacing` writes to a new temporary file created exclusively (``O_EXCL``, a random name)
in the target's folder and renames it over the target when the writing succeeded, so a reader
never sees half a file, a failed write leaves the old file as it was, and a symbolic link planted
at the target (or at a predictable temporary name) is replaced, never followed. A target that
is, or resolves to, a results store (``gdscope.sqlite`` and its ``-wal``, ``-shm`` and
``-journal`` files) or its folder's write lock (``.lock``: a new file there would let a second
run lock it while the first holds the old one), an SQLite database under any name (a store's
backup copy), a folder, an empty name or a path below a file is refused with a one-line
:class:`OutputError` before anything is opened. Standard output closed
early by its reader (``| head``) ends a command quietly (:func:`stdout_closed`).
"""

from __future__ import annotations

import os
import select
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

STORE_FILE = "gdscope.sqlite"
STORE_FILES = frozenset(STORE_FILE + suffix for suffix in ("", "-wal", "-shm", "-journal"))
"""The results store's file and SQLite's companions: never an output."""
LOCK_FILE = ".lock"
"""A results directory's write lock (:mod:`gdscope.store.lock`): never an output, never replaced."""


class OutputError(ValueError):
    """An output path gdscope refuses to write (the message names the option and the fix)."""


def check_target(path: str | os.PathLike[str], option: str) -> Path:
    """Return ``path`` if gdscope may write a file there; else raise :class:`OutputError`.

    >>> check_target("results/gdscope.sqlite", "--output")
    Traceback (most recent call last):
    ...
    gdscope._output.OutputError: --output=results/gdscope.sqlite is a gdscope results store; write to another file
    """
    if not str(path).strip():
        raise OutputError(f"{option}={str(path)!r} is empty; give a file name")
    target = Path(path)
    what = reserved(target)
    if what:
        raise OutputError(f"{option}={path} is {what}; write to another file")
    if _is_database(target):  # a store kept under another name: outputs are never databases
        raise OutputError(
            f"{option}={path} is an SQLite database (a copy of a results store?); write to "
            "another file"
        )
    if target.is_dir():
        raise OutputError(f"{option}={path} is a folder; give a file name")
    try:
        above = next((p for p in target.parents if p.exists() or p.is_symlink()), None)
    except OSError:  # a folder on the way that cannot be searched: writing there says why
        above = None
    if above is not None and not above.is_dir():
        what = "a file" if above.exists() else "a broken link"
        raise OutputError(
            f"{option}={path}: {above} is {what}, not a folder; give a path in a folder"
        )
    return target


def reserved(path: str | os.PathLike[str]) -> str:
    """Say what of a results directory ``path`` is, or resolves to (its store, its lock); else ``""``.

    >>> reserved("results/.lock"), reserved("results/gdscope.sqlite-wal"), reserved("a.csv")
    ("a results directory's lock file", 'a gdscope results store', '')
    """
    target = Path(path)
    for candidate in (target, target.resolve()):
        if candidate.name in STORE_FILES:
            return "a gdscope results store"
        if candidate.name == LOCK_FILE:
            return "a results directory's lock file"
    return ""


@contextmanager
def replacing(
    path: str | os.PathLike[str], option: str, *, binary: bool = False
) -> Iterator[IO[Any]]:
    """Open a new temporary file beside ``path`` for writing; rename it over ``path`` on success.

    ``option`` names the flag or argument that gave ``path`` in errors. Parent folders are
    created. On an exception the temporary file is removed and ``path`` is left untouched.
    """
    target = check_target(path, option)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        handle, partial = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.")
    except PermissionError:
        raise OutputError(
            f"{option}={path}: cannot write in {target.parent} (permission denied); "
            "write the file elsewhere"
        ) from None
    try:
        mode = "wb" if binary else "w"
        encoding = None if binary else "utf-8"
        with os.fdopen(handle, mode, encoding=encoding, newline=None if binary else "") as file:
            yield file
        os.chmod(partial, 0o666 & ~_umask())  # as an ordinary new file (mkstemp makes it 0600)
        os.replace(partial, target)
    except BaseException:
        Path(partial).unlink(missing_ok=True)
        raise


def _is_database(target: Path) -> bool:
    """Whether ``target`` is a regular file (not a link, which is replaced) holding SQLite."""
    if target.is_symlink() or not target.is_file():
        return False
    try:
        with target.open("rb") as file:
            return file.read(16) == b"SQLite format 3\x00"
    except OSError:
        return False


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


PIPE_CLOSED = 141
"""Exit status of a command whose reader closed standard output early (``… | head``).

128 + SIGPIPE, what a shell reports for a program the closed pipe's signal ended."""


def stdout_closed() -> int:
    """Point standard output at the null device after its reader closed it; return 141.

    Python's recipe for a ``BrokenPipeError`` (the ``signal`` module's note on SIGPIPE): what
    is left to write, and the flush at exit, go nowhere instead of raising again, so the
    command ends quietly, with :data:`PIPE_CLOSED` (every command that writes to stdout does).
    """
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):  # no file descriptor (captured): nothing is flushed to it
        pass
    return PIPE_CLOSED


def stdout_target() -> tuple[int, int] | None:
    """Return the ``(device, inode)`` standard output points at; ``None`` without a descriptor."""
    try:
        status = os.fstat(sys.stdout.fileno())
    except (OSError, ValueError, AttributeError):  # replaced or captured
        return None
    return status.st_dev, status.st_ino


def stdout_silenced_since(before: tuple[int, int] | None) -> bool:
    """Whether standard output was pointed at the null device since it pointed at ``before``.

    What rich's console does when its reader has gone (``Console.on_broken_pipe``: the null
    device put in its place, then ``SystemExit(1)``), as for the help ``gdscope --help | head``
    prints through typer's own console.
    """
    now = stdout_target()
    if now is None or now == before:
        return False
    null = os.stat(os.devnull)
    return now == (null.st_dev, null.st_ino)


def stdout_broken() -> bool:
    """Whether standard output is a pipe whose reader has gone (``poll`` reports an error on it).

    A ``BrokenPipeError`` is standard output's only then: one from another pipe (a socket a
    user's code reads) is an error to report, not a reader that stopped early.
    """
    try:
        fd = sys.stdout.fileno()
    except (OSError, ValueError, AttributeError):  # replaced or captured: it cannot be broken
        return False
    if not hasattr(select, "poll"):  # Windows: no way to ask; take it for standard output's
        return True
    poller = select.poll()
    poller.register(fd, select.POLLOUT)
    gone = select.POLLERR | select.POLLHUP  # a pipe's (Linux), a socket's and a BSD pipe's
    return any(events & gone for _, events in poller.poll(0))
