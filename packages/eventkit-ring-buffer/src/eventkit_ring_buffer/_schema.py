"""The file layout and how every connection to it is configured.

``counters`` keeps the row counts inside the same transactions that change them, so they are
exact after any crash and shared by every process that writes to the file.
"""

from __future__ import annotations

import os
import sqlite3
import time
import uuid

from eventkit_core import ConfigurationError, StorageError

SCHEMA_VERSION = 1

_DDL = (
    "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID",
    # Kept inside the transactions that change them: exact after any crash, shared by every
    # process. next_id only grows, so ids are never reused, even after deletes and reopen.
    "CREATE TABLE IF NOT EXISTS counters ("
    " one INTEGER PRIMARY KEY CHECK (one = 1), next_id INTEGER NOT NULL,"
    " unpublished INTEGER NOT NULL, unpublished_bytes INTEGER NOT NULL,"
    " retained INTEGER NOT NULL)",
    # Only unreleased rows: ordered reads are a primary-key range scan, no index to maintain.
    # Ids come from counters.next_id (AUTOINCREMENT would write sqlite_sequence's page too).
    "CREATE TABLE IF NOT EXISTS entries ("
    " id INTEGER PRIMARY KEY, payload BLOB NOT NULL, created_at REAL NOT NULL)",
    # Released rows kept for retention_seconds (empty when it is 0).
    "CREATE TABLE IF NOT EXISTS released ("
    " id INTEGER PRIMARY KEY, payload BLOB NOT NULL, created_at REAL NOT NULL,"
    " published_at REAL NOT NULL)",
    "CREATE INDEX IF NOT EXISTS released_published_at ON released(published_at)",
    "INSERT OR IGNORE INTO counters VALUES (1, 1, 0, 0, 0)",
)

SELECT_COUNTERS = "SELECT next_id, unpublished, unpublished_bytes, retained FROM counters"
# No RETURNING: in SQLite 3.40 it makes a small UPDATE several times slower.
UPDATE_COUNTERS = (
    "UPDATE counters SET next_id = ?, unpublished = ?, unpublished_bytes = ?, retained = ?"
)

Counters = tuple[int, int, int, int]
"""next id, unpublished, unpublished bytes, retained: the ``counters`` row."""

Counts = tuple[int, int, int, int]
"""rows, unpublished, unpublished bytes, last id: what the buffer reports."""


def counts(counters: Counters) -> Counts:
    next_id, unpublished, unpublished_bytes, retained = counters
    return unpublished + retained, unpublished, unpublished_bytes, next_id - 1


def connect(path: str, *, busy_timeout: float, synchronous: str) -> sqlite3.Connection:
    """A connection in WAL mode with explicit transactions (``isolation_level=None``)."""
    try:
        # Each connection stays on one thread; the flag only lets a crash test close it later.
        conn = sqlite3.connect(
            path, timeout=busy_timeout, isolation_level=None, check_same_thread=False
        )
    except sqlite3.Error as exc:
        raise StorageError(f"ring buffer {path}: cannot open ({exc}); check the path") from exc
    try:
        conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout * 1000)}")
        mode = _switch_to_wal(conn, busy_timeout)
        if str(mode).lower() != "wal":
            raise StorageError(f"ring buffer {path}: cannot switch to WAL mode (got {mode!r})")
        conn.execute(f"PRAGMA synchronous = {synchronous}")
    except BaseException as exc:
        conn.close()
        if isinstance(exc, sqlite3.DatabaseError):
            raise StorageError(
                f"ring buffer {path}: cannot open ({exc}); is it a ring-buffer SQLite file?"
            ) from exc
        raise
    return conn


def _switch_to_wal(conn: sqlite3.Connection, busy_timeout: float) -> object:
    deadline = time.monotonic() + busy_timeout
    while True:
        try:
            return conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        except sqlite3.OperationalError as exc:
            # Processes opening a new file at once: SQLite answers BUSY at once, without the
            # busy handler, to a connection whose wait could deadlock. Retry for busy_timeout.
            if getattr(exc, "sqlite_errorname", "") != "SQLITE_BUSY":
                raise
            if time.monotonic() >= deadline:
                raise
            time.sleep(0.001)


def initialise(conn: sqlite3.Connection, path: str) -> tuple[str, Counts]:
    """Create the tables if missing (one transaction: a crash leaves all or nothing)."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        for statement in _DDL:
            conn.execute(statement)
        conn.execute(
            "INSERT OR IGNORE INTO meta VALUES ('instance_id', ?), ('schema_version', ?)",
            (str(uuid.uuid4()), str(SCHEMA_VERSION)),
        )
        meta = dict(conn.execute("SELECT key, value FROM meta").fetchall())
        row: Counters = conn.execute(SELECT_COUNTERS).fetchone()
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    if int(meta["schema_version"]) > SCHEMA_VERSION:
        raise ConfigurationError(
            f"ring buffer {path} has schema version {meta['schema_version']}, newer than this"
            f" eventkit-ring-buffer understands ({SCHEMA_VERSION}): upgrade the package"
        )
    return str(meta["instance_id"]), counts(row)


def file_size(path: str) -> int:
    try:
        return os.stat(path).st_size
    except FileNotFoundError:
        return 0
