"""Damage a store can suffer outside gdscope: finished trials whose series are gone.

Every finished trial (a status of ``FINISHED``) records at least its loss, so a finished trial
with no ``series`` row at all lost them: its rows were deleted, or the whole ``series`` table was
dropped (a writable store recreates the table's schema when it opens; a read-only one reads it as
empty, :func:`shadow_missing_tables`). Such a trial is *damaged*: it is not counted as done
(``Store.finished_hashes`` leaves it out and warns with :class:`StoreDamaged`, one line saying how
many trials of which study lack their series), so the next run of its study trains it again, and
``Store.record_trial`` replaces its rows (and only those). Monitored runs (``gs.monitor``) may
legitimately end with no series and are never damaged.
"""

from __future__ import annotations

import json
import re
import sqlite3
import warnings
from collections.abc import Iterable
from pathlib import Path

from gdscope.store.schema import FINISHED, MONITOR_KIND, SCHEMA

_LACKS_SERIES = (
    "t.status IN ({marks}) AND (t.kind IS NULL OR t.kind != ?) "
    "AND NOT EXISTS (SELECT 1 FROM series s WHERE s.trial_hash = t.hash)"
).format(marks=", ".join("?" * len(FINISHED)))
_ARGS = (*FINISHED, MONITOR_KIND)
_TABLE = re.compile(r"CREATE TABLE IF NOT EXISTS (\w+)")
_SHOWN = 4
"""How many studies the warning names before it says how many more there are."""


class StoreDamaged(UserWarning):
    """A store holds finished trials without their series; the next run reruns them."""


def damaged_hashes(conn: sqlite3.Connection, *, warn: Path | None = None) -> set[str]:
    """Return the hashes of finished trials that have no series row (see the module).

    With ``warn`` (the store's path), also warn (:class:`StoreDamaged`) when there are any.
    """
    rows = conn.execute(f"SELECT t.hash FROM trials t WHERE {_LACKS_SERIES}", _ARGS)
    found = {row[0] for row in rows}
    if found and warn is not None:
        warnings.warn(message(warn, damaged_counts(conn, found)), StoreDamaged, stacklevel=3)
    return found


def replaceable(conn: sqlite3.Connection, digest: str) -> bool:
    """Whether recording trial ``digest`` writes it: not stored, or stored failed or damaged."""
    stored = conn.execute("SELECT status FROM trials WHERE hash = ?", (digest,)).fetchone()
    return stored is None or stored[0] not in FINISHED or lacks_series(conn, digest)


def lacks_series(conn: sqlite3.Connection, digest: str) -> bool:
    """Whether the stored finished trial ``digest`` is damaged (has no series row)."""
    row = conn.execute(
        f"SELECT 1 FROM trials t WHERE t.hash = ? AND {_LACKS_SERIES}", (digest, *_ARGS)
    ).fetchone()
    return row is not None


def damaged_counts(conn: sqlite3.Connection, hashes: Iterable[str]) -> dict[tuple[str, str], int]:
    """Return ``{(study, scale): damaged trials}``, sorted; ``hashes`` from :func:`damaged_hashes`.

    A trial counts for every study it is linked to, or else for the study that stored it.
    """
    chosen = json.dumps(sorted(hashes))
    linked: dict[str, set[tuple[str, str]]] = {}
    for study, scale, digest in conn.execute(
        "SELECT study, scale, hash FROM study_trials WHERE hash IN (SELECT value FROM json_each(?))",
        (chosen,),
    ):
        linked.setdefault(digest, set()).add((study, scale))
    counts: dict[tuple[str, str], int] = {}
    for digest, study, scale in conn.execute(
        "SELECT hash, study, scale FROM trials WHERE hash IN (SELECT value FROM json_each(?))",
        (chosen,),
    ):
        for key in linked.get(digest) or {(study, scale)}:
            counts[key] = counts.get(key, 0) + 1
    return dict(sorted(counts.items()))


def message(path: Path, counts: dict[tuple[str, str], int]) -> str:
    """Word the warning in one line: how many trials of which study lack their series."""
    items = list(counts.items())
    parts = [
        f"{n} {'trial' if n == 1 else 'trials'} of {study} ({scale})"
        for (study, scale), n in items[:_SHOWN]
    ]
    if len(items) > _SHOWN:
        rest = sum(n for _, n in items[_SHOWN:])
        parts.append(f"{rest} of {len(items) - _SHOWN} more studies")
    listed = parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]
    return (
        f"{path} is damaged: finished trials lack their series (deleted rows or a dropped "
        f"table): {listed}; they will be rerun (the next "
        "gdscope run of their study trains them again and replaces their rows)"
    )


def shadow_missing_tables(conn: sqlite3.Connection) -> None:
    """On a read-only connection to a store, stand an empty TEMP table in for each missing one.

    A dropped table (``series``, say) then reads as empty instead of failing every query; the
    file itself is not written (a writable open recreates the table instead). A database that is
    no gdscope store (no ``schema_version`` table) is left as it is, for the caller to refuse.
    """
    tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    if "schema_version" not in tables:
        return
    for statement in SCHEMA.split(";"):
        found = _TABLE.search(statement)
        if found is not None and found.group(1) not in tables:
            conn.execute(statement.replace("CREATE TABLE", "CREATE TEMP TABLE", 1))
