"""Where and with what a trial ran: versions, platform, device, host, git commit, time.

The static part is computed once per process (``git`` is asked once); ``timestamp`` is fresh on
every call. ``torch`` is imported only if it already is or can be, so readers of the store that
never train pay nothing for it.
"""

from __future__ import annotations

import functools
import platform
import socket
import subprocess
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np


def provenance() -> dict[str, Any]:
    """Return versions (python, torch, numpy, gdscope), platform, devices, host, git, timestamp.

    ``git_commit`` is the commit of the gdscope source checkout (``None`` for an installed wheel
    or without git); ``git_dirty`` says whether tracked files differ from it.
    """
    return {**_static(), "timestamp": datetime.now(timezone.utc).isoformat(timespec="seconds")}


@functools.lru_cache(maxsize=1)
def _static() -> dict[str, Any]:
    commit, dirty = _git_state(Path(__file__).resolve().parent)
    torch_version, cuda_device = _torch_state()
    return {
        "python": platform.python_version(),
        "torch": torch_version,
        "numpy": np.__version__,
        "gdscope": _gdscope_version(),
        "platform": platform.platform(),
        "cpu": _cpu_model(),
        "cuda_device": cuda_device,
        "hostname": socket.gethostname(),
        "git_commit": commit,
        "git_dirty": dirty,
    }


def _gdscope_version() -> str:
    try:
        return metadata.version("gdscope")
    except metadata.PackageNotFoundError:  # pragma: no cover - running from a bare checkout
        return "unknown"


def _torch_state() -> tuple[str | None, str | None]:
    try:
        import torch
    except ImportError:  # pragma: no cover - torch is a dependency
        return None, None
    device = None
    try:
        if torch.cuda.is_available():
            device = torch.cuda.get_device_name(torch.cuda.current_device())
    except RuntimeError:  # pragma: no cover - broken driver
        device = None
    return str(torch.__version__), device


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _git_state(directory: Path) -> tuple[str | None, bool | None]:
    """``(HEAD commit, dirty)`` of the checkout containing ``directory``; ``(None, None)`` if none."""
    # the package must be tracked there: a wheel inside some other repository has no commit
    tracked = _git(directory, "ls-files", "--error-unmatch", "--", "__init__.py")
    commit = _git(directory, "rev-parse", "HEAD") if tracked is not None else None
    if commit is None:
        return None, None
    status = _git(directory, "status", "--porcelain", "--untracked-files=no")
    return commit, None if status is None else bool(status)


def _git(directory: Path, *args: str) -> str | None:
    try:
        done = subprocess.run(
            ["git", *args],
            cwd=directory,
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip() if done.returncode == 0 else None
