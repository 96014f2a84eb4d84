"""Trials grouped for a figure's legend: one colour and one legend entry per group.

A study sweeps some config keys (its axes) over seeds. A figure of one line per trial gives every
trial of a group (its swept values, e.g. ``width=32, lr=0.1``) the group's colour, and its legend
one entry per group, the groups in numeric order (``width=32`` before ``width=128``). When nothing
is swept, each seed is its own group.

>>> from gdscope.studies.table import TrialRecord
>>> def trial(width, seed):
...     config = {"model.width": width, "seed": seed}
...     return TrialRecord(hash=f"{width}-{seed}", config=config, status="completed", series={})
>>> found = of([trial(w, s) for w in (128, 32) for s in (1, 0)], ["model.width"])
>>> [(g.label, [r.hash for r in g.records]) for g in found]
[('width=32', ['32-0', '32-1']), ('width=128', ['128-0', '128-1'])]
>>> [g.label for g in of([trial(8, 1), trial(8, 0)], [])]
['seed=0', 'seed=1']
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from gdscope.report import canvas, labels
from gdscope.studies.table import TrialRecord


@dataclass(frozen=True)
class Group:
    """The trials of one group and the group's legend label."""

    label: str
    records: list[TrialRecord]


def of(records: Sequence[TrialRecord], axes: Sequence[str]) -> list[Group]:
    """Group ``records`` by their values of ``axes`` (seeds apart), groups and seeds in numeric order."""
    ordered = sorted(records, key=labels.record_order(axes))
    found: dict[str, list[TrialRecord]] = {}
    for record in ordered:
        found.setdefault(labels.group(record, axes), []).append(record)
    if len(found) == 1 and len(ordered) > 1:  # nothing swept: the seeds are the groups
        found = {}
        for record in ordered:
            found.setdefault(_seed(record), []).append(record)
    return [Group(label or "all trials", members) for label, members in found.items()]


def thin(found: Sequence[Group], limit: int) -> list[Group]:
    """Keep at most ``limit`` trials: as many per group as fit, evenly spaced, every group kept.

    With more groups than ``limit``, ``limit`` groups evenly spaced (first and last kept), one
    trial each.

    >>> from gdscope.studies.table import TrialRecord
    >>> rows = [TrialRecord(hash=str(i), config={}, status="completed", series={}) for i in range(4)]
    >>> kept = thin([Group("a", rows), Group("b", rows[:2])], limit=4)
    >>> [(g.label, [r.hash for r in g.records]) for g in kept]
    [('a', ['0', '3']), ('b', ['0', '1'])]
    """
    if sum(len(g.records) for g in found) <= limit:
        return list(found)
    kept = canvas.thin(found, limit)
    each = max(1, limit // len(kept))
    return [Group(g.label, canvas.thin(g.records, each)) for g in kept]


def _seed(record: TrialRecord) -> str:
    seed = record.config.get("seed")
    return f"seed={labels.config_value(seed)}" if seed is not None else f"trial {record.hash[:8]}"
