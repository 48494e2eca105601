"""EventLoader: batches typed events and dead letters per stream and writes them to the stores.

The shape of OpenTelemetry's ``BatchProcessor`` (a bounded buffer flushed by size or by a timer;
store failures are logged, never raised into the caller) except that it never drops anything:
a batch that cannot be written is kept and retried with capped exponential backoff, the loader
reports itself unhealthy meanwhile, and :meth:`EventLoader.submit` waits while too much is
buffered (backpressure).

Each stream (and, separately, each stream's dead letters) has its own buffer; a buffer is cut
into a batch when it holds ``max_events`` items or ``max_bytes`` bytes, or when its first item
is ``max_age`` seconds old, and always on :meth:`EventLoader.stop`. Batches of one stream are
written one after the other, in order; different streams are written concurrently.

Retrying is right when the store is unavailable, not when the batch itself cannot be stored:
an event holding what Parquet cannot take (a string with a lone surrogate, JSON bytes that are
not UTF-8: things a hand-built event can hold) would fail every attempt and hold its stream up
for good. The stores say so with :class:`~eventkit_storage.parquet.UnstorableEventsError`,
naming those events; the loader writes them to the error store as dead letters
(``reason_code`` ``"unstorable"``) and the rest of the batch as usual, at once. Without an error
store it keeps retrying (and logs why, once). Dead letters are all text: a dead-letter batch
that cannot be stored should not happen; it is logged once and retried like an I/O failure.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Final, Literal

import msgspec
from eventkit_core import (
    DeadLetter,
    ErrorStore,
    EventkitError,
    EventStore,
    RawEvent,
    SchemaAdapter,
    StorageError,
    StoredFile,
    TypedEvent,
    utcnow,
    validate_stream,
)
from eventkit_core.errors import ConfigurationError

from eventkit_storage.parquet import UnstorableEventsError

logger = logging.getLogger(__name__)

Item = TypedEvent | DeadLetter
OnFlushed = Callable[[Sequence[StoredFile]], Awaitable[None] | None]
_Kind = Literal["events", "dead-letters"]

DEFAULT_MAX_EVENTS: Final = 10_000
DEFAULT_MAX_BYTES: Final = 32 * 1024 * 1024
DEFAULT_MAX_AGE: Final = 5.0
DEFAULT_MAX_BUFFERED_EVENTS: Final = 100_000
#: ``reason_code`` of the dead letter made of an event that cannot be stored.
UNSTORABLE: Final = "unstorable"


class LoaderStoppedError(EventkitError, RuntimeError):
    """Items were given to an :class:`EventLoader` after :meth:`~EventLoader.stop`."""

    code = "loader_stopped"


class LoaderStats(msgspec.Struct, frozen=True, kw_only=True):
    """A snapshot of what an :class:`EventLoader` holds and has done."""

    #: Items accepted and not yet durably written (buffered or being written).
    buffered: int
    #: Batches cut and waiting to be written (or being written / retried).
    pending_batches: int
    files_written: int
    rows_written: int
    #: Failed write attempts so far (each is retried).
    write_failures: int
    #: True while some batch is failing and being retried.
    retrying: bool
    #: Events that could not be stored as they are, written as dead letters instead.
    unstorable: int = 0


@dataclass(eq=False)
class _Batch:
    items: list[Item]
    done: asyncio.Future[None]


@dataclass(eq=False)
class _Stream:
    """One (kind, stream) buffer and its queue of batches to write, in order."""

    kind: _Kind
    name: str
    items: list[Item] = field(default_factory=list)
    size: int = 0
    opened_at: float = 0.0
    done: asyncio.Future[None] | None = None
    pending: deque[_Batch] = field(default_factory=deque)
    writer: asyncio.Task[None] | None = None


class EventLoader:
    """Batches events and dead letters per stream and writes them durably to the stores.

    Arguments (defaults are the flush defaults of the design):

    - ``event_store``: where typed events go; ``error_store``: where dead letters go (needed
      only when dead letters are given, or RawEvents with an ``adapter``).
    - ``adapter``: lets :meth:`add` take :class:`RawEvent` s; what it rejects becomes a dead letter.
    - ``max_events`` (10,000), ``max_bytes`` (32 MiB, estimated from each payload's length),
      ``max_age`` (5.0 s): a stream's buffer is written when any one is reached.
    - ``max_buffered_events`` (100,000): above it, :meth:`submit` waits until writes catch up.
    - ``on_flushed(files)``: called after each durable write with the files written (their
      ``source_ids`` may now be released); may be a coroutine function. Its errors are logged.
    - ``retry_initial`` (0.5 s) and ``retry_max`` (30 s): backoff between attempts of a batch
      that failed to write; it doubles from ``retry_initial`` up to ``retry_max``.

    Events the event store cannot store as they are (it raises
    :class:`~eventkit_storage.parquet.UnstorableEventsError`) become dead letters with
    ``reason_code`` ``"unstorable"`` in ``error_store`` (keeping their ``source_id``); without
    an ``error_store`` their batch is retried for ever, like a failing store.
    """

    def __init__(
        self,
        event_store: EventStore,
        error_store: ErrorStore | None = None,
        *,
        adapter: SchemaAdapter | None = None,
        max_events: int = DEFAULT_MAX_EVENTS,
        max_bytes: int = DEFAULT_MAX_BYTES,
        max_age: float = DEFAULT_MAX_AGE,
        max_buffered_events: int = DEFAULT_MAX_BUFFERED_EVENTS,
        on_flushed: OnFlushed | None = None,
        retry_initial: float = 0.5,
        retry_max: float = 30.0,
    ) -> None:
        for name, value in (
            ("max_events", max_events),
            ("max_bytes", max_bytes),
            ("max_age", max_age),
            ("max_buffered_events", max_buffered_events),
            ("retry_initial", retry_initial),
            ("retry_max", retry_max),
        ):
            if value <= 0:
                raise ConfigurationError(f"{name}={value!r} is invalid: use a positive number")
        self.event_store = event_store
        self.error_store = error_store
        self.adapter = adapter
        self.max_events = max_events
        self.max_bytes = max_bytes
        self.max_age = max_age
        self.max_buffered_events = max_buffered_events
        self.on_flushed = on_flushed
        self.retry_initial = retry_initial
        self.retry_max = retry_max

        self._streams: dict[tuple[_Kind, str], _Stream] = {}
        self._valid_streams: set[str] = set()
        self._buffered = 0
        self._space = asyncio.Event()
        self._wake = asyncio.Event()
        self._timer: asyncio.Task[None] | None = None
        self._stopped = False
        self._failing: set[tuple[_Kind, str]] = set()
        self._files_written = 0
        self._rows_written = 0
        self._write_failures = 0
        self._unstorable = 0
        self._warned_unstorable: set[_Kind] = set()

    # -- lifecycle -------------------------------------------------------------------------

    async def start(self) -> None:
        """Start the age timer (also started by the first item given)."""
        if self._stopped:
            raise LoaderStoppedError("this EventLoader was stopped: make a new one")
        if self._timer is None:
            self._timer = asyncio.create_task(self._run_timer(), name="eventkit-loader-timer")

    async def stop(self, *, grace_period: float | None = None) -> None:
        """Write everything buffered, then stop. Call it on shutdown (e.g. on SIGTERM).

        Waits as long as writes keep failing and being retried, unless ``grace_period``
        (seconds) is given: then raises :class:`~eventkit_core.StorageError` when it passes, with the
        unwritten items still unreleased (their sources were never reported as flushed).
        """
        self._stopped = True
        try:
            await asyncio.wait_for(self.flush(), grace_period)
        except TimeoutError:
            left = self._buffered
            await self._cancel_tasks()
            raise StorageError(
                f"EventLoader stopped after {grace_period} s with {left} items not written "
                "(the stores kept failing); their sources were not released"
            ) from None
        await self._cancel_tasks()

    async def flush(self) -> None:
        """Write everything buffered now; return when all of it is durable."""
        waiting = [batch.done for s in self._streams.values() for batch in s.pending]
        for stream in self._streams.values():
            batch = self._cut(stream)
            if batch is not None:
                waiting.append(batch.done)
        if waiting:
            await asyncio.shield(asyncio.gather(*waiting))

    # -- giving items ----------------------------------------------------------------------

    async def add(self, item: RawEvent | TypedEvent | DeadLetter) -> None:
        """Give one item; return once the file holding it is durably written.

        A :class:`RawEvent` is adapted first (needs ``adapter``): rejected ones become dead
        letters. This is the ``handler=event_loader.add`` of a subscription coordinator.
        """
        await self.add_many([item])

    async def add_many(self, items: Sequence[RawEvent | TypedEvent | DeadLetter]) -> None:
        """Give many items; return once every file holding them is durably written."""
        done = await self._submit([self._adapt(item) for item in items])
        if done:
            await asyncio.shield(asyncio.gather(*done))

    async def submit(self, items: Sequence[TypedEvent | DeadLetter]) -> None:
        """Give items; return as soon as they are buffered (waits only while the buffer is full).

        Durable writes are reported through ``on_flushed``, with the items' ``source_id`` s.
        """
        await self._submit(items)

    # -- state -----------------------------------------------------------------------------

    def health_check(self) -> bool:
        """False while a batch is failing to write (it is being retried) or a store is unwell."""
        if self._failing:
            return False
        if not self.event_store.health_check():
            return False
        return self.error_store is None or self.error_store.health_check()

    @property
    def stats(self) -> LoaderStats:
        return LoaderStats(
            buffered=self._buffered,
            pending_batches=sum(len(s.pending) for s in self._streams.values()),
            files_written=self._files_written,
            rows_written=self._rows_written,
            write_failures=self._write_failures,
            retrying=bool(self._failing),
            unstorable=self._unstorable,
        )

    # -- internals -------------------------------------------------------------------------

    def _adapt(self, item: RawEvent | TypedEvent | DeadLetter) -> Item:
        if not isinstance(item, RawEvent):
            return item
        if self.adapter is None:
            raise ConfigurationError(
                "EventLoader got a RawEvent but has no adapter: pass adapter=... or give "
                "TypedEvents"
            )
        result = self.adapter.adapt(item)
        if result.event is not None and result.error is None:
            return result.event
        assert result.error is not None
        return DeadLetter.from_raw(item, result.error)

    async def _submit(self, items: Sequence[Item]) -> list[asyncio.Future[None]]:
        if self._stopped:
            raise LoaderStoppedError("this EventLoader was stopped: make a new one")
        if not items:
            return []
        if any(isinstance(i, DeadLetter) for i in items) and self.error_store is None:
            raise ConfigurationError("EventLoader got dead letters but has no error_store")
        # Checked before anything is buffered, once per stream: a bad name would fail every
        # write attempt of its batch, forever.
        for name in {i.stream for i in items} - self._valid_streams:
            self._valid_streams.add(validate_stream(name))
        if self._timer is None:
            await self.start()
        while self._buffered and self._buffered + len(items) > self.max_buffered_events:
            self._cut_all()  # make room as soon as the writes allow
            self._space.clear()
            await self._space.wait()
            if self._stopped:
                raise LoaderStoppedError("this EventLoader was stopped: make a new one")
        done: dict[int, asyncio.Future[None]] = {}
        now = time.monotonic()
        for item in items:
            kind: _Kind = "events" if isinstance(item, TypedEvent) else "dead-letters"
            key = (kind, item.stream)
            stream = self._streams.get(key)
            if stream is None:
                stream = self._streams[key] = _Stream(kind, item.stream)
            if not stream.items:
                stream.opened_at = now
                stream.done = asyncio.get_running_loop().create_future()
                self._wake.set()
            stream.items.append(item)
            stream.size += len(item.payload)
            assert stream.done is not None
            done[id(stream.done)] = stream.done
            self._buffered += 1
            if len(stream.items) >= self.max_events or stream.size >= self.max_bytes:
                self._cut(stream)
        return list(done.values())

    def _cut(self, stream: _Stream) -> _Batch | None:
        """Turn the stream's buffer into a batch queued for writing."""
        if not stream.items:
            return None
        assert stream.done is not None
        batch = _Batch(stream.items, stream.done)
        stream.items, stream.size, stream.done = [], 0, None
        stream.pending.append(batch)
        if stream.writer is None or stream.writer.done():
            stream.writer = asyncio.create_task(
                self._write_pending(stream), name=f"eventkit-loader-{stream.kind}-{stream.name}"
            )
        return batch

    def _cut_all(self) -> None:
        for stream in self._streams.values():
            self._cut(stream)

    async def _run_timer(self) -> None:
        while True:
            now = time.monotonic()
            next_due: float | None = None
            for stream in list(self._streams.values()):
                if not stream.items:
                    continue
                due = stream.opened_at + self.max_age
                if due <= now:
                    self._cut(stream)
                elif next_due is None or due < next_due:
                    next_due = due
            self._wake.clear()
            wait = None if next_due is None else next_due - now
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), wait)

    async def _write_pending(self, stream: _Stream) -> None:
        while stream.pending:
            batch = stream.pending[0]
            files = await self._write_with_retry(stream.kind, stream.name, batch.items)
            stream.pending.popleft()
            self._files_written += len(files)
            self._rows_written += len(batch.items)
            await self._report(files)
            self._buffered -= len(batch.items)
            self._space.set()
            if not batch.done.done():
                batch.done.set_result(None)

    async def _write_with_retry(
        self, kind: _Kind, name: str, items: list[Item]
    ) -> list[StoredFile]:
        key = (kind, name)
        delay = self.retry_initial
        written: list[StoredFile] = []
        while True:
            try:
                written.extend(await self._write(kind, items))
                break
            except UnstorableEventsError as exc:
                split = self._split_unstorable(kind, name, items, exc)
                if split is None:
                    failure: Exception = exc
                else:
                    # No waiting: the store is fine, the batch was not. The dead letters are
                    # written first; everything is reported once the rest is written too.
                    items, letters = split
                    written.extend(await self._write_with_retry("dead-letters", name, letters))
                    if not items:
                        break
                    continue
            except Exception as exc:
                failure = exc
            self._write_failures += 1
            if key not in self._failing:
                logger.warning(
                    "writing %d %s of stream %r failed; retrying until it works: %s",
                    len(items),
                    kind,
                    name,
                    failure,
                    # An OSError (a full disk, a refused connection) says it all in its message:
                    # a traceback would only bury that line.
                    exc_info=None if isinstance(failure, OSError) else failure,
                )
            self._failing.add(key)
            await asyncio.sleep(delay)
            delay = min(delay * 2, self.retry_max)
        if key in self._failing:
            self._failing.discard(key)
            logger.info("writing %s of stream %r works again", kind, name)
        return written

    def _split_unstorable(
        self, kind: _Kind, name: str, items: list[Item], error: UnstorableEventsError
    ) -> tuple[list[Item], list[Item]] | None:
        """(items to write, dead letters of the unstorable ones); None: retry as it is."""
        if kind != "events" or self.error_store is None:
            if kind not in self._warned_unstorable:
                self._warned_unstorable.add(kind)
                logger.error(
                    "%s of stream %r cannot be stored (%s) and %s: retrying for ever, "
                    "the stream is held up until then",
                    kind,
                    name,
                    error,
                    "there is no error_store to dead-letter them (give the EventLoader one)"
                    if kind == "events"
                    else "dead letters have nowhere else to go (this should not happen)",
                )
            return None
        reasons = {id(item): reason for item, reason in error.rejected}
        keep = [item for item in items if id(item) not in reasons]
        if len(keep) == len(items):
            return None  # it names none of these items: retry, log as a failure
        letters: list[Item] = [
            _unstorable_letter(item, reasons[id(item)])
            for item in items
            if id(item) in reasons and isinstance(item, TypedEvent)
        ]
        self._unstorable += len(letters)
        logger.warning(
            "%d of %d events of stream %r cannot be stored, written as dead letters "
            "(reason_code %r) instead; first: %s",
            len(letters),
            len(items),
            name,
            UNSTORABLE,
            error.rejected[0][1],
        )
        return keep, letters

    async def _write(self, kind: _Kind, items: list[Item]) -> Sequence[StoredFile]:
        if kind == "events":
            return await self.event_store.store_batch(items)  # type: ignore[arg-type]
        assert self.error_store is not None
        return await self.error_store.store_errors(items)  # type: ignore[arg-type]

    async def _report(self, files: Sequence[StoredFile]) -> None:
        if self.on_flushed is None:
            return
        try:
            outcome = self.on_flushed(files)
            if inspect.isawaitable(outcome):
                await outcome
        except Exception:
            logger.exception("on_flushed failed for %d files (they are written)", len(files))

    async def _cancel_tasks(self) -> None:
        tasks = [s.writer for s in self._streams.values() if s.writer is not None]
        if self._timer is not None:
            tasks.append(self._timer)
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        error = LoaderStoppedError("the EventLoader stopped before this item was written")
        for stream in self._streams.values():
            for batch in stream.pending:
                if not batch.done.done():
                    batch.done.set_exception(error)
                    batch.done.exception()  # retrieved: no "never retrieved" warning
        self._space.set()


def _unstorable_letter(event: TypedEvent, reason: str) -> DeadLetter:
    """A dead letter for ``event``, which cannot be stored; every field of it can be."""
    received = event.received_at
    message_id = event.message_id
    return DeadLetter(
        stream=event.stream,
        reason_code=UNSTORABLE,
        reason=_storable(reason),
        payload=_payload_text(event.payload),
        received_at=received if isinstance(received, datetime) else utcnow(),
        message_id=None if message_id is None else _storable(str(message_id)),
        source="loader",
        source_id=event.source_id,
    )


def _payload_text(value: object) -> str:
    """JSON text of a payload; bytes that are not UTF-8 are replaced (U+FFFD)."""
    if isinstance(value, str):
        return _storable(value)
    if isinstance(value, (bytes, bytearray, memoryview, msgspec.Raw)):
        return bytes(value).decode("utf-8", "replace")
    return "null" if value is None else _storable(repr(value))


def _storable(text: str) -> str:
    """``text`` with lone surrogates written as ``\\udXXX`` escapes (UTF-8 can hold it)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return text.encode("utf-8", "backslashreplace").decode("utf-8")
    return text
