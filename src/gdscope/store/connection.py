"""Connections to a store file, and opening it: create the schema, or only read an existing one.

A writable store is created if missing (WAL journal, the tables of :mod:`gdscope.store.schema`).
A read-only store (``show``, ``export``, ``report``, ``run --dry-run``, or ``verify`` on a folder
it cannot write) is opened so that nothing is ever written to it (``PRAGMA query_only``; SQLite's
``mode=ro`` where the user cannot write; ``immutable`` for a WAL store whose ``-shm`` file is
missing in a folder the user cannot write, which is exact when nobody writes it meanwhile); a
table missing from a read-only store (dropped outside gdscope) reads as empty, while a writable
open recreates it (:mod:`gdscope.store.damage`).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import closing, contextmanager
from pathlib import Path
from urllib.parse import quote

from gdscope.store.damage import shadow_missing_tables
from gdscope.store.lock import StoreError
from gdscope.store.schema import SCHEMA, SCHEMA_VERSION


@contextmanager
def connect(
    path: Path, *, write: bool = False, read_only: bool = False, snapshot: bool = False
) -> Iterator[sqlite3.Connection]:
    """Yield a new connection inside a :func:`transaction` (``write`` or ``snapshot``) or none."""
    with (
        closing(session(path, read_only=read_only)) as conn,
        transaction(conn, write=write, snapshot=snapshot),
    ):
        yield conn


def session(path: Path, *, read_only: bool = False) -> sqlite3.Connection:
    """Return a connection with the store's settings (foreign keys, busy timeout, synchronous).

    Foreign keys on, a 30 s busy timeout, and ``synchronous = NORMAL``, WAL's usual setting (a commit is not flushed to disk at once, so
    a power cut may lose the last trials, which a resumed run redoes; a crash of the process
    loses nothing and the store is never left inconsistent).

    A writer that records many trials keeps one (``Store.writer``): opening and closing a
    connection per trial costs more than the trial's rows (the WAL is checkpointed at each close).
    """
    conn = open_connection(path, read_only=read_only)
    conn.execute("PRAGMA foreign_keys = ON")
    conn.execute("PRAGMA busy_timeout = 30000")
    conn.execute("PRAGMA synchronous = NORMAL")
    return conn


@contextmanager
def transaction(
    conn: sqlite3.Connection, *, write: bool, snapshot: bool = False
) -> Iterator[sqlite3.Connection]:
    """Yield ``conn`` inside one transaction, committed at the end and rolled back on an error.

    ``write``: ``BEGIN IMMEDIATE`` (the write lock from the start); ``snapshot``: a read
    transaction, so that several reads see one state of the store; neither: no transaction. The
    connection's ``row_factory`` is restored afterwards, so a kept connection serves the next
    caller as it served this one.
    """
    factory = conn.row_factory
    try:
        if not (write or snapshot):
            yield conn
            return
        conn.execute("BEGIN IMMEDIATE" if write else "BEGIN")
        try:
            yield conn
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")
    finally:
        conn.row_factory = factory


def open_connection(path: Path, *, read_only: bool = False) -> sqlite3.Connection:
    """Return a new connection to the store file ``path``; with ``read_only``, one that never writes.

    A read-only connection is an ordinary one with ``PRAGMA query_only`` where SQLite can open
    the store so (it then manages the WAL's side files as a writer would, leaving none behind);
    where it cannot (a folder or file this user cannot write), SQLite's ``mode=ro``, and, for a
    WAL store without its ``-shm`` file, ``immutable``.
    """
    if not read_only:
        return sqlite3.connect(path, timeout=30.0, isolation_level=None)
    uri = f"file:{quote(str(path.resolve()))}"
    for suffix in ("?mode=rw", "?mode=ro", "?mode=ro&immutable=1"):
        conn = sqlite3.connect(uri + suffix, uri=True, timeout=30.0, isolation_level=None)
        try:
            conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
            shadow_missing_tables(conn)  # TEMP tables only: before query_only forbids them
            conn.execute("PRAGMA query_only = 1")
            return conn
        except sqlite3.OperationalError:  # cannot be opened this way here: try the next one
            conn.close()
    raise StoreError(f"{path} cannot be opened for reading by this user")


def open_store(path: Path, *, read_only: bool = False) -> None:
    """Create the tables if missing (WAL journal), or with ``read_only`` only check them.

    A file SQLite cannot read (``file is not a database``), an SQLite database with tables but
    no ``schema_version`` table (another program's), or a store of another schema version is
    refused (``StoreError``) before anything is written to it, and so is a store SQLite cannot
    open (locked past the busy timeout, unopenable, disk full), in one line naming the file.
    """
    try:
        with connect(path, read_only=read_only) as conn:
            tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master")}
            if tables and "schema_version" not in tables:
                raise _not_a_store(path, "no schema_version table")
            if read_only:
                _check_version(path, conn)
                return
            conn.execute("PRAGMA journal_mode = WAL")  # persistent in the file
        with connect(path, write=True) as conn:
            for statement in SCHEMA.split(";"):
                conn.execute(statement)
            _check_version(path, conn, write=True)
    except sqlite3.OperationalError as err:  # locked, unopenable, disk full: one line
        raise StoreError(f"{path}: cannot open the store ({err})") from None
    except sqlite3.DatabaseError as err:
        raise _not_a_store(path, str(err)) from None


def _not_a_store(path: Path, why: str) -> StoreError:
    return StoreError(
        f"{path} is not a gdscope store ({why}); move it away or use another --results DIR"
    )


def _check_version(path: Path, conn: sqlite3.Connection, *, write: bool = False) -> None:
    """Refuse a store of another schema version; with ``write``, stamp a new store's version."""
    versions = [row[0] for row in conn.execute("SELECT version FROM schema_version")]
    if not versions:
        if write:
            conn.execute("INSERT INTO schema_version VALUES (?)", (SCHEMA_VERSION,))
    elif max(versions) != SCHEMA_VERSION:
        raise StoreError(
            f"{path} has store schema version {max(versions)} but this gdscope "
            f"reads version {SCHEMA_VERSION}; use the gdscope that wrote it or a new "
            "--results directory"
        )
