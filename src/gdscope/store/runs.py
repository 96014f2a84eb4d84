"""Monitored runs in the results store: a user's own training loop, recorded while it runs.

``gdscope.monitor`` (:class:`gdscope.training.monitor.Monitor`) writes through a
:class:`RunWriter`, into the tables every study uses (no new schema, no new version):

- one ``studies`` row ``(name = run, scale = "monitor")`` with the spec ``{"kind": "monitor",
  "name", "title", "description"}``: it groups the attempts of one run name. No study has the
  scale ``"monitor"`` (a study's scales are quick, paper and smoke), so the row is never taken
  for one: :meth:`Store.studies` leaves such rows out (``verify`` re-judges studies only, and
  never re-runs a monitored run) and ``Store.studies(monitored=True)`` reads them;
- one ``trials`` row per attempt, linked to that study row, of kind ``"monitor"``; its config
  says what ran (``run``, ``attempt``, the model class, its parameter count, the probe schedule,
  the probe set) and its hash is the canonical SHA-256 of that config (as
  :func:`gdscope.config.canonical_hash`). Its status is ``"running"`` while the run goes on,
  then ``completed``, ``diverged``, ``failed`` or ``interrupted``;
- its ``series`` rows, appended in transactions while the run goes on (a run killed outright
  keeps what was appended, with the status ``"running"``).

Nothing stored is ever replaced or deleted: a second run under the same name is a new attempt
(``attempt = 2``, its own trial), and a row ``(run, "monitor")`` that is not a monitored run's is
refused. Each write is one SQLite transaction on the run's own rows, so a monitor needs no
write lock and may record beside ``gdscope run`` or other monitors in the same directory.
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
from collections.abc import Mapping, Sequence
from typing import Any

from gdscope.store import rows as _rows
from gdscope.store.connection import connect
from gdscope.store.database import Store
from gdscope.store.lock import StoreError
from gdscope.store.schema import MONITOR_KIND, MONITOR_SCALE

__all__ = ["RUNNING", "RunWriter", "run_spec"]

RUNNING = "running"
"""The status of a monitored run that has not ended (or whose process was killed)."""


def run_spec(run: str) -> dict[str, str]:
    """Return the ``studies`` spec of the monitored run ``run`` (the same for every attempt).

    >>> run_spec("my-run")["kind"]
    'monitor'
    """
    return {
        "kind": MONITOR_KIND,
        "name": run,
        "title": f"Monitored training run {run!r}",
        "description": (
            "A training loop of the user's own, measured by gdscope.monitor with gdscope's "
            "scheduled probes on a fixed probe set; one trial per attempt under this name."
        ),
    }


def config_hash(config: Mapping[str, Any]) -> str:
    """SHA-256 of the canonical JSON of ``config`` (sorted keys, no spaces).

    >>> config_hash({"b": 1, "a": 2}) == config_hash({"a": 2, "b": 1})
    True
    """
    canonical = json.dumps(config, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


class RunWriter:
    """Write one monitored run into the store of ``results``: ``begin``, ``append``, ``finish``.

    Nothing is opened or written until :meth:`begin`, which creates the store if missing.

    Args:
        results: the results directory (as ``gdscope run --results``).

    """

    def __init__(self, results: str | os.PathLike[str]) -> None:
        self.results = results
        self.store: Store | None = None
        self.hash: str | None = None

    def begin(self, config: Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
        """Store a new attempt of the run ``config["run"]``; return its hash and stored config.

        In one transaction: the run's ``studies`` row (created, or its ``last_run`` updated),
        the next attempt number, and the attempt's ``trials`` row (status ``"running"``) linked
        to it.

        Raises:
            StoreError: the results directory holds no usable store, or a ``(run, "monitor")``
                row there is not a monitored run's.

        """
        if self.hash is not None:
            raise StoreError(f"run {config.get('run')!r} has begun already (trial {self.hash})")
        run = str(config["run"])
        store = Store(self.results)
        now = _rows.now()
        with connect(store.path, write=True) as conn:
            stored = conn.execute(
                "SELECT spec_json FROM studies WHERE name = ? AND scale = ?", (run, MONITOR_SCALE)
            ).fetchone()
            if stored is not None and json.loads(stored[0]).get("kind") != MONITOR_KIND:
                raise StoreError(
                    f"run={run!r}: {store.directory} holds a study {run!r} at scale "
                    f"{MONITOR_SCALE!r} that is no monitored run; choose another run name"
                )
            conn.execute(
                "INSERT INTO studies VALUES (?, ?, ?, ?, ?) ON CONFLICT (name, scale) DO UPDATE "
                "SET last_run = excluded.last_run",
                (run, MONITOR_SCALE, _rows.dumps(run_spec(run)), now, now),
            )
            last = conn.execute(
                "SELECT MAX(json_extract(t.config_json, '$.attempt')) FROM trials t "
                "JOIN study_trials m ON m.hash = t.hash WHERE m.study = ? AND m.scale = ?",
                (run, MONITOR_SCALE),
            ).fetchone()[0]
            stored_config = {**config, "attempt": int(last or 0) + 1}
            digest = config_hash(stored_config)
            row = (digest, run, MONITOR_SCALE, _rows.dumps(stored_config), MONITOR_KIND, None)
            row += (RUNNING, f"running since {now}", None, None, None)
            row += (_rows.dumps(_rows.provenance_now()), now)
            conn.execute(f"INSERT INTO trials VALUES ({', '.join('?' * len(row))})", row)
            conn.execute("INSERT INTO study_trials VALUES (?, ?, ?)", (run, MONITOR_SCALE, digest))
        self.store, self.hash = store, digest
        return digest, stored_config

    def append(self, rows: Sequence[tuple[int, str, float]]) -> None:
        """Append ``(step, metric, value)`` rows to the run's series (one transaction).

        Raises:
            ValueError: a metric already stored at one of those steps.

        """
        store, digest = self._begun()
        with connect(store.path, write=True) as conn:
            try:
                conn.executemany(
                    "INSERT INTO series VALUES (?, ?, ?, ?)",
                    (
                        (digest, str(metric), int(step), float(value))
                        for step, metric, value in rows
                    ),
                )
            except sqlite3.IntegrityError as err:
                raise ValueError(
                    f"run trial {digest[:12]}: a metric is recorded twice at one step ({err})"
                ) from None

    def finish(
        self, status: str, reason: str, error: str | None, steps: int | None, wall_time_s: float
    ) -> None:
        """Record how the run ended: its status, reason, error text, last step and wall time."""
        store, digest = self._begun()
        with connect(store.path, write=True) as conn:
            conn.execute(
                "UPDATE trials SET status = ?, reason = ?, error = ?, steps = ?, "
                "wall_time_s = ?, finished_at = ? WHERE hash = ? AND status = ?",
                (status, reason, error, steps, wall_time_s, _rows.now(), digest, RUNNING),
            )

    def _begun(self) -> tuple[Store, str]:
        if self.store is None or self.hash is None:
            raise StoreError("the monitored run has not begun; call begin(config) first")
        return self.store, self.hash
