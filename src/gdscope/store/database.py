"""The results store: one SQLite file per results directory, the source of truth of every study.

``Store(directory)`` keeps ``directory/gdscope.sqlite`` (stdlib ``sqlite3``, WAL journal, foreign
keys on) with the tables of :mod:`gdscope.store.schema`.

One transaction writes a trial row with all its series rows: a crash never leaves half a trial.
Recording a hash again is a no-op (unless the stored trial ``"failed"`` or lost its series: a rerun
replaces it): resuming a study is safe. Verdicts and reports are rebuilt from the store alone.

Writers of a run take ``Store.writer()``, an exclusive advisory lock on ``directory/.lock``, so two
``gdscope run`` processes never interleave in one results directory; readers need no lock. The
conversion of values to and from rows lives in :mod:`gdscope.store.rows`.
"""

from __future__ import annotations

import json
import os
import sqlite3
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gdscope.store import damage as _damage
from gdscope.store import lock as _lock
from gdscope.store import rows as _rows
from gdscope.store.connection import connect, open_store, session, transaction
from gdscope.store.lock import StoreBusy, StoreError
from gdscope.store.provenance import provenance
from gdscope.store.schema import DB_NAME, FINISHED, MONITOR_SCALE, SCHEMA_VERSION
from gdscope.studies.table import TrialRecord

if TYPE_CHECKING:
    from gdscope.training import Trace

__all__ = ["FINISHED", "SCHEMA_VERSION", "Store", "StoreBusy", "StoreError", "provenance"]


class Store:
    """The SQLite results store of one results directory.

    Every method opens and closes its own connection (inside :meth:`writer`, the one it keeps):
    outside ``writer`` a ``Store`` holds nothing open, needs no ``close()``, costs nothing to make.

    Args:
        directory: the results directory; created (with parents) if missing.
        create: if ``False``, the store must already exist (for readers such as ``verify``).
        read_only: open the existing store so that nothing is written to it
            (:func:`~gdscope.store.connection.open_connection`): for readers, and the only way
            to read a store in a folder this user cannot write. Writing raises.

    Raises:
        StoreError: ``directory`` is a file, the store is missing with ``create=False``, it
            was written by another gdscope (unknown schema version), or ``gdscope.sqlite`` is
            no gdscope store (not an SQLite file, or another program's database).

    """

    def __init__(
        self, directory: str | os.PathLike[str], *, create: bool = True, read_only: bool = False
    ) -> None:
        if not str(directory).strip():
            raise StoreError("the results directory is empty; give a folder, e.g. --results runs")
        self.directory = Path(directory)
        self.path = self.directory / DB_NAME
        self.read_only = read_only
        if self.directory.exists() and not self.directory.is_dir():
            raise StoreError(f"results path {self.directory} is a file; give a folder, e.g. runs")
        if (self.path.is_symlink() or self.path.exists()) and not self.path.is_file():
            raise StoreError(f"{self.path} is a broken link or not a file; move it away")
        if (read_only or not create) and not self.path.is_file():
            raise StoreError(
                f"no gdscope results in {self.directory} (no {DB_NAME}); "
                "run a study with --results DIR first"
            )
        if not read_only:
            self.directory.mkdir(parents=True, exist_ok=True)
        self._lock_fd: int | None = None
        self._lock_depth = 0
        self._session: sqlite3.Connection | None = None
        open_store(self.path, read_only=read_only)

    def __repr__(self) -> str:
        return f"Store({str(self.directory)!r})"

    # -- connections ------------------------------------------------------------------------

    @contextmanager
    def _connect(self, write: bool = False, snapshot: bool = False) -> Iterator[sqlite3.Connection]:
        """Yield a connection inside a write or ``snapshot`` (read) transaction, or none."""
        if write and self.read_only:
            raise StoreError(f"{self.path} is open read-only; nothing can be written to it")
        if self._session is not None:  # inside writer(): the connection it keeps
            with transaction(self._session, write=write, snapshot=snapshot) as conn:
                yield conn
            return
        with connect(self.path, write=write, read_only=self.read_only, snapshot=snapshot) as conn:
            yield conn

    # -- the write lock -----------------------------------------------------------------------

    @contextmanager
    def writer(self) -> Iterator[Store]:
        """Hold the exclusive write lock of the results directory while the block runs.

        The lock is an advisory ``flock`` on ``directory/.lock`` holding the owner's pid; it is
        released when the block ends or the process dies. Re-entrant within one ``Store``. While
        it is held, the store's reads and writes share one connection (one transaction each).

        Raises:
            StoreBusy: another process (or another ``Store`` object) holds the lock.

        """
        if self.read_only:
            raise StoreError(f"{self.path} is open read-only; nothing can be written to it")
        if self._lock_depth == 0:
            self._lock_fd = _lock.acquire(self.directory)
            try:
                self._session = session(self.path)
            except BaseException:
                _lock.release(self._lock_fd)
                self._lock_fd = None
                raise
        self._lock_depth += 1
        try:
            yield self
        finally:
            self._lock_depth -= 1
            if self._lock_depth == 0 and self._lock_fd is not None:
                if self._session is not None:
                    self._session.close()
                    self._session = None
                _lock.release(self._lock_fd)
                self._lock_fd = None

    # -- writing ------------------------------------------------------------------------------

    def record_study(
        self,
        name: str,
        scale: str,
        spec: Mapping[str, Any],
        hashes: Iterable[str] | None = None,
    ) -> list[dict[str, Any]]:
        """Store (or update) a study's spec; ``first_run`` is kept, ``last_run`` is now.

        A spec that differs from the stored one (another ``--set``) replaces it and, in the same
        transaction, unlinks every trial from ``name``/``scale``; so do trials not in ``hashes``
        (what the study expands to now: a user's factory code changed). The run then links the
        trials it expands to, so the membership never mixes two versions; the trials stay. A run
        killed in between leaves some unlinked; its rerun links them. Either change drops the
        study's verdicts at ``scale`` (:func:`~gdscope.store.rows.unlink`). Returns the configs
        of the trials unlinked for not being in ``hashes`` (as ``rows.read_config`` reads them).
        """
        now = _rows.now()
        text = _rows.dumps(spec)
        with self._connect(write=True) as conn:
            stored = conn.execute(
                "SELECT spec_json FROM studies WHERE name = ? AND scale = ?", (name, scale)
            ).fetchone()
            if stored is not None and stored[0] != text:
                _rows.unlink(conn, name, scale)
            conn.execute(
                "INSERT INTO studies VALUES (?, ?, ?, ?, ?) ON CONFLICT (name, scale) DO UPDATE "
                "SET spec_json = excluded.spec_json, last_run = excluded.last_run",
                (name, scale, text, now, now),
            )
            if hashes is None:
                return []
            keep = set(hashes)
            linked = conn.execute(
                "SELECT m.hash, t.config_json FROM study_trials m JOIN trials t ON t.hash = m.hash "
                "WHERE m.study = ? AND m.scale = ?",
                (name, scale),
            ).fetchall()
            stale = [(digest, config) for digest, config in linked if digest not in keep]
            _rows.unlink(conn, name, scale, [digest for digest, _ in stale])
        return [_rows.read_config(config) for _, config in stale]

    def record_trial(
        self,
        study: str,
        scale: str,
        config: Mapping[str, Any],
        hash: str,
        result: Trace | BaseException | str,
        *,
        provenance: Mapping[str, Any] | None = None,
    ) -> bool:
        """Store one finished trial and all its series in one transaction.

        Args:
            study: the study name the trial ran for.
            scale: the study scale (``"quick"``, ``"paper"``, ...).
            config: the trial config as a JSON-able dict (``model_dump(mode="json")``).
            hash: the config's content hash (the primary key).
            result: the trial's ``Trace``, or the exception (or error text) of a failed trial,
                stored with status ``"failed"`` and its traceback text as ``error``.
            provenance: where and with what the trial ran; default ``provenance()`` of this process.

        Returns:
            ``True`` if the trial was written, ``False`` if the hash was already stored as
            finished (the call then only links it to ``study``/``scale``); a finished trial that
            lost its series (:mod:`~gdscope.store.damage`) is replaced like a failed one.

        Raises:
            ValueError: the trace records one metric twice at the same step.

        """
        prov = provenance if provenance is not None else _rows.provenance_now()
        row, series = _rows.trial_row(hash, study, scale, config, result, prov)
        with self._connect(write=True) as conn:
            written = _damage.replaceable(conn, hash)
            if written:  # replacing a failed or damaged trial: keep the studies it is linked to
                links = conn.execute(
                    "SELECT study, scale, hash FROM study_trials WHERE hash = ?", (hash,)
                ).fetchall()
                conn.execute("DELETE FROM trials WHERE hash = ?", (hash,))  # cascades
                conn.execute(f"INSERT INTO trials VALUES ({', '.join('?' * len(row))})", row)
                conn.executemany("INSERT INTO study_trials VALUES (?, ?, ?)", links)
                try:
                    conn.executemany(
                        "INSERT INTO series VALUES (?, ?, ?, ?)",
                        ((hash, metric, step, value) for step, metric, value in series),
                    )
                except sqlite3.IntegrityError as err:
                    raise ValueError(
                        f"trial {hash[:12]}: a metric is recorded twice at one step ({err})"
                    ) from None
            conn.execute(
                "INSERT OR IGNORE INTO study_trials VALUES (?, ?, ?)", (study, scale, hash)
            )
        return written

    def link_trial(self, study: str, scale: str, hash: str) -> bool:
        """Count an already stored finished trial as part of ``study``/``scale`` (no rerun).

        Returns ``False`` (and links nothing) when the hash is not stored as finished.
        """
        with self._connect(write=True) as conn:
            stored = conn.execute("SELECT status FROM trials WHERE hash = ?", (hash,)).fetchone()
            if stored is None or stored[0] not in FINISHED:
                return False
            conn.execute(
                "INSERT OR IGNORE INTO study_trials VALUES (?, ?, ?)", (study, scale, hash)
            )
        return True

    def record_verdicts(self, study: str, scale: str, verdicts: Iterable[Any]) -> None:
        """Store verdicts, replacing earlier verdicts of the same claims.

        Each verdict needs the attributes ``claim_id, status, statistic, ci, band, n_points,
        reason, evidence, reference`` (``ci``/``band`` are ``(lo, hi)`` pairs or ``None``).
        """
        now = _rows.now()
        rows = [_rows.verdict_row(study, scale, verdict, now) for verdict in verdicts]
        with self._connect(write=True) as conn:
            conn.executemany(
                "INSERT OR REPLACE INTO verdicts VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                rows,
            )

    # -- reading ------------------------------------------------------------------------------

    def finished_hashes(self, study: str | None = None, scale: str | None = None) -> set[str]:
        """Return the hashes of finished trials (``FINISHED`` statuses), of all or of one study.

        A rerun that skips trials another study finished should ``link_trial`` them (or judge
        with ``records(hashes=...)``) so they count for its own study too. A finished trial
        without its series is damaged, not finished: it is left out, with a one-line
        :class:`~gdscope.store.damage.StoreDamaged` warning, so that a run trains it again.
        """
        where, args = _rows.membership(study, scale)
        marks = ", ".join("?" * len(FINISHED))
        with self._connect(snapshot=True) as conn:
            rows = conn.execute(
                f"SELECT t.hash FROM trials t WHERE t.status IN ({marks}) {where}",
                (*FINISHED, *args),
            )
            return {row[0] for row in rows} - _damage.damaged_hashes(conn, warn=self.path)

    def damaged(self) -> dict[tuple[str, str], int]:
        """Return ``{(study, scale): trials}`` of the finished trials without their series."""
        with self._connect(snapshot=True) as conn:
            return _damage.damaged_counts(conn, _damage.damaged_hashes(conn))

    def records(
        self,
        study: str | None = None,
        scale: str | None = None,
        *,
        hashes: Iterable[str] | None = None,
        configs: Mapping[str, Mapping[str, Any]] | None = None,
    ) -> list[TrialRecord]:
        """Return trials as ``TrialRecord`` objects, sorted by hash, failed ones included.

        Args:
            study: only trials stored or linked for this study (default: all).
            scale: only those of this scale of ``study``.
            hashes: only these trials, whichever study stored them (e.g. every trial a study
                expands to, including ones another study ran first).
            configs: ``{hash: config}`` read instead of the stored configs of those trials. A
                trial shared by two studies is stored once, with the config of the study that
                stored it first (which may leave a key at its default that the other one sets);
                a study judges it with its own config.

        ``config`` is flattened to dotted keys (as read back from JSON); each series is
        ``(int64 steps, float64 values)`` sorted by step, with stored NULLs (NaN) read back as NaN.

        """
        own = {digest: _rows.dumps(config) for digest, config in (configs or {}).items()}
        where, args = _rows.membership(study, scale, hashes)
        with self._connect(snapshot=True) as conn:  # one snapshot for both reads
            trials = conn.execute(
                f"SELECT hash, config_json, status, reason, error FROM trials t WHERE 1 {where} "
                "ORDER BY hash",
                args,
            ).fetchall()
            rows = conn.execute(
                "SELECT s.trial_hash, s.metric, s.step, s.value FROM series s "
                f"JOIN trials t ON t.hash = s.trial_hash WHERE 1 {where} "
                "ORDER BY s.trial_hash, s.metric, s.step",
                args,
            ).fetchall()
        return _rows.trial_records(trials, rows, own)

    def trials(self, study: str | None = None, scale: str | None = None) -> list[dict[str, Any]]:
        """Return trial rows as dicts (``config`` as ``rows.read_config`` reads it), by hash."""
        where, args = _rows.membership(study, scale)
        with self._connect() as conn:
            conn.row_factory = sqlite3.Row
            rows = conn.execute(f"SELECT * FROM trials t WHERE 1 {where} ORDER BY hash", args)
            out = [dict(row) for row in rows]
        for row in out:
            row["config"] = _rows.read_config(row.pop("config_json"))
            row["provenance"] = json.loads(row.pop("provenance_json"))
        return out

    def trial_counts(self) -> dict[tuple[str, str], dict[str, int]]:
        """Return ``{(study, scale): {status: trials}}`` over the trials linked to each study.

        A trial shared by two studies (or two scales) counts for each; sorted by study and scale.
        """
        counts: dict[tuple[str, str], dict[str, int]] = {}
        with self._connect() as conn:
            rows = conn.execute(
                "SELECT m.study, m.scale, t.status, COUNT(*) FROM study_trials m "
                "JOIN trials t ON t.hash = m.hash GROUP BY m.study, m.scale, t.status "
                "ORDER BY m.study, m.scale, t.status"
            )
            for study, scale, status, n in rows:
                counts.setdefault((study, scale), {})[status] = n
        return counts

    def studies(self, *, monitored: bool = False) -> list[dict[str, Any]]:
        """Return study rows as dicts (``spec`` parsed from JSON), sorted by name and scale.

        Monitored runs (scale ``"monitor"``, :mod:`gdscope.store.runs`) are no studies (no claims
        to judge, nothing to re-run) and are left out; ``monitored=True`` returns only them.
        """
        where = "scale = ?" if monitored else "scale != ?"
        with self._connect() as conn:
            conn.row_factory = sqlite3.Row
            query = f"SELECT * FROM studies WHERE {where} ORDER BY name, scale"
            rows = [dict(r) for r in conn.execute(query, (MONITOR_SCALE,))]
        for row in rows:
            row["spec"] = json.loads(row.pop("spec_json"))
        return rows

    def verdicts(self, study: str | None = None, scale: str | None = None) -> list[dict[str, Any]]:
        """Return stored verdicts as dicts with ``ci``/``band`` pairs and parsed ``evidence``.

        NULL numbers (NaN or missing) read back as NaN.
        """
        clauses = [(c, v) for c, v in (("study", study), ("scale", scale)) if v is not None]
        where = " AND ".join(f"{c} = ?" for c, _ in clauses) or "1"
        with self._connect() as conn:
            conn.row_factory = sqlite3.Row
            rows = conn.execute(
                f"SELECT * FROM verdicts WHERE {where} ORDER BY study, scale, claim_id",
                [v for _, v in clauses],
            )
            out = [dict(row) for row in rows]
        return [_rows.verdict_dict(row) for row in out]

    def to_pandas(self, study: str | None = None) -> Any:
        """Return every recorded number with its trial's flattened config as a DataFrame.

        The long form of :mod:`gdscope.store.export`: columns ``study, scale, hash, status``, the
        config keys, then ``metric, step, value``; one row per (study, trial, metric, step).
        Raises ``ImportError`` without pandas, ``ValueError`` for a study not stored here.
        """
        from gdscope.store.export import to_pandas

        return to_pandas(self, study)
