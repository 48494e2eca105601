"""The pipeline of one server process: ring buffer -> publisher -> sink.

The request handler appends one envelope per request to the ring buffer (:meth:`Pipeline.accept`,
which returns after COMMIT) and hands the envelope to the publisher in memory; the publisher turns
envelopes into RawEvents and delivers them to the sink of the queue mode (see
:mod:`eventkit_collector.sinks`). Which entries may be released, and releasing them, is the
:class:`~eventkit_collector.release.ReleaseTracker`'s job; which shard this process owns is
:mod:`eventkit_collector.shards`'s. The parts are built from settings by
:mod:`eventkit_collector.wiring`.

On start, entries left unpublished by an earlier run are read back and delivered again.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final, Literal, Protocol

from eventkit_core import BackpressureError, EventkitError, RawEvent

from eventkit_collector.edge import Limits, Parsed
from eventkit_collector.envelope import (
    Envelope,
    decode_envelope,
    encode_envelope,
    reparse,
    to_raw_events,
)
from eventkit_collector.release import ReleaseTracker
from eventkit_collector.shards import ShardLock, claim_shard, orphan_shards, try_lock
from eventkit_collector.sinks import Sink

log = logging.getLogger("eventkit_collector.pipeline")

_RECOVERY_PAGE: Final = 1000
#: Most events handed to the sink in one delivery.
_MAX_PUBLISH_EVENTS: Final = 20_000


class RingEntry(Protocol):
    @property
    def id(self) -> int: ...

    @property
    def payload(self) -> bytes: ...


class DurableLog(Protocol):
    """The ring buffer, as the pipeline uses it."""

    @property
    def instance_id(self) -> str: ...

    @property
    def is_open(self) -> bool: ...

    async def open(self) -> None: ...

    async def close(self) -> None: ...

    async def append(self, payload: bytes) -> int: ...

    async def append_many(self, payloads: Sequence[bytes]) -> list[int]: ...

    async def mark_published(self, ids: Iterable[int]) -> int: ...

    async def read_unpublished(
        self, after_id: int = 0, limit: int = 1000
    ) -> Sequence[RingEntry]: ...

    def record_published(self, count: int, result: Literal["ok", "error"] = "ok") -> None: ...


class Loader(Protocol):
    """The EventLoader, as the pipeline uses it (its start, drain and health)."""

    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    def health_check(self) -> bool: ...


class PipelineStateError(EventkitError, RuntimeError):
    """The pipeline was used out of order (started twice, or accepting before start)."""

    code = "pipeline_state"


@dataclass(frozen=True, kw_only=True)
class PipelineConfig:
    ring_dir: Path
    limits: Limits = field(default_factory=Limits)
    type_streams: dict[str, str] = field(default_factory=dict)
    #: Per source (``posthog``, ``amplitude``): call type -> stream, instead of ``type_streams``.
    source_streams: dict[str, dict[str, str]] = field(default_factory=dict)
    #: Worker count: shard files at or beyond it are orphans, adopted by shard 0.
    workers: int = 1
    #: Shard to claim first (``--workers``: the worker's number).
    shard: int | None = None
    max_pending_requests: int = 20_000
    max_pending_bytes: int = 128 * 1024 * 1024


@dataclass(slots=True)
class _Pending:
    entry_id: int
    envelope: Envelope
    #: Known on the request path; ``None`` for recovered entries (split again when published).
    parsed: Parsed | None
    size: int


class Pipeline:
    """Moves envelopes: durable append, publish to the sink, recovery after a restart."""

    def __init__(
        self,
        config: PipelineConfig,
        *,
        open_ring: Callable[[Path], DurableLog],
        sink: Sink,
        loader: Loader,
        tracker: ReleaseTracker,
    ) -> None:
        self.config = config
        self.limits = config.limits
        self.type_streams = config.type_streams
        self.sink = sink
        self.loader = loader
        self.tracker = tracker
        self._open_ring = open_ring
        self.ring: DurableLog | None = None
        self.shard: int | None = None
        self._shard_lock: ShardLock | None = None
        self._pending: deque[_Pending] = deque()
        self._pending_bytes = 0
        self._wake = asyncio.Event()
        self._publisher: asyncio.Task[None] | None = None
        self._stopping = False
        self._ran = False
        self.started = False
        self._namespace = ""
        self.accepted_requests = 0

    # -- lifecycle ---------------------------------------------------------------------------

    async def start(self) -> None:
        if self._ran:
            raise PipelineStateError("this pipeline already ran: build a new Collector")
        self._ran = True
        lock = self._shard_lock = claim_shard(self.config.ring_dir, self.config.shard)
        self.shard = lock.index
        ring = self.ring = self._open_ring(lock.path)
        try:
            await ring.open()
            self._namespace = ring.instance_id
            await self.loader.start()
            await self.sink.start()
            self.tracker.start(ring)
            if self.shard == 0:
                await self._adopt_orphans(ring)
            await self._recover(ring)
        except BaseException:
            # A start that failed (a backend unreachable) must not keep the shard: a retry or
            # another worker could not claim it.
            await self.tracker.close()
            await ring.close()
            lock.release()
            raise
        self._publisher = asyncio.create_task(self._publish_loop(ring), name="eventkit-publisher")
        self.started = True
        log.info("pipeline started: shard %s", self.shard)

    async def stop(self) -> None:
        """Drain, in the order data flows: publisher, sink, loader, releases; then close."""
        if not self.started:
            return
        self.started = False
        self._stopping = True
        self._wake.set()
        if self._publisher is not None:
            await self._publisher
        await self.sink.stop()
        await self.loader.stop()
        # Only now can no file be written any more: every entry stored is released before exit.
        await self.tracker.close()
        if self.ring is not None:
            await self.ring.close()
        if self._shard_lock is not None:
            self._shard_lock.release()
        log.info("pipeline stopped (shard %s)", self.shard)

    # -- the request path --------------------------------------------------------------------

    def check_capacity(self) -> None:
        """Raise :class:`BackpressureError` when a new request cannot be taken now."""
        if not self.started:
            raise BackpressureError(
                "the collector is starting or stopping: retry shortly", retry_after=1.0
            )
        if (
            len(self._pending) >= self.config.max_pending_requests
            or self._pending_bytes >= self.config.max_pending_bytes
        ):
            raise BackpressureError(
                f"{len(self._pending)} accepted requests ({self._pending_bytes} bytes) are "
                "waiting for the queue: retry shortly",
                retry_after=1.0,
            )

    async def accept(self, env: Envelope, parsed: Parsed, size: int | None = None) -> int:
        """Append one request durably, hand it to the publisher; returns the entry id.

        ``size``: bytes the request holds in memory until published (default: the body's).
        Raises :class:`BackpressureError` when the ring buffer is full (nothing was accepted).
        """
        ring = self.ring
        if ring is None:
            raise PipelineStateError("the pipeline is not started: await start() first")
        entry_id = await ring.append(encode_envelope(env))  # RingBufferFullError: backpressure
        self._queue(_Pending(entry_id, env, parsed, len(env.body) if size is None else size))
        self.accepted_requests += 1
        return entry_id

    def _queue(self, item: _Pending) -> None:
        self._pending.append(item)
        self._pending_bytes += item.size
        self._wake.set()

    # -- recovery ----------------------------------------------------------------------------

    async def _recover(self, ring: DurableLog) -> None:
        """Queue what an earlier run left unpublished (before any new request is accepted)."""
        after = 0
        total = 0
        while entries := await ring.read_unpublished(after_id=after, limit=_RECOVERY_PAGE):
            for entry in entries:
                after = max(after, entry.id)
                env = _decode_or_none(entry)
                if env is None:
                    # Nothing can ever read it: keeping it would only block the ring buffer.
                    self.tracker.release([entry.id])
                    continue
                self._queue(_Pending(entry.id, env, None, len(env.body)))
                total += 1
        if total:
            log.info("recovering %d unpublished requests from the ring buffer", total)

    async def _adopt_orphans(self, ring: DurableLog) -> None:
        """Move what shards beyond the worker count left unpublished into this shard.

        After a run with more workers, ``ring/<n>.db`` for ``n >= workers`` has no owner: worker 0
        copies its unreleased entries into its own ring buffer (one transaction per page), then
        releases them there. A crash in between only duplicates (at-least-once).
        """
        ring_dir = self.config.ring_dir
        for index in orphan_shards(ring_dir, self.config.workers):
            lock = try_lock(ring_dir, index)
            if lock is None:
                continue  # a worker owns it
            try:
                moved = await _move_unpublished(self._open_ring(lock.path), ring)
            finally:
                lock.release()
            if moved:
                log.info("adopted %d unpublished requests from %s", moved, lock.path)

    # -- publisher ---------------------------------------------------------------------------

    def _next_delivery(self) -> tuple[list[RawEvent], list[tuple[int, int]]]:
        events: list[RawEvent] = []
        entries: list[tuple[int, int]] = []
        pending = self._pending
        while pending and len(events) < _MAX_PUBLISH_EVENTS:
            item = pending.popleft()
            self._pending_bytes -= item.size
            parsed = item.parsed if item.parsed is not None else reparse(item.envelope, self.limits)
            raws = to_raw_events(
                item.entry_id,
                item.envelope,
                parsed,
                namespace=self._namespace,
                type_streams=self.type_streams,
                source_streams=self.config.source_streams,
            )
            entries.append((item.entry_id, len(raws)))
            events.extend(raws)
        return events, entries

    async def _publish_loop(self, ring: DurableLog) -> None:
        while True:
            if not self._pending:
                if self._stopping:
                    return
                self._wake.clear()
                await self._wake.wait()
                continue
            events, entries = self._next_delivery()
            try:
                await self.sink.deliver(events, entries)
                ring.record_published(len(entries))
            except Exception:
                ring.record_published(len(entries), "error")
                # The entries stay unpublished in the ring buffer: the next start delivers them.
                log.exception(
                    "publisher failed to deliver %d events of %d requests; they stay in the "
                    "ring buffer and are delivered again on restart",
                    len(events),
                    len(entries),
                )
                self.tracker.forget(entry_id for entry_id, _n in entries)

    # -- health ------------------------------------------------------------------------------

    def health(self) -> dict[str, bool]:
        ring_ok = self.started and self.ring is not None and self.ring.is_open
        status: dict[str, bool] = {"ring_buffer": ring_ok}
        try:
            status["storage"] = bool(self.loader.health_check())
        except Exception:
            log.exception("storage health check failed")
            status["storage"] = False
        status.update(self.sink.health())
        return status

    def ready(self) -> bool:
        return self.started and all(self.health().values())

    def outstanding_entries(self) -> int:
        return self.tracker.outstanding_entries()


def _decode_or_none(entry: RingEntry) -> Envelope | None:
    try:
        return decode_envelope(bytes(entry.payload))
    except Exception:
        log.exception("ring entry %s is not an envelope; releasing it", entry.id)
        return None


async def _move_unpublished(source: DurableLog, target: DurableLog) -> int:
    """Copy ``source``'s unreleased entries into ``target``, releasing them in ``source``."""
    await source.open()
    moved = 0
    try:
        while entries := await source.read_unpublished(after_id=0, limit=_RECOVERY_PAGE):
            await target.append_many([e.payload for e in entries])
            await source.mark_published([e.id for e in entries])
            moved += len(entries)
    finally:
        await source.close()
    return moved
