"""The environment section: what the trials ran with (from their stored provenance) and when.

Each trial row of the store carries the provenance of the process that ran it (versions of
python, torch, numpy and gdscope, platform, CPU, CUDA device, host, git commit, timestamp). The
report lists every distinct value with the number of trials that had it, so a store filled by two
machines says so. The report's own writer (python, numpy, matplotlib, gdscope) and the date it was
written come last.
"""

from __future__ import annotations

import platform
from collections import Counter
from collections.abc import Iterable, Mapping
from datetime import datetime, timezone
from importlib import metadata
from typing import Any

from gdscope.report import labels

_FIELDS = (
    ("python", "python"),
    ("torch", "torch"),
    ("numpy", "numpy"),
    ("gdscope", "gdscope"),
    ("device", "device"),
    ("cpu", "CPU"),
    ("platform", "platform"),
    ("hostname", "host"),
    ("git", "git commit"),
)


def trial_environment(trials: Iterable[Mapping[str, Any]]) -> list[tuple[str, str]]:
    """Rows ``(what, values)`` summarising the provenance of ``trials``.

    ``values`` joins each distinct value with its trial count when there is more than one
    (``"2.4.1 (10 trials), 2.5.0 (2 trials)"``); ``–`` when no trial recorded it.
    """
    provenances = [t.get("provenance") or {} for t in trials]
    rows = [(title, _distinct(_value(p, key) for p in provenances)) for key, title in _FIELDS]
    stamps = sorted(str(p["timestamp"]) for p in provenances if p.get("timestamp"))
    ran = f"{stamps[0]} … {stamps[-1]}" if stamps else labels.MISSING
    return [*rows, ("trials ran", ran), ("trials", str(len(provenances)))]


def writer_environment(now: datetime | None = None) -> list[tuple[str, str]]:
    """Rows describing the process writing the report, and the date (UTC)."""
    when = (now or datetime.now(timezone.utc)).isoformat(timespec="seconds")
    return [
        ("report written", when),
        ("by gdscope", _version("gdscope")),
        ("with python", platform.python_version()),
        ("numpy", _version("numpy")),
        ("matplotlib", _version("matplotlib")),
    ]


def _value(provenance: Mapping[str, Any], key: str) -> str | None:
    if key == "device":
        cuda = provenance.get("cuda_device")
        return f"CUDA: {cuda}" if cuda else ("CPU" if provenance else None)
    if key == "git":
        commit = provenance.get("git_commit")
        if not commit:
            return None
        return str(commit)[:12] + (" (uncommitted changes)" if provenance.get("git_dirty") else "")
    value = provenance.get(key)
    return None if value is None else str(value)


def _distinct(values: Iterable[str | None]) -> str:
    counts = Counter(v for v in values if v is not None)
    if not counts:
        return labels.MISSING
    if len(counts) == 1:
        return next(iter(counts))
    return ", ".join(f"{v} ({n} trial{'s' * (n != 1)})" for v, n in counts.most_common())


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return labels.MISSING
