"""Compare two results stores: the same trials, the same series bits and the same verdicts.

A refactor that changes structure but not results must leave a catalogue run's store the same;
``python -m gdscope.store.diff OLD NEW`` says whether it did and prints every difference. Compared:

* ``studies``: name, scale and stored spec;
* ``trials``: hash, first study, scale, config, kind, seed, status, reason, error and step count
  (not the wall time, provenance or finishing time, which differ between any two runs). Two
  configs of one hash are the same when one holds every key of the other with the same value:
  a store written before configs were stored validated kept only the keys the study file set,
  and the hash is that of the validated config; each is read in the current stored form
  (:func:`gdscope._stored_form.stored_form`: a field the user's code never read is ``null``,
  whether the store was written before those fields were marked or after);
* ``study_trials``: which trials each study links;
* ``series``: every ``(trial, metric, step)`` value, bit for bit (``NaN`` equals ``NaN``);
* ``verdicts``: every column but the judging time; the evidence is compared as JSON text.

Only :mod:`sqlite3`, numpy and gdscope's torch-free modules are used (stores are opened
read-only), so this runs without torch.

Example:
    >>> import tempfile
    >>> from gdscope.store import Store
    >>> a, b = tempfile.mkdtemp(), tempfile.mkdtemp()
    >>> _ = Store(a), Store(b)
    >>> diff_stores(a, b)
    []

"""

from __future__ import annotations

import argparse
import math
import sqlite3
import struct
import sys
from collections.abc import Iterator, Sequence
from contextlib import closing
from pathlib import Path
from typing import Any

from gdscope._output import stdout_broken, stdout_closed
from gdscope.store.rows import read_config
from gdscope.store.schema import DB_NAME
from gdscope.studies.table import flatten_config

__all__ = ["diff_stores", "main"]

# table -> (key columns, compared columns); anything not named (timestamps, wall times,
# provenance) is allowed to differ.
TABLES: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "studies": (("name", "scale"), ("spec_json",)),
    "trials": (
        ("hash",),
        ("study", "scale", "config_json", "kind", "seed", "status", "reason", "error", "steps"),
    ),
    "study_trials": (("study", "scale", "hash"), ()),
    "series": (("trial_hash", "metric", "step"), ("value",)),
    "verdicts": (
        ("study", "scale", "claim_id"),
        (
            "status",
            "statistic",
            "ci_lo",
            "ci_hi",
            "band_lo",
            "band_hi",
            "n_points",
            "reason",
            "evidence_json",
            "reference",
        ),
    ),
}


def diff_stores(old: str | Path, new: str | Path, *, limit: int = 20) -> list[str]:
    """Return one line per difference between the stores in directories ``old`` and ``new``.

    At most ``limit`` lines per table are listed, then a count of the rest. Empty: identical.
    """
    lines: list[str] = []
    with closing(_open(old)) as a, closing(_open(new)) as b:
        for table, (keys, values) in TABLES.items():
            rows_a, rows_b = _rows(a, table, keys, values), _rows(b, table, keys, values)
            found = list(_table_diff(table, keys, values, rows_a, rows_b))
            lines += found[:limit]
            if len(found) > limit:
                lines.append(f"{table}: … and {len(found) - limit} more differences")
    return lines


def _open(directory: str | Path) -> sqlite3.Connection:
    path = Path(directory) / DB_NAME
    if not path.is_file():
        raise FileNotFoundError(f"no gdscope store at {str(path)!r}; pass a results directory")
    return sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)


def _rows(
    conn: sqlite3.Connection, table: str, keys: Sequence[str], values: Sequence[str]
) -> dict[tuple[Any, ...], tuple[Any, ...]]:
    columns = ", ".join([*keys, *values])
    out = {}
    for row in conn.execute(f"SELECT {columns} FROM {table}"):  # the names are fixed above
        out[tuple(row[: len(keys)])] = tuple(_bits(v) for v in row[len(keys) :])
    return out


def _bits(value: Any) -> Any:
    """Floats by their bits (so ``NaN == NaN`` and ``-0.0 != 0.0``), the rest as they are."""
    if isinstance(value, float):
        bits = "nan:" + struct.pack("<d", value).hex() if math.isnan(value) else value.hex()
        return _Float(bits)
    return value


class _Float(str):
    """A float compared by its bits; shown as the number."""

    def __repr__(self) -> str:
        return repr(float.fromhex(self)) if not self.startswith("nan") else "nan"


def _table_diff(
    table: str,
    keys: Sequence[str],
    values: Sequence[str],
    a: dict[tuple[Any, ...], tuple[Any, ...]],
    b: dict[tuple[Any, ...], tuple[Any, ...]],
) -> Iterator[str]:
    for key in sorted(a.keys() | b.keys(), key=repr):
        name = f"{table} {dict(zip(keys, key, strict=True))}"
        if key not in b:
            yield f"{name}: only in the old store"
        elif key not in a:
            yield f"{name}: only in the new store"
        else:
            for column, x, y in zip(values, a[key], b[key], strict=True):
                if x != y and not (column == "config_json" and _same_config(x, y)):
                    yield f"{name}: {column} {_show(x)} → {_show(y)}"


def _same_config(x: str, y: str) -> bool:
    """Whether one config holds every key of the other with the same value (see the module)."""
    a, b = (flatten_config(read_config(text)) for text in (x, y))
    small, large = (a, b) if len(a) <= len(b) else (b, a)
    return all(k in large and large[k] == v for k, v in small.items())


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 120 else text[:117] + "…"


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m gdscope.store.diff OLD NEW``: print the differences; exit 1 if any, else 0.

    A reader that closes the output early (``| head``) ends it quietly with 141.
    """
    parser = argparse.ArgumentParser(prog="python -m gdscope.store.diff", description=__doc__)
    parser.add_argument("old", help="results directory of the reference store")
    parser.add_argument("new", help="results directory of the store to compare")
    parser.add_argument("--limit", type=int, default=20, help="differences listed per table")
    args = parser.parse_args(argv)
    try:
        lines = diff_stores(args.old, args.new, limit=args.limit)
    except (FileNotFoundError, sqlite3.DatabaseError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    try:
        for line in lines:
            print(line)
        sys.stdout.flush()  # what is still buffered fails here, not at exit
    except BrokenPipeError:  # the reader stopped early (| head): end quietly
        if not stdout_broken():
            raise
        return stdout_closed()
    print("identical" if not lines else f"{len(lines)} difference lines", file=sys.stderr)
    return 1 if lines else 0


if __name__ == "__main__":
    sys.exit(main())
