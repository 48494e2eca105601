"""Reads on their own thread and connection: never blocking the loop nor the writer.

Every read is one statement in autocommit mode, so its snapshot ends with the statement and
never pins the WAL against checkpoints.
"""

from __future__ import annotations

import sqlite3
from concurrent.futures import ThreadPoolExecutor
from itertools import starmap

import msgspec

from eventkit_ring_buffer import _schema


class Entry(msgspec.Struct, frozen=True, gc=False):
    """One unreleased entry, as read back."""

    id: int
    payload: bytes
    #: Unix time of the commit that wrote it.
    created_at: float


class RingBufferStats(msgspec.Struct, frozen=True, kw_only=True):
    """A snapshot of the buffer (exact: read from the file, covers every process)."""

    #: Rows in the file: unreleased plus released ones still kept by ``retention_seconds``.
    size: int
    #: Unreleased entries (bounded by ``max_entries``).
    unpublished: int
    #: Payload bytes of the unreleased entries (bounded by ``max_bytes``).
    bytes: int
    #: The highest id ever given (0 when none yet); the next one is larger.
    last_id: int
    max_entries: int
    max_bytes: int
    #: Size on disk of the database file and of its write-ahead log.
    db_bytes: int
    wal_bytes: int


_SELECT_UNPUBLISHED = "SELECT id, payload, created_at FROM entries WHERE id > ? ORDER BY id LIMIT ?"


class Reader:
    def __init__(self, path: str, busy_timeout: float, synchronous: str) -> None:
        self._path = path
        self._busy_timeout = busy_timeout
        self._synchronous = synchronous
        self._conn: sqlite3.Connection | None = None
        self.pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ringbuffer-reader")

    def _connection(self) -> sqlite3.Connection:
        if self._conn is None:
            conn = _schema.connect(
                self._path, busy_timeout=self._busy_timeout, synchronous=self._synchronous
            )
            conn.execute("PRAGMA query_only = 1")
            self._conn = conn
        return self._conn

    def read_unpublished(self, after_id: int, limit: int) -> list[Entry]:
        rows = self._connection().execute(_SELECT_UNPUBLISHED, (after_id, limit)).fetchall()
        return list(starmap(Entry, rows))

    def stats(self, max_entries: int, max_bytes: int) -> RingBufferStats:
        rows, unpublished, nbytes, last_id = _schema.counts(
            self._connection().execute(_schema.SELECT_COUNTERS).fetchone()
        )
        return RingBufferStats(
            size=rows,
            unpublished=unpublished,
            bytes=nbytes,
            last_id=last_id,
            max_entries=max_entries,
            max_bytes=max_bytes,
            db_bytes=_schema.file_size(self._path),
            wal_bytes=_schema.file_size(self._path + "-wal"),
        )

    def close(self, abandon: list[sqlite3.Connection] | None = None) -> None:
        if self._conn is not None:
            if abandon is None:
                self._conn.close()
            else:
                abandon.append(self._conn)
            self._conn = None
