"""The results store (SQLite, no torch): write trials and verdicts, read them back, export them.

* :class:`Store` (:mod:`~gdscope.store.database`): one SQLite file per results directory, the
  source of truth of every study; crash-safe writes under an exclusive lock
  (:mod:`~gdscope.store.lock`); values to and from rows in :mod:`~gdscope.store.rows`, with the
  machine's :func:`~gdscope.store.provenance.provenance`.
* :mod:`~gdscope.store.export`: the long-form table (CSV, pandas, Parquet).
* :mod:`~gdscope.store.judging`: a study's claims judged on its stored (or linked) trials.
* :mod:`~gdscope.store.runs`: monitored runs of a user's own training loop (``gdscope.monitor``),
  written while they run, kept apart from the studies.
* :mod:`~gdscope.store.damage`: finished trials that lost their series (reported with
  :class:`StoreDamaged`, not counted as done, rerun).
* :mod:`~gdscope.store.diff`: are two stores the same, bit for bit?
  (``python -m gdscope.store.diff OLD NEW``)
"""

from gdscope.store import export
from gdscope.store.damage import StoreDamaged
from gdscope.store.database import DB_NAME, FINISHED, SCHEMA_VERSION, Store
from gdscope.store.lock import StoreBusy, StoreError
from gdscope.store.provenance import provenance

__all__ = [
    "DB_NAME",
    "FINISHED",
    "SCHEMA_VERSION",
    "Store",
    "StoreBusy",
    "StoreDamaged",
    "StoreError",
    "export",
    "provenance",
]
