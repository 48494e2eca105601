"""Ring buffer -> publisher -> queue -> workers -> EventLoader -> stores -> release.

One :class:`Pipeline` per server process. The request handler appends one envelope per request
to the ring buffer (:meth:`Pipeline.accept`, which returns after COMMIT) and hands the envelope to
the publisher in memory; the publisher turns envelopes into RawEvents and puts them on the queue:

* ``async`` mode: the in-process :class:`~eventkit_queues.AsyncQueue`; its workers adapt events
  (schema adapter + rules) and submit typed events and dead letters to the EventLoader. A
  ring-buffer entry is released (``mark_published``) once every one of its events is in a
  durably written file (the loader's ``on_flushed`` reports ``StoredFile.source_ids``).
* ``pubsub`` mode: :class:`~eventkit_queues.PubSubQueue`; an entry is released once all its
  events are published. An archive :class:`~eventkit_queues.EventSubscriptionCoordinator`
  consumes the subscription with ``handler=event_loader.add`` (the seed's dual path).

On start, entries left unpublished by an earlier run are read back and delivered again.
"""

from __future__ import annotations

import asyncio
import fcntl
import logging
import os
from collections import Counter, deque
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

from eventkit_core import AdaptResult, DeadLetter, RawEvent, StoredFile, TypedEvent

from eventkit_collector.adapter import CollectorAdapter
from eventkit_collector.edge import Limits, Parsed
from eventkit_collector.envelope import (
    Envelope,
    decode_envelope,
    encode_envelope,
    reparse,
    to_raw_events,
)
from eventkit_collector.metrics import CollectorMetrics
from eventkit_collector.settings import Settings

log = logging.getLogger("eventkit_collector.pipeline")

_RECOVERY_PAGE = 1000
#: Placeholder for a result that becomes a dead letter (see Pipeline.adapt_batch).
_BAD: Any = object()
_MAX_PUBLISH_EVENTS = 20_000


class Overloaded(Exception):
    """The pipeline cannot take more right now; retry after ``retry_after`` seconds."""

    def __init__(self, message: str, retry_after: float) -> None:
        super().__init__(message)
        self.message = message
        self.retry_after = retry_after


class _Sink(Protocol):
    async def start(self) -> None: ...
    async def stop(self) -> None: ...
    async def deliver(self, events: list[RawEvent], entries: list[tuple[int, int]]) -> None: ...
    def health(self) -> dict[str, bool]: ...


def claim_shard(ring_dir: Path, preferred: int | None = None) -> tuple[int, int]:
    """Lock a ring-buffer shard: returns ``(shard, fd)`` of ``ring/<shard>.lock`` held with flock.

    A restarted worker takes the first free shard, so it picks up that shard's leftovers.
    """
    ring_dir.mkdir(parents=True, exist_ok=True)
    order = range(1024)
    if preferred is not None:
        order = range(preferred, 1024)  # type: ignore[assignment]
    for shard in order:
        fd = os.open(ring_dir / f"{shard}.lock", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            continue
        return shard, fd
    raise RuntimeError(f"no free ring-buffer shard under {ring_dir}")


class Pipeline:
    """Everything behind the HTTP edge, for one process."""

    def __init__(
        self,
        settings: Settings,
        metrics: CollectorMetrics | None = None,
        *,
        shard: int | None = None,
        event_store: Any = None,
        error_store: Any = None,
    ) -> None:
        self.settings = settings
        self.metrics = metrics
        self.limits = Limits(
            max_event_bytes=settings.eventkit_max_event_bytes,
            max_batch_bytes=settings.eventkit_max_batch_bytes,
            max_batch_events=settings.eventkit_max_batch_events,
        )
        self.adapter = CollectorAdapter(
            max_event_bytes=settings.eventkit_max_event_bytes,
            rules_file=settings.eventkit_rules_file,
        )
        self.type_streams = dict(settings.eventkit_type_streams)
        self._preferred_shard = shard
        self._event_store = event_store
        self._error_store = error_store
        self.shard: int | None = None
        self._lock_fd: int | None = None
        self.ring: Any = None
        self.loader: Any = None
        self._sink: _Sink | None = None
        self._pending: deque[tuple[int, Envelope, Parsed | None, int]] = deque()
        self._pending_bytes = 0
        self._wake = asyncio.Event()
        self._publisher: asyncio.Task[None] | None = None
        self._stopping = False
        self.started = False
        # entry id -> events not yet durably stored (async mode)
        self._outstanding: dict[int, int] = {}
        self._release_ready: list[int] = []
        self._release_wake = asyncio.Event()
        self._releaser: asyncio.Task[None] | None = None
        self._release_closing = False
        self._namespace = ""
        self.accepted_requests = 0

    # -- lifecycle ---------------------------------------------------------------------------

    async def start(self) -> None:
        from eventkit_ring_buffer import RingBuffer

        s = self.settings
        self._stopping = False
        self._wake = asyncio.Event()
        self._release_wake = asyncio.Event()
        self._release_closing = False
        self.shard, self._lock_fd = claim_shard(s.ring_dir, self._preferred_shard)
        self.ring = RingBuffer(
            s.ring_dir / f"{self.shard}.db",
            durability=s.eventkit_ring_durability,
            max_entries=s.eventkit_ring_max_entries,
            max_bytes=s.eventkit_ring_max_bytes,
        )
        await self.ring.open()
        self._namespace = str(self.ring.instance_id)
        event_store, error_store = self._stores()
        self.loader = self._make_loader(event_store, error_store)
        await self.loader.start()
        if s.eventkit_queue_mode == "pubsub":
            self._sink = PubSubSink(self)
        else:
            self._sink = AsyncSink(self)
        await self._sink.start()
        self._releaser = asyncio.create_task(self._release_loop(), name="eventkit-release")
        if self.shard == 0:
            await self._adopt_orphans()
        await self._recover()
        self._publisher = asyncio.create_task(self._publish_loop(), name="eventkit-publisher")
        self.started = True
        log.info(
            "pipeline started: shard %s, queue %s, store %s, data dir %s",
            self.shard,
            s.eventkit_queue_mode,
            s.eventkit_event_store,
            s.eventkit_data_dir,
        )

    async def stop(self) -> None:
        """Drain: publish what is pending, drain the queue, flush the loader, release, close."""
        if not self.started:
            return
        self.started = False
        self._stopping = True
        self._wake.set()
        if self._publisher is not None:
            await self._publisher
        if self._sink is not None:
            await self._sink.stop()
        if self.loader is not None:
            await self.loader.stop()
        # Only now can no file be written any more: the releaser drains what is ready and ends.
        self._release_closing = True
        self._release_wake.set()
        if self._releaser is not None:
            await self._releaser
        if self.ring is not None:
            await self.ring.close()
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None
        log.info("pipeline stopped (shard %s)", self.shard)

    def _stores(self) -> tuple[Any, Any]:
        if self._event_store is not None:
            return self._event_store, self._error_store
        s = self.settings
        if s.eventkit_event_store == "gcs":
            from eventkit_storage.gcs import GCSErrorStore, GCSEventStore

            assert s.gcp_gcs_bucket is not None
            return (
                GCSEventStore(
                    s.gcp_gcs_bucket, prefix=s.eventkit_gcs_prefix, project=s.gcp_project_id
                ),
                GCSErrorStore(
                    s.gcp_gcs_bucket, prefix=s.eventkit_gcs_prefix, project=s.gcp_project_id
                ),
            )
        from eventkit_storage.local import LocalErrorStore, LocalEventStore

        return LocalEventStore(s.eventkit_data_dir), LocalErrorStore(s.eventkit_data_dir)

    def _make_loader(self, event_store: Any, error_store: Any) -> Any:
        from eventkit_storage import EventLoader

        s = self.settings
        return EventLoader(
            event_store,
            error_store,
            # Pub/Sub mode: the archive coordinator's EventLoader.add adapts; count it there.
            adapter=_CountingAdapter(self) if s.eventkit_queue_mode == "pubsub" else self.adapter,
            max_events=s.eventkit_flush_max_events,
            max_bytes=s.eventkit_flush_max_bytes,
            max_age=s.eventkit_flush_max_age,
            max_buffered_events=s.eventkit_max_buffered_events,
            on_flushed=self._on_flushed,
        )

    # -- the request path --------------------------------------------------------------------

    def check_capacity(self) -> None:
        if not self.started:
            raise Overloaded("the collector is starting or stopping: retry shortly", 1.0)
        s = self.settings
        if (
            len(self._pending) >= s.eventkit_max_pending_requests
            or self._pending_bytes >= s.eventkit_max_pending_bytes
        ):
            raise Overloaded(
                f"{len(self._pending)} accepted requests ({self._pending_bytes} bytes) are "
                "waiting for the queue: retry shortly",
                1.0,
            )

    async def accept(self, env: Envelope, parsed: Parsed, size: int | None = None) -> int:
        """Append one request durably, hand it to the publisher; returns the entry id.

        ``size``: bytes the request holds in memory until published (default: the body's).

        Raises :class:`Overloaded` when the ring buffer is full (nothing was accepted).
        """
        from eventkit_ring_buffer import RingBufferFullError

        try:
            entry_id: int = await self.ring.append(encode_envelope(env))
        except RingBufferFullError as exc:
            raise Overloaded(str(exc), float(getattr(exc, "retry_after", 1.0))) from None
        size = len(env.body) if size is None else size
        self._pending.append((entry_id, env, parsed, size))
        self._pending_bytes += size
        self.accepted_requests += 1
        self._wake.set()
        return entry_id

    # -- publisher ---------------------------------------------------------------------------

    async def _recover(self) -> None:
        """Queue what an earlier run left unpublished (before any new request is accepted)."""
        after = 0
        total = 0
        while True:
            entries = await self.ring.read_unpublished(after_id=after, limit=_RECOVERY_PAGE)
            if not entries:
                break
            for entry in entries:
                after = max(after, int(entry.id))
                try:
                    env = decode_envelope(bytes(entry.payload))
                except Exception:
                    log.exception("ring entry %s is not an envelope; releasing it", entry.id)
                    self._release_ready.append(int(entry.id))
                    continue
                self._pending.append((int(entry.id), env, None, len(env.body)))
                self._pending_bytes += len(env.body)
                total += 1
        if total:
            log.info("recovering %d unpublished requests from the ring buffer", total)
            self._wake.set()
        self._release_wake.set()

    async def _adopt_orphans(self) -> None:
        """Move what shards beyond the worker count left unpublished into this shard.

        After a run with more workers, ``ring/<n>.db`` for ``n >= workers`` has no owner: worker 0
        copies its unreleased entries into its own ring buffer (one transaction per page), then
        releases them there. A crash in between only duplicates (at-least-once).
        """
        from eventkit_ring_buffer import RingBuffer

        ring_dir = self.settings.ring_dir
        workers = self.settings.eventkit_workers
        for path in sorted(ring_dir.glob("*.db")):
            if not path.stem.isdigit() or int(path.stem) < workers:
                continue
            fd = os.open(ring_dir / f"{path.stem}.lock", os.O_RDWR | os.O_CREAT, 0o644)
            try:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except OSError:
                    continue  # a worker owns it
                orphan = RingBuffer(path)
                await orphan.open()
                moved = 0
                try:
                    while True:
                        entries = await orphan.read_unpublished(after_id=0, limit=_RECOVERY_PAGE)
                        if not entries:
                            break
                        await self.ring.append_many([e.payload for e in entries])
                        await orphan.mark_published([e.id for e in entries])
                        moved += len(entries)
                finally:
                    await orphan.close()
                if moved:
                    log.info("adopted %d unpublished requests from %s", moved, path)
            finally:
                os.close(fd)

    async def _publish_loop(self) -> None:
        assert self._sink is not None
        while True:
            if not self._pending:
                if self._stopping:
                    return
                self._wake.clear()
                await self._wake.wait()
                continue
            events: list[RawEvent] = []
            entries: list[tuple[int, int]] = []
            pending = self._pending
            while pending and len(events) < _MAX_PUBLISH_EVENTS:
                entry_id, env, parsed, size = pending.popleft()
                self._pending_bytes -= size
                if parsed is None:
                    parsed = reparse(env, self.limits)
                raws = to_raw_events(
                    entry_id,
                    env,
                    parsed,
                    namespace=self._namespace,
                    type_streams=self.type_streams,
                )
                entries.append((entry_id, len(raws)))
                events.extend(raws)
            try:
                await self._sink.deliver(events, entries)
                self.ring.record_published(len(entries))
            except Exception:
                self.ring.record_published(len(entries), "error")
                # The entries stay unpublished in the ring buffer: the next start delivers them.
                log.exception(
                    "publisher failed to deliver %d events of %d requests; they stay in the "
                    "ring buffer and are delivered again on restart",
                    len(events),
                    len(entries),
                )
                for entry_id, _n in entries:
                    self._outstanding.pop(entry_id, None)

    # -- release -----------------------------------------------------------------------------

    def track(self, entries: Sequence[tuple[int, int]]) -> None:
        """Count the events of each entry that must be stored before it is released."""
        for entry_id, n in entries:
            if n == 0:
                self._release_ready.append(entry_id)
            else:
                self._outstanding[entry_id] = self._outstanding.get(entry_id, 0) + n
        if self._release_ready:
            self._release_wake.set()

    def release(self, entry_ids: Sequence[int]) -> None:
        self._release_ready.extend(entry_ids)
        self._release_wake.set()

    def _on_flushed(self, files: Sequence[StoredFile]) -> None:
        if self.settings.eventkit_queue_mode == "pubsub":
            return  # entries were released when published
        # Rows name their entry (one entry holds many events): count per entry in C, then do
        # the bookkeeping once per entry rather than once per event.
        counts: Counter[Any] = Counter()
        for f in files:
            counts.update(f.source_ids)
        outstanding = self._outstanding
        ready = self._release_ready
        for sid, n in counts.items():
            if not isinstance(sid, int):
                continue
            left = outstanding.get(sid)
            if left is None:
                continue
            if left <= n:
                del outstanding[sid]
                ready.append(sid)
            else:
                outstanding[sid] = left - n
        if ready:
            self._release_wake.set()

    async def _release_loop(self) -> None:
        while True:
            if not self._release_ready:
                if self._release_closing:
                    return
                self._release_wake.clear()
                await self._release_wake.wait()
                continue
            ids, self._release_ready = self._release_ready, []
            try:
                await self.ring.mark_published(ids)
            except Exception:
                log.exception("mark_published failed for %d entries; retrying", len(ids))
                self._release_ready[:0] = ids
                await asyncio.sleep(0.5)

    # -- health ------------------------------------------------------------------------------

    def health(self) -> dict[str, bool]:
        ring_ok = self.started and self.ring is not None and bool(self.ring.is_open)
        status: dict[str, bool] = {"ring_buffer": ring_ok}
        if self.loader is not None:
            try:
                status["storage"] = bool(self.loader.health_check())
            except Exception:
                log.exception("storage health check failed")
                status["storage"] = False
        if self._sink is not None:
            status.update(self._sink.health())
        return status

    def ready(self) -> bool:
        return self.started and all(self.health().values())

    def pending(self) -> int:
        return len(self._pending)

    def outstanding_entries(self) -> int:
        return len(self._outstanding)

    # -- workers -----------------------------------------------------------------------------

    def adapt_batch(self, batch: list[RawEvent]) -> list[TypedEvent | DeadLetter]:
        """Adapter + rules over one queue batch: typed events, and dead letters for the rest."""
        results = self.adapter.adapt_many(batch)
        # The common case (every event valid) stays in comprehensions; dead letters are rare.
        out: list[TypedEvent | DeadLetter] = [
            r.event if r.error is None and r.event is not None else _BAD for r in results
        ]
        failed: Counter[str] = Counter()
        if _BAD in out:
            for i, (raw, res) in enumerate(zip(batch, results, strict=True)):
                if out[i] is _BAD:
                    assert res.error is not None
                    out[i] = DeadLetter.from_raw(raw, res.error)
                    failed[res.error.code] += 1
        if self.metrics is not None:
            ok: Counter[str] = Counter([e.type for e in out if isinstance(e, TypedEvent)])
            self.metrics.processed(ok)
            self.metrics.failed(failed)
        return out


class AsyncSink:
    """In-process queue; workers adapt and submit to the loader."""

    def __init__(self, pipeline: Pipeline) -> None:
        from eventkit_queues import AsyncQueue

        s = pipeline.settings
        self.p = pipeline
        self.queue = AsyncQueue(
            self._handle,
            partitions=s.eventkit_partitions,
            max_depth=s.eventkit_queue_max_depth,
            max_batch=s.eventkit_queue_max_batch,
        )

    async def start(self) -> None:
        await self.queue.start()

    async def stop(self) -> None:
        await self.queue.stop(drain=True)

    async def deliver(self, events: list[RawEvent], entries: list[tuple[int, int]]) -> None:
        self.p.track(entries)
        await self.queue.put_many(events)

    async def _handle(self, partition: int, batch: list[RawEvent]) -> None:
        items = self.p.adapt_batch(batch)
        await self.p.loader.submit(items)

    def health(self) -> dict[str, bool]:
        return {"queue": True}


class PubSubSink:
    """Pub/Sub: publish, release entries once published; the archive coordinator stores."""

    def __init__(self, pipeline: Pipeline) -> None:
        self.p = pipeline
        self.queue: Any = None
        self.manager: Any = None

    async def start(self) -> None:
        from eventkit_queues import (
            EventCoordinatorManager,
            EventSubscriptionCoordinator,
            PubSubQueue,
            ensure_subscription,
            ensure_topic,
        )

        s = self.p.settings
        project = s.gcp_project_id
        assert project is not None
        if s.eventkit_pubsub_create:
            await asyncio.to_thread(ensure_topic, project, s.eventkit_pubsub_topic)
            # The archive path writes files and needs no delivery order; an ordered
            # subscription would hand over one unacked message per user at a time, and
            # EventLoader.add acks only after the flush: about one event per user per flush.
            await asyncio.to_thread(
                ensure_subscription,
                project,
                s.eventkit_pubsub_topic,
                s.eventkit_pubsub_subscription,
                enable_message_ordering=False,
            )
        self.queue = PubSubQueue(project, s.eventkit_pubsub_topic)
        await self.queue.start()
        archive = EventSubscriptionCoordinator(
            project_id=project,
            subscription=s.eventkit_pubsub_subscription,
            handler=self.p.loader.add,
            # Messages stay leased until their file is written: allow two flushes' worth in
            # flight, or the count limit could never be reached and every flush would wait
            # for the age limit.
            max_messages=2 * s.eventkit_flush_max_events,
            max_bytes=2 * s.eventkit_flush_max_bytes,
        )
        self.manager = EventCoordinatorManager([archive])
        await self.manager.start_all()

    async def stop(self) -> None:
        if self.queue is not None:
            await self.queue.stop()
        if self.manager is not None:
            # Handlers (EventLoader.add) return once their batch is written: flush now rather
            # than waiting for the age limit, so the coordinators can ack and stop.
            await asyncio.gather(self.manager.stop_all(), self.p.loader.flush())

    async def deliver(self, events: list[RawEvent], entries: list[tuple[int, int]]) -> None:
        from eventkit_queues import PublishError

        todo: Sequence[RawEvent] = events
        delay = 0.2
        while todo:
            try:
                await self.queue.put_many(todo)
                todo = ()
            except PublishError as exc:
                log.warning(
                    "Pub/Sub publish failed for %d of %d events; retrying in %.1f s",
                    len(exc.failed),
                    len(todo),
                    delay,
                )
                todo = list(exc.failed)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 10.0)
        self.p.release([entry_id for entry_id, _n in entries])

    def health(self) -> dict[str, bool]:
        if self.manager is None:
            return {"pubsub": False}
        try:
            return {"pubsub": all(self.manager.health().values())}
        except Exception:
            log.exception("Pub/Sub health check failed")
            return {"pubsub": False}


class _CountingAdapter:
    """The pipeline's adapter, counting processed / failed events (Pub/Sub mode)."""

    def __init__(self, pipeline: Pipeline) -> None:
        self.p = pipeline

    def adapt(self, raw: RawEvent) -> AdaptResult:
        result = self.p.adapter.adapt(raw)
        metrics = self.p.metrics
        if metrics is not None:
            if result.event is not None and result.error is None:
                metrics.processed({result.event.type: 1})
            elif result.error is not None:
                metrics.failed({result.error.code: 1})
        return result
