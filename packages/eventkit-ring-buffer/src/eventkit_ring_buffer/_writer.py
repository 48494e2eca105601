"""The writer thread: the one place that writes to the file from this process.

Callers put jobs on a queue; the thread drains everything pending into ONE ``BEGIN IMMEDIATE
... COMMIT`` (group commit) and hands all outcomes back to the event loop in one callback. It
also runs maintenance between batches: retention deletes and WAL checkpoints.
"""

from __future__ import annotations

import concurrent.futures
import queue
import sqlite3
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from itertools import repeat
from typing import Any

import msgspec
from eventkit_core import BackpressureError, StorageError

from eventkit_ring_buffer import _schema
from eventkit_ring_buffer._metrics import Instruments
from eventkit_ring_buffer.errors import RingBufferFullError

APPEND, APPEND_MANY, RELEASE_IDS, RELEASE_RANGE, STOP, ABANDON = range(6)

Job = tuple[int, Any, Any, int]
"""(op, argument, asyncio future, payload bytes)."""

Deliver = Callable[[list[Any], list[Any], "_schema.Counts | None", int, int], None]
"""(futures, results or exceptions, new counts, appended entries done, their bytes)."""

_INSERT = "INSERT INTO entries (payload, created_at) VALUES (?, ?)"
_IDS = "id IN (SELECT value FROM json_each(?)) AND published_at IS NULL"
_RANGE = "id BETWEEN ? AND ? AND published_at IS NULL"
_UPDATE_COUNTS = (
    "UPDATE counters SET rows = ?, unpublished = ?, unpublished_bytes = ?"
    " RETURNING rows, unpublished, unpublished_bytes,"
    " coalesce((SELECT seq FROM sqlite_sequence WHERE name = 'entries'), 0)"
)
_RETENTION_BATCH = 10_000
_json = msgspec.json.Encoder()


@dataclass(frozen=True)
class Settings:
    path: str
    synchronous: str
    max_entries: int
    max_bytes: int
    retention_seconds: float
    busy_timeout: float
    checkpoint_interval: float
    wal_size_limit: int
    retry_after: float


class Writer:
    def __init__(self, settings: Settings, deliver: Deliver, metrics: Instruments) -> None:
        self.settings = settings
        self.queue: queue.SimpleQueue[Job] = queue.SimpleQueue()
        self.ready: concurrent.futures.Future[tuple[str, _schema.Counts]] = (
            concurrent.futures.Future()
        )
        #: Connections left open by :meth:`abandon` (tests close them).
        self.abandoned: list[sqlite3.Connection] = []
        self.pragmas: dict[str, Any] = {}
        self._deliver = deliver
        self._metrics = metrics
        self._conn: sqlite3.Connection | None = None
        self._thread = threading.Thread(target=self._run, name="ringbuffer-writer", daemon=True)
        self._next_maintenance = 0.0

    def start(self) -> concurrent.futures.Future[tuple[str, _schema.Counts]]:
        self._thread.start()
        return self.ready

    def join(self, timeout: float | None = None) -> None:
        self._thread.join(timeout)

    # -- thread ---------------------------------------------------------------------------

    def _run(self) -> None:
        s = self.settings
        try:
            conn = _schema.connect(s.path, busy_timeout=s.busy_timeout, synchronous=s.synchronous)
            conn.execute(f"PRAGMA journal_size_limit = {s.wal_size_limit}")
            self.pragmas = {
                name: conn.execute(f"PRAGMA {name}").fetchone()[0]
                for name in ("journal_mode", "synchronous", "journal_size_limit", "busy_timeout")
            }
            self.ready.set_result(_schema.initialise(conn, s.path))
        except BaseException as exc:
            self.ready.set_exception(exc)
            return
        self._conn = conn
        self._next_maintenance = time.monotonic() + s.checkpoint_interval
        get, get_nowait, empty = self.queue.get, self.queue.get_nowait, queue.Empty
        while True:
            try:
                jobs = [get(timeout=max(0.0, self._next_maintenance - time.monotonic()))]
            except empty:
                jobs = []
            while True:  # drain: everything pending joins this transaction
                try:
                    jobs.append(get_nowait())
                except empty:
                    break
            stop = next((i for i, job in enumerate(jobs) if job[0] >= STOP), None)
            if stop is not None:
                self._fail(jobs[stop + 1 :], self._closed_error())
                jobs, last = jobs[:stop], jobs[stop]
            if jobs:
                self._batch(jobs)
            if stop is not None:
                self._finish(last)
                return
            if time.monotonic() >= self._next_maintenance:
                self._maintain()

    def _finish(self, job: Job) -> None:
        assert self._conn is not None
        if job[0] == ABANDON:
            self.abandoned.append(self._conn)  # no checkpoint, no close: like a crash
        else:
            self._conn.close()  # the last connection to close checkpoints and removes the WAL
        self._conn = None
        self._fail(self._drain(), self._closed_error())
        self._deliver([job[2]], [None], None, 0, 0)

    def _drain(self) -> list[Job]:
        jobs = []
        while True:
            try:
                jobs.append(self.queue.get_nowait())
            except queue.Empty:
                return jobs

    def _batch(self, jobs: list[Job]) -> None:
        s = self.settings
        conn = self._conn
        assert conn is not None
        appends: list[Job] = []
        futures: list[Any] = []
        results: list[Any] = []
        done_n = done_bytes = 0
        for job in jobs:
            if job[0] <= APPEND_MANY:
                appends.append(job)
                done_n += 1 if job[0] == APPEND else len(job[1])
                done_bytes += job[3]
        try:
            now = time.time()
            conn.execute("BEGIN IMMEDIATE")
            rows, unpublished, unpublished_bytes, _ = conn.execute(_schema.SELECT_COUNTS).fetchone()
            released = 0
            # Releases first: they make room for the appends of the same batch.
            for op, arg, future, _nbytes in jobs:
                if op == RELEASE_IDS:
                    n, nbytes, deleted = self._release(
                        conn, _IDS, (_json.encode(arg).decode(),), now
                    )
                elif op == RELEASE_RANGE:
                    n, nbytes, deleted = self._release(conn, _RANGE, arg, now)
                else:
                    continue
                released += n
                unpublished -= n
                unpublished_bytes -= nbytes
                rows -= deleted
                futures.append(future)
                results.append(n)
            payloads: list[bytes] = []
            accepted: list[tuple[Any, int, int]] = []  # future, offset, count (-1: one id)
            for op, arg, future, nbytes in appends:
                n = 1 if op == APPEND else len(arg)
                if unpublished + n > s.max_entries or unpublished_bytes + nbytes > s.max_bytes:
                    # Another process filled it since this one last looked.
                    futures.append(future)
                    results.append(full_error(s, unpublished, unpublished_bytes))
                    continue
                unpublished += n
                unpublished_bytes += nbytes
                accepted.append((future, len(payloads), -1 if op == APPEND else n))
                if op == APPEND:
                    payloads.append(arg)
                else:
                    payloads.extend(arg)
            if payloads:
                conn.executemany(_INSERT, zip(payloads, repeat(now)))
                # One writer holds the lock: the ids of this statement are consecutive.
                first = conn.execute("SELECT last_insert_rowid()").fetchone()[0] - len(payloads) + 1
                rows += len(payloads)
                for future, offset, count in accepted:
                    futures.append(future)
                    start = first + offset
                    results.append(start if count < 0 else list(range(start, start + count)))
            counts = conn.execute(_UPDATE_COUNTS, (rows, unpublished, unpublished_bytes)).fetchone()
            conn.execute("COMMIT")
        except Exception as exc:
            self._rollback()
            self._fail(jobs, storage_error(s, exc), done_n, done_bytes)
            return
        if payloads:
            self._metrics.written.add(len(payloads))
        if released:
            self._metrics.marked_published.add(released)
        self._deliver(futures, results, counts, done_n, done_bytes)

    def _release(
        self, conn: sqlite3.Connection, where: str, params: tuple[Any, ...], now: float
    ) -> tuple[int, int, int]:
        """Release matching unreleased rows: (released, their bytes, rows deleted)."""
        n, nbytes = conn.execute(
            f"SELECT count(*), total(length(payload)) FROM entries WHERE {where}", params
        ).fetchone()
        if not n:
            return 0, 0, 0
        if self.settings.retention_seconds <= 0:
            conn.execute(f"DELETE FROM entries WHERE {where}", params)
            return n, int(nbytes), n
        conn.execute(f"UPDATE entries SET published_at = ? WHERE {where}", (now, *params))
        return n, int(nbytes), 0

    def _maintain(self) -> None:
        """Delete released rows past retention, then checkpoint so the WAL stays bounded."""
        s = self.settings
        conn = self._conn
        assert conn is not None
        self._next_maintenance = time.monotonic() + s.checkpoint_interval
        try:
            cutoff = time.time() - s.retention_seconds
            expired = "published_at IS NOT NULL AND published_at <= ?"
            if conn.execute(f"SELECT 1 FROM entries WHERE {expired} LIMIT 1", (cutoff,)).fetchone():
                conn.execute("BEGIN IMMEDIATE")
                deleted = conn.execute(
                    f"DELETE FROM entries WHERE id IN (SELECT id FROM entries WHERE {expired}"
                    f" LIMIT {_RETENTION_BATCH})",
                    (cutoff,),
                ).rowcount
                counts = conn.execute(
                    "UPDATE counters SET rows = rows - ? RETURNING rows, unpublished,"
                    " unpublished_bytes, coalesce((SELECT seq FROM sqlite_sequence"
                    " WHERE name = 'entries'), 0)",
                    (deleted,),
                ).fetchone()
                conn.execute("COMMIT")
                self._deliver([], [], counts, 0, 0)
                if deleted >= _RETENTION_BATCH:
                    self._next_maintenance = 0.0  # more to delete: continue after the next batch
            conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
            if _schema.file_size(s.path + "-wal") > s.wal_size_limit:
                conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
        except sqlite3.Error:
            # Busy with another process, or disk trouble: appends report real failures;
            # maintenance simply runs again at the next interval.
            self._rollback()

    def _rollback(self) -> None:
        conn = self._conn
        if conn is not None and conn.in_transaction:
            try:
                conn.execute("ROLLBACK")
            except sqlite3.Error:
                pass

    def _fail(
        self, jobs: list[Job], error: BaseException, done_n: int | None = None, done_bytes: int = 0
    ) -> None:
        if not jobs:
            return
        if done_n is None:
            done_n = sum(
                (1 if op == APPEND else len(arg)) for op, arg, _f, _b in jobs if op <= APPEND_MANY
            )
            done_bytes = sum(nbytes for op, _a, _f, nbytes in jobs if op <= APPEND_MANY)
        self._deliver([job[2] for job in jobs], [error] * len(jobs), None, done_n, done_bytes)

    def _closed_error(self) -> StorageError:
        return StorageError(f"ring buffer {self.settings.path} is closed: open it again first")


def full_error(s: Settings, unpublished: int, unpublished_bytes: int) -> RingBufferFullError:
    return RingBufferFullError(
        f"ring buffer {s.path} is full ({unpublished} of {s.max_entries} entries,"
        f" {unpublished_bytes} of {s.max_bytes} bytes unreleased): retry after"
        f" {s.retry_after:g} s, or release entries faster / raise max_entries, max_bytes",
        retry_after=s.retry_after,
    )


def storage_error(s: Settings, exc: Exception) -> Exception:
    """Map a failed write: contention and a full disk are backpressure; the rest is storage."""
    name = getattr(exc, "sqlite_errorname", "")
    if name in ("SQLITE_BUSY", "SQLITE_LOCKED"):
        return BackpressureError(
            f"ring buffer {s.path} stayed locked by another process for {s.busy_timeout:g} s:"
            " retry later, or raise busy_timeout",
            retry_after=s.retry_after,
            code="ring_buffer_busy",
        )
    if name == "SQLITE_FULL":
        return RingBufferFullError(
            f"ring buffer {s.path}: the disk is full; free space, then retry",
            retry_after=s.retry_after,
        )
    return StorageError(f"ring buffer {s.path}: write failed, nothing was written: {exc}")
