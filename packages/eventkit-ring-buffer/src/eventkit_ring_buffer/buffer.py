"""The public :class:`RingBuffer`: an asyncio face over the writer and reader threads."""

from __future__ import annotations

import asyncio
import os
import sqlite3
from collections.abc import Iterable, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, Literal, Self, cast

import msgspec
from eventkit_core import ConfigurationError, StorageError
from opentelemetry.metrics import MeterProvider

from eventkit_ring_buffer import _metrics, _schema
from eventkit_ring_buffer._reader import Entry, Reader, RingBufferStats
from eventkit_ring_buffer._writer import (
    ABANDON,
    APPEND,
    APPEND_MANY,
    RELEASE_IDS,
    RELEASE_RANGE,
    STOP,
    Committer,
    Settings,
    Writer,
    full_error,
    storage_error,
)
from eventkit_ring_buffer.errors import EntryTooLargeError

Durability = Literal["normal", "full"]
_json = msgspec.json.Encoder()
# Appends up to this size may commit on the event-loop thread (see _commit_inline).
_INLINE_MAX_BYTES = 16 << 10
# What one inline commit adds to the WAL at most, besides the payloads: a few pages.
_INLINE_WAL_PAGES = 3


class RingBuffer:
    """A durable, bounded, ordered log of byte payloads in one SQLite file (WAL mode).

    ``append`` returns after COMMIT: from then on the entry survives ``kill -9`` (and, with
    ``durability="full"``, power loss). Entries stay until released with ``mark_published``;
    on reopen every unreleased entry is read again (at-least-once). Bind one instance to one
    event loop (the one that awaited :meth:`open`). Many processes may append to one file;
    reading and releasing expect a single consumer per file.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        durability: Durability = "normal",
        max_entries: int = 1_000_000,
        max_bytes: int = 1 << 30,
        retention_seconds: float = 0.0,
        busy_timeout: float = 5.0,
        checkpoint_interval: float = 1.0,
        wal_size_limit: int = 64 << 20,
        retry_after: float = 1.0,
        meter_provider: MeterProvider | None = None,
    ) -> None:
        if durability not in ("normal", "full"):
            raise ConfigurationError(
                f"durability {durability!r} is invalid: use 'normal' or 'full'"
            )
        for name, value in (("max_entries", max_entries), ("max_bytes", max_bytes)):
            if value < 1:
                raise ConfigurationError(f"{name} must be at least 1 (got {value})")
        for name, number in (
            ("retention_seconds", retention_seconds),
            ("busy_timeout", busy_timeout),
            ("retry_after", retry_after),
            ("wal_size_limit", wal_size_limit),
        ):
            if number < 0:
                raise ConfigurationError(f"{name} must be 0 or more (got {number})")
        if checkpoint_interval <= 0:
            raise ConfigurationError(f"checkpoint_interval must be > 0 (got {checkpoint_interval})")
        self.path = Path(path)
        self.durability: Durability = durability
        self._settings = Settings(
            path=str(self.path),
            synchronous=durability.upper(),
            max_entries=max_entries,
            max_bytes=max_bytes,
            retention_seconds=retention_seconds,
            busy_timeout=busy_timeout,
            checkpoint_interval=checkpoint_interval,
            wal_size_limit=wal_size_limit,
            retry_after=retry_after,
        )
        self._metrics = _metrics.instruments(meter_provider)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._writer: Writer | None = None
        self._reader: Reader | None = None
        self._instance_id: str | None = None
        # Counts as of the last commit seen (any process), plus appends queued but not done.
        self._rows = self._unpublished = self._unpublished_bytes = self._last_id = 0
        self._pending = self._pending_bytes = 0
        # Jobs handed to the writer thread whose outcome has not come back yet.
        self._queued = 0
        # NORMAL only: a second connection, used on the event-loop thread alone (see
        # _commit_inline), and an estimate of the WAL bytes it wrote since it last let the
        # writer thread commit (and so run SQLite's auto-checkpoint there).
        self._inline: Committer | None = None
        self._inline_wal = 0
        # Set by an inline commit until the event loop's next turn (see _commit_inline).
        self._inline_this_turn = False

    # -- lifecycle --------------------------------------------------------------------------

    @property
    def instance_id(self) -> str:
        """A uuid stored in the file when it was created: stable across reopen."""
        if self._instance_id is None:
            raise StorageError(f"ring buffer {self.path} is not open: await open() first")
        return self._instance_id

    @property
    def is_open(self) -> bool:
        return self._writer is not None

    async def open(self) -> None:
        """Open (creating the file and its directory if needed). Idempotent."""
        if self._writer is not None:
            return
        self._loop = asyncio.get_running_loop()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StorageError(
                f"ring buffer {self.path}: cannot create its directory: {exc}"
            ) from exc
        writer = Writer(self._settings, self._deliver_threadsafe, self._metrics)
        instance_id, counts = await asyncio.wrap_future(writer.start())
        self._instance_id = instance_id
        self._set_counts(counts)
        self._pending = self._pending_bytes = self._queued = self._inline_wal = 0
        if self.durability == "normal":
            self._inline = Committer(self._inline_connection(), self._settings)
        self._writer = writer
        self._reader = Reader(
            str(self.path), self._settings.busy_timeout, self._settings.synchronous
        )
        self._metrics.buffers.add(self)

    def _inline_connection(self) -> sqlite3.Connection:
        s = self._settings
        conn = _schema.connect(s.path, busy_timeout=s.busy_timeout, synchronous=s.synchronous)
        # Then busy_timeout 0: never wait for the write lock on the event loop; when another
        # connection holds it the append goes to the writer thread, which may wait.
        conn.execute("PRAGMA busy_timeout = 0")
        # No auto-checkpoint here: it would run on the event loop (see _commit_inline).
        conn.execute("PRAGMA wal_autocheckpoint = 0")
        conn.execute(f"PRAGMA journal_size_limit = {s.wal_size_limit}")
        return conn

    async def close(self) -> None:
        """Finish queued writes, then close. Idempotent."""
        await self._shutdown(STOP)

    async def __aenter__(self) -> Self:
        await self.open()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def _shutdown(self, op: int) -> list[sqlite3.Connection]:
        writer, reader, loop = self._writer, self._reader, self._loop
        if writer is None or reader is None or loop is None:
            return []
        self._writer = None
        self._metrics.buffers.discard(self)
        abandoned: list[sqlite3.Connection] = []
        if self._inline is not None:
            if op == ABANDON:
                abandoned.append(self._inline.conn)
            else:
                self._inline.conn.close()
            self._inline = None
        # Reader first: the writer's connection, closing last, runs the final checkpoint.
        await loop.run_in_executor(reader.pool, reader.close, abandoned if op == ABANDON else None)
        reader.pool.shutdown(wait=False)
        stopped = loop.create_future()
        writer.queue.put((op, None, stopped, 0))  # after every write queued before it
        await stopped
        return [*writer.abandoned, *abandoned]

    async def _abandon(self) -> list[sqlite3.Connection]:
        """Stop without checkpoint or close, as a crash would; returns the open connections.

        For tests that simulate a crash in-process: the caller closes the connections later.
        """
        return await self._shutdown(ABANDON)

    # -- writes -----------------------------------------------------------------------------

    async def append(self, payload: bytes) -> int:
        """Write one entry; returns its id once committed (shared with concurrent appends).

        Raises :class:`RingBufferFullError` at once (nothing written) when the buffer is full.
        """
        if type(payload) is not bytes:
            payload = bytes(payload)
        future = self._submit(APPEND, payload, 1, len(payload))
        if future.done():  # committed inline: still yield once, as a queued append would
            await asyncio.sleep(0)
        return cast(int, await future)

    async def append_many(self, payloads: Sequence[bytes]) -> list[int]:
        """Write all entries in one transaction (all or none); ids in order, after COMMIT."""
        batch = [p if type(p) is bytes else bytes(p) for p in payloads]
        if not batch:
            return []
        future = self._submit(APPEND_MANY, batch, len(batch), sum(map(len, batch)))
        if future.done():  # committed inline: still yield once, as a queued append would
            await asyncio.sleep(0)
        return cast(list[int], await future)

    async def mark_published(self, ids: Iterable[int]) -> int:
        """Release entries by id; returns how many were newly released (others are ignored)."""
        id_list = list(ids)
        if not id_list:
            return 0
        # Encoded here, so a bad id fails this call only, not the whole group commit.
        ids_json = _json.encode(id_list).decode()
        return cast(int, await self._submit(RELEASE_IDS, ids_json, 0, 0))

    async def mark_published_range(self, first_id: int, last_id: int) -> int:
        """Release every entry with ``first_id <= id <= last_id``; returns how many were new."""
        if first_id > last_id:
            return 0
        return cast(int, await self._submit(RELEASE_RANGE, (first_id, last_id), 0, 0))

    def _submit(self, op: int, arg: Any, n: int, nbytes: int) -> asyncio.Future[Any]:
        writer, loop, s = self._writer, self._loop, self._settings
        if writer is None or loop is None:
            raise StorageError(f"ring buffer {self.path} is not open: await open() first")
        if n:
            if nbytes > s.max_bytes:
                raise EntryTooLargeError(
                    f"{nbytes} bytes can never fit in ring buffer {self.path}"
                    f" (max_bytes={s.max_bytes}): split it or raise max_bytes"
                )
            # The fast path of backpressure: no I/O, no queueing.
            unpublished = self._unpublished + self._pending
            unpublished_bytes = self._unpublished_bytes + self._pending_bytes
            if unpublished + n > s.max_entries or unpublished_bytes + nbytes > s.max_bytes:
                raise full_error(s, unpublished, unpublished_bytes)
        future: asyncio.Future[Any] = asyncio.Future(loop=loop)  # skips a Python-level call
        if n and not writer.failed and self._commit_inline(op, arg, nbytes, future):
            return future
        if n:
            self._pending += n
            self._pending_bytes += nbytes
        self._queued += 1
        writer.queue.put((op, arg, future, nbytes))
        return future

    def _commit_inline(self, op: int, arg: Any, nbytes: int, future: asyncio.Future[Any]) -> bool:
        """Commit a small append right here on the event-loop thread, if that is safe.

        A lone appender would otherwise pay two thread hops per entry (~100 µs here, more
        on a busy machine), several times a NORMAL commit (a WAL write, no fsync: ~20 µs).
        Only when the writer thread has nothing queued (no batch to join, and ids stay in
        call order), once per turn of the event loop (a second append in the same turn means
        concurrent appenders: they share the writer's next transaction), and only in NORMAL (a FULL commit waits for the disk: never on the
        loop). Returns False, having written nothing, when the write lock is taken (the
        writer's maintenance, another process): the writer thread then waits for it.
        """
        tx = self._inline
        if tx is None or self._queued or self._inline_this_turn or nbytes > _INLINE_MAX_BYTES:
            return False
        # SQLite auto-checkpoints after a commit that leaves the WAL over its threshold, on
        # the committing connection. This one has it off, so once its commits may have
        # reached the threshold, the next append goes to the writer thread to trigger it.
        self._inline_wal += nbytes + _INLINE_WAL_PAGES * 4096
        if self._inline_wal > self._settings.wal_size_limit // 2:
            self._inline_wal = 0
            return False
        self._inline_this_turn = True
        future.get_loop().call_soon(self._next_turn)
        job = (op, arg, future, nbytes)
        try:
            results, counts, written, _released, _done, _bytes = tx.write([job])
        except sqlite3.Error as exc:
            if tx.conn.in_transaction:
                tx.conn.execute("ROLLBACK")
            elif getattr(exc, "sqlite_errorname", "") in ("SQLITE_BUSY", "SQLITE_LOCKED"):
                return False  # BEGIN IMMEDIATE found the lock taken: nothing written
            future.set_exception(storage_error(self._settings, exc))
            return True
        self._set_counts(counts)
        if written:
            self._metrics.written.add(written)
        if isinstance(results[0], BaseException):
            future.set_exception(results[0])
        else:
            future.set_result(results[0])
        return True

    def _next_turn(self) -> None:
        self._inline_this_turn = False

    def _deliver_threadsafe(
        self,
        futures: list[Any],
        results: list[Any],
        counts: _schema.Counts | None,
        done: int,
        done_bytes: int,
    ) -> None:
        """Called on the writer thread: one loop wake-up per batch."""
        loop = self._loop
        if loop is None:
            return
        try:
            loop.call_soon_threadsafe(self._deliver, futures, results, counts, done, done_bytes)
        except RuntimeError:  # the loop is closed: nobody is waiting any more
            pass

    def _deliver(
        self,
        futures: list[asyncio.Future[Any]],
        results: list[Any],
        counts: _schema.Counts | None,
        done: int,
        done_bytes: int,
    ) -> None:
        self._pending -= done
        self._pending_bytes -= done_bytes
        self._queued -= len(futures)
        if counts is not None:
            if not futures and self._inline is not None:
                # The writer's periodic refresh, read on its thread: inline commits may have
                # happened since. Re-read the row here (a read never waits in WAL mode).
                counts = _schema.counts(
                    self._inline.conn.execute(_schema.SELECT_COUNTERS).fetchone()
                )
            self._set_counts(counts)
        for future, result in zip(futures, results, strict=True):
            if future.done():  # cancelled by its caller (the write itself may have committed)
                continue
            if isinstance(result, BaseException):
                future.set_exception(result)
            else:
                future.set_result(result)
        if len(futures) > 1 and self._loop is not None and not self._inline_this_turn:
            # Several callers woken here run in the next turn and are likely to append again
            # together: keep them off the inline path then, so they share a transaction.
            # (A lone one must not be kept off: it would stay on the writer thread.)
            self._inline_this_turn = True
            self._loop.call_soon(self._next_turn)

    def _set_counts(self, counts: _schema.Counts) -> None:
        self._rows, self._unpublished, self._unpublished_bytes, self._last_id = counts

    # -- reads ------------------------------------------------------------------------------

    async def read_unpublished(self, after_id: int = 0, limit: int = 1000) -> list[Entry]:
        """Unreleased entries with ``id > after_id``, ordered by id, at most ``limit``."""
        if limit < 1:  # SQLite would read a negative LIMIT as "no limit"
            raise ConfigurationError(f"limit must be at least 1 (got {limit})")
        reader, loop = self._reader, self._loop
        if reader is None or loop is None or self._writer is None:
            raise StorageError(f"ring buffer {self.path} is not open: await open() first")
        return await loop.run_in_executor(reader.pool, reader.read_unpublished, after_id, limit)

    async def stats(self) -> RingBufferStats:
        """Exact counts from the file (every process's writes included) and its size on disk."""
        reader, loop, s = self._reader, self._loop, self._settings
        if reader is None or loop is None or self._writer is None:
            raise StorageError(f"ring buffer {self.path} is not open: await open() first")
        return await loop.run_in_executor(reader.pool, reader.stats, s.max_entries, s.max_bytes)

    # -- metrics ----------------------------------------------------------------------------

    def record_published(self, count: int, result: Literal["ok", "error"] = "ok") -> None:
        """Count entries the publisher handed on (``ok``) or failed to (``error``).

        The buffer cannot see publishing itself; the caller reports it here, and
        ``eventkit_ringbuffer_published_total{result}`` counts it.
        """
        self._metrics.published.add(count, {"result": "ok" if result == "ok" else "error"})

    @property
    def _gauge_values(self) -> tuple[int, int]:
        return self._rows, self._unpublished
