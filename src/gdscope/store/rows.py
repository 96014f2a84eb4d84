"""Row conversion of the results store: Python values to and from SQLite rows.

What :class:`gdscope.store.Store` writes and reads, as plain functions: the ``trials`` row and
series rows of a trial result (a ``Trace`` or a failure), the ``verdicts`` row of a verdict, the
``AND ...`` clauses selecting a study's trials, the statements that change a study's trials
(:func:`unlink`), and the JSON encoding of configs, specs and
provenance (NumPy values, tuples and pydantic models included). A stored config is read in the
current stored form (:func:`read_config`), whichever gdscope wrote it. Nothing here opens a
connection.
"""

from __future__ import annotations

import json
import math
import sqlite3
import traceback
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime, timezone
from itertools import groupby
from typing import TYPE_CHECKING, Any

import numpy as np

from gdscope._stored_form import stored_form
from gdscope.store.provenance import provenance
from gdscope.studies.table import TrialRecord, flatten_config

if TYPE_CHECKING:
    from gdscope.training import Trace


def unlink(
    conn: sqlite3.Connection, study: str, scale: str, hashes: Sequence[str] | None = None
) -> None:
    """Unlink ``hashes`` (default: every trial) from ``study``/``scale``; drop its verdicts there.

    The trials stay. The verdicts go because they judged the old membership: until the study is
    judged again, the report shows its claims as NOT JUDGED rather than a stale status.
    """
    if hashes is not None and not hashes:
        return
    where = "study = ? AND scale = ?"
    if hashes is None:
        conn.execute(f"DELETE FROM study_trials WHERE {where}", (study, scale))
    else:
        rows = [(study, scale, digest) for digest in hashes]
        conn.executemany(f"DELETE FROM study_trials WHERE {where} AND hash = ?", rows)
    conn.execute(f"DELETE FROM verdicts WHERE {where}", (study, scale))


def read_config(text: str) -> dict[str, Any]:
    """Parse a stored config (``config_json``) in the current stored form.

    A store written before unread fields were marked ``null`` holds their values (``model.width
    = 256`` of a custom model) under the same hash: read as ``null``, as a trial stored now says
    (:func:`gdscope._stored_form.stored_form`), so that a report or an export never mixes the two
    formats. The stored text is left as it is.
    """
    return stored_form(json.loads(text))


def membership(
    study: str | None, scale: str | None, hashes: Iterable[str] | None = None
) -> tuple[str, tuple[str, ...]]:
    """Return ``AND ...`` clauses selecting trials ``t`` of ``study``/``scale`` and ``hashes``."""
    if study is None and scale is not None:
        raise ValueError(f"scale={scale!r} given without a study; pass study= too")
    clauses, args = [], []
    if study is not None:
        scaled = " AND scale = ?" if scale is not None else ""
        clauses.append(f"t.hash IN (SELECT hash FROM study_trials WHERE study = ?{scaled})")
        args += [study] if scale is None else [study, scale]
    if hashes is not None:
        clauses.append("t.hash IN (SELECT value FROM json_each(?))")
        args.append(json.dumps(sorted(set(hashes))))
    return "".join(f" AND {clause}" for clause in clauses), tuple(args)


def trial_row(
    hash: str,
    study: str,
    scale: str,
    config: Mapping[str, Any],
    result: Trace | BaseException | str,
    prov: Mapping[str, Any],
) -> tuple[tuple[Any, ...], list[tuple[int, str, float]]]:
    """Return the ``trials`` row of a result and its series as ``(step, metric, value)`` rows."""
    head = (hash, study, scale, dumps(config), config.get("kind"), config.get("seed"))
    tail = (dumps(prov), now())
    if isinstance(result, BaseException | str):
        error = result if isinstance(result, str) else _error_text(result)
        reason = error.strip().splitlines()[-1] if error.strip() else "failed"
        return (*head, "failed", reason, error, None, None, *tail), []
    rows = [(int(step), str(metric), float(value)) for step, metric, value in result.rows()]
    outcome = (result.status, result.reason, None, result.steps, result.wall_time_s)
    return (*head, *outcome, *tail), rows


def verdict_row(study: str, scale: str, v: Any, judged_at: str) -> tuple[Any, ...]:
    """Return the ``verdicts`` row of a duck-typed verdict."""
    numbers = (_real(v.statistic), *_pair(v.ci), *_pair(v.band), v.n_points)
    text = (v.reason or "", dumps(v.evidence or []), v.reference, judged_at)
    return (study, scale, v.claim_id, v.status, *numbers, *text)


def _error_text(error: BaseException) -> str:
    """Return the traceback text of ``error`` (a remote traceback attribute wins if present)."""
    remote = getattr(error, "traceback", None)
    if isinstance(remote, str) and remote:
        return remote
    return "".join(traceback.format_exception(error))


def provenance_now() -> dict[str, Any]:
    """Return the provenance of this process (the default of ``Store.record_trial``)."""
    return provenance()


def now() -> str:
    """Return the current UTC time as ISO 8601 text, to the second."""
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _real(value: Any) -> float | None:
    return None if value is None else float(value)


def nan(value: float | None) -> float:
    """Return a stored number as a float, with NULL read back as NaN."""
    return math.nan if value is None else float(value)


def _pair(pair: Sequence[Any] | None) -> tuple[float | None, float | None]:
    if pair is None:
        return None, None
    lo, hi = pair
    return _real(lo), _real(hi)


def dumps(value: Any) -> str:
    """Return ``value`` as JSON text with sorted keys (NumPy, tuples, sets and models included)."""
    return json.dumps(value, sort_keys=True, default=_json_default)


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, tuple | set | frozenset):
        return list(value)
    if hasattr(value, "model_dump"):
        return value.model_dump(mode="json")
    return str(value)


def trial_records(
    trials: Sequence[tuple[Any, ...]],
    rows: Sequence[tuple[Any, ...]],
    own: Mapping[str, str],
) -> list[TrialRecord]:
    """Build ``TrialRecord`` objects from ``trials`` rows and their ``series`` rows.

    ``trials``: ``(hash, config_json, status, reason, error)``; ``rows``: ``(hash, metric, step,
    value)`` sorted by hash, metric and step; ``own``: ``{hash: config JSON}`` read instead of
    the stored config (either read by :func:`read_config`). Each series is ``(int64 steps,
    float64 values)``, NULL read back as NaN.
    """
    series: dict[str, dict[str, tuple[np.ndarray, np.ndarray]]] = {}
    for (digest, metric), group in groupby(rows, key=lambda r: (r[0], r[1])):
        points = list(group)
        steps = np.array([p[2] for p in points], dtype=np.int64)
        values = np.array([p[3] for p in points], dtype=np.float64)  # None -> NaN
        series.setdefault(digest, {})[metric] = (steps, values)
    return [
        TrialRecord(
            hash=digest,
            config=flatten_config(read_config(own.get(digest) or config)),
            status=status,
            series=series.get(digest, {}),
            reason=reason or error or "",
        )
        for digest, config, status, reason, error in trials
    ]


def verdict_dict(row: dict[str, Any]) -> dict[str, Any]:
    """Return a ``verdicts`` row with ``ci``/``band`` pairs, parsed ``evidence``, NULL as NaN."""
    row["statistic"] = nan(row["statistic"])
    row["ci"] = (nan(row.pop("ci_lo")), nan(row.pop("ci_hi")))
    row["band"] = (nan(row.pop("band_lo")), nan(row.pop("band_hi")))
    row["evidence"] = json.loads(row.pop("evidence_json"))
    return row
