"""Export a results store as one long-form table: every recorded number with its trial's config.

One row per (study, scale, trial, metric, step), and one row with empty ``metric, step, value``
for a trial that recorded nothing (a failed trial): the columns are ``study, scale, hash, status``,
then the trial config flattened to dotted keys (``model.width``, ``optimizer.lr``, ...; the union
over the exported trials, empty where a trial lacks a key), then ``metric, step, value``. This is
the "tidy" form of Wickham (2014), *Tidy data*, J. Stat. Software 59(10): a researcher groups by
config columns and pivots on ``metric`` in pandas, R or a spreadsheet.

``write_csv`` needs only the standard library (a stored NaN or ±inf is written as ``nan`` /
``inf``; list- or dict-valued config entries as JSON); ``to_pandas`` and ``write_parquet`` need the
``export`` extra (pandas, pyarrow). A trial linked to two studies appears once per study. A config
is read in the current stored form (:func:`gdscope.store.rows.read_config`: a field the user's code
never read is empty, whichever gdscope stored it). Nothing here imports torch.
"""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Callable, Iterator
from contextlib import closing
from pathlib import Path
from typing import IO, Any, Protocol

from gdscope._output import check_target, replacing
from gdscope.store.connection import open_connection
from gdscope.store.rows import read_config
from gdscope.studies.table import flatten_config


class StoreFiles(Protocol):
    """What the export reads of a :class:`~gdscope.store.Store`: its SQLite file and folder.

    (A protocol, not the class: the store imports this module for ``Store.to_pandas``.)
    """

    path: Path
    directory: Path


__all__ = [
    "LEAD_COLUMNS",
    "SERIES_COLUMNS",
    "VERDICT_COLUMNS",
    "long_form",
    "to_pandas",
    "write_csv",
    "write_parquet",
    "write_verdicts",
]

LEAD_COLUMNS = ("study", "scale", "hash", "status")
SERIES_COLUMNS = ("metric", "step", "value")
VERDICT_COLUMNS = ("study", "scale", "claim_id", "status", "statistic", "ci_lo", "ci_hi")
VERDICT_COLUMNS += ("band_lo", "band_hi", "n_points", "reason", "reference", "judged_at")


def long_form(
    store: StoreFiles, study: str | None = None
) -> tuple[list[str], Iterator[tuple[Any, ...]]]:
    """Return the column names and an iterator over the rows of the long-form table.

    Args:
        store: the results store.
        study: only this study's trials (stored or linked for it); default all studies.

    Raises:
        ValueError: ``study`` names no stored study (the message lists the stored ones).

    """
    conn = open_connection(store.path, read_only=True)  # an export never writes the store
    try:
        conn.execute("BEGIN")  # one read snapshot for the trial list and every series
        names = sorted({row[0] for row in conn.execute("SELECT name FROM studies")})
        if study is not None and study not in names:
            stored = ", ".join(names) or "none"
            raise ValueError(f"study={study!r} is not in {store.directory} (stored: {stored})")
        where, args = ("WHERE m.study = ?", (study,)) if study is not None else ("", ())
        members = conn.execute(
            "SELECT m.study, m.scale, t.hash, t.status, t.config_json FROM study_trials m "
            f"JOIN trials t ON t.hash = m.hash {where} ORDER BY m.study, m.scale, t.hash",
            args,
        ).fetchall()
    except BaseException:
        conn.close()
        raise
    configs = {hash: flatten_config(read_config(config)) for _, _, hash, _, config in members}
    keys = sorted({key for config in configs.values() for key in config})
    columns = [*LEAD_COLUMNS, *keys, *SERIES_COLUMNS]

    def rows() -> Iterator[tuple[Any, ...]]:
        with closing(conn):
            for name, scale, hash, status, _ in members:
                config = configs[hash]
                lead = (name, scale, hash, status, *(config.get(key) for key in keys))
                points = conn.execute(
                    "SELECT metric, step, value FROM series WHERE trial_hash = ? "
                    "ORDER BY metric, step",
                    (hash,),
                ).fetchall()
                if not points:  # a failed trial (or one that recorded nothing) still shows
                    yield (*lead, None, None, None)
                for metric, step, value in points:
                    yield (*lead, metric, step, math.nan if value is None else value)

    return columns, rows()


def write_csv(store: StoreFiles, out: IO[str] | str | Path, study: str | None = None) -> int:
    """Write the long-form table as CSV to a path (parents created) or an open text stream.

    A path is written through :func:`gdscope._output.replacing` (never the store, never half a
    file). Returns the number of data rows written.
    """
    return _csv_to(out, "--csv", lambda: long_form(store, study))


def _write_csv(handle: IO[str], columns: list[str], rows: Iterator[tuple[Any, ...]]) -> int:
    writer = csv.writer(handle, lineterminator="\n")
    writer.writerow(columns)
    count = 0
    for row in rows:
        writer.writerow([_cell(value) for value in row])
        count += 1
    return count


def _cell(value: Any) -> Any:
    """CSV text of one value: empty for missing, JSON for lists and dicts, repr-exact floats."""
    if value is None:
        return ""
    if isinstance(value, list | dict):
        return json.dumps(value, sort_keys=True)
    if isinstance(value, float):
        return repr(value)
    return value


def to_pandas(store: StoreFiles, study: str | None = None) -> Any:
    """Return the long-form table as a ``pandas.DataFrame`` (``value`` float64, NaN kept).

    Raises:
        ImportError: pandas is not installed (``pip install 'gdscope[export]'``).

    """
    pd = _require("pandas", "Store.to_pandas")
    columns, rows = long_form(store, study)
    frame = pd.DataFrame.from_records(list(rows), columns=columns)
    frame["value"] = frame["value"].astype("float64")  # missing (failed trial): NaN
    frame["step"] = frame["step"].astype("Int64")  # nullable: missing for a failed trial
    return frame


def write_parquet(store: StoreFiles, path: str | Path, study: str | None = None) -> int:
    """Write the long-form table as a Parquet file (parents created); return the row count.

    A config column whose values are lists or dicts, or of mixed types (``optimizer.lr`` is a
    number in one trial and ``"auto_kernel"`` in another), is stored as JSON text so every column
    has one type.

    Raises:
        ImportError: pandas or pyarrow is not installed (``pip install 'gdscope[export]'``).

    """
    _require("pyarrow", "export --parquet")
    check_target(path, "--parquet")
    frame = to_pandas(store, study)
    for column in frame.columns[len(LEAD_COLUMNS) : -len(SERIES_COLUMNS)]:
        kinds = {_kind(v) for v in frame[column] if v is not None and v == v}  # skip None, NaN
        if len(kinds) > 1 or kinds & {list, dict}:
            frame[column] = frame[column].map(_json_or_none)
    with replacing(path, "--parquet", binary=True) as handle:
        frame.to_parquet(handle, index=False)
    return len(frame)


def _kind(value: Any) -> type:
    """Return the Parquet kind of a config value: ints and floats are one kind (bools not)."""
    return float if isinstance(value, int | float) and not isinstance(value, bool) else type(value)


def _json_or_none(value: Any) -> str | None:
    return None if value is None else json.dumps(value, sort_keys=True)


def _require(module: str, what: str) -> Any:
    try:
        return __import__(module)
    except ImportError as err:
        raise ImportError(
            f"{what} needs {module}, which is not installed; `pip install 'gdscope[export]'`"
        ) from err


def write_verdicts(store: Any, out: IO[str] | str | Path) -> int:
    """Write the stored verdicts as CSV (one row per study, scale and claim); return the count.

    ``store`` is a :class:`~gdscope.store.Store` (its ``verdicts()``); a path is written through
    :func:`gdscope._output.replacing`.
    """

    def table() -> tuple[list[str], Iterator[tuple[Any, ...]]]:
        return list(VERDICT_COLUMNS), (_verdict_row(v) for v in store.verdicts())

    return _csv_to(out, "--verdicts", table)


def _verdict_row(verdict: dict[str, Any]) -> tuple[Any, ...]:
    ci, band = verdict.get("ci") or (None, None), verdict.get("band") or (None, None)
    values = {**verdict, "ci_lo": ci[0], "ci_hi": ci[1], "band_lo": band[0], "band_hi": band[1]}
    return tuple(values.get(column) for column in VERDICT_COLUMNS)


def _csv_to(
    out: IO[str] | str | Path,
    option: str,
    table: Callable[[], tuple[list[str], Iterator[tuple[Any, ...]]]],
) -> int:
    """Write ``table()`` as CSV to a stream, or to a path through ``replacing``; count the rows.

    A path is checked before ``table`` reads the store: the store may be the path named.
    """
    if isinstance(out, str | Path):
        check_target(out, option)
        columns, rows = table()
        with replacing(out, option) as handle:
            return _write_csv(handle, columns, rows)
    columns, rows = table()
    return _write_csv(out, columns, rows)
