"""Where the publisher hands events: one :class:`Sink` per queue mode.

* :class:`InProcessSink` (``async``): the in-process queue; its workers adapt each batch and
  submit it to the EventLoader. Entries are released once their events are in written files.
* :class:`PubSubSink` (``pubsub``): publish to the topic, release the entries once published; an
  archive subscription coordinator consumes the topic with ``handler=EventLoader.add``.

Sinks get narrow callbacks (count an entry's events, release entries, flush the loader), never
the pipeline itself.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Final, Protocol

from eventkit_core import AdaptResult, DeadLetter, RawEvent, TypedEvent
from eventkit_queues import AsyncQueue, PublishError

from eventkit_collector.deadlog import DeadLetterLog
from eventkit_collector.release import EntryCounts

if TYPE_CHECKING:
    # Only Pub/Sub mode imports the Google clients (about 65 MB of RSS in every process).
    from eventkit_queues.coordinator import EventCoordinatorManager
    from eventkit_queues.pubsub import PubSubQueue

log = logging.getLogger("eventkit_collector.sinks")

Item = TypedEvent | DeadLetter
#: Longest wait between two attempts at publishing what Pub/Sub refused.
_MAX_PUBLISH_DELAY: Final = 10.0


class Sink(Protocol):
    """Takes the events of some ring-buffer entries; see the module docstring."""

    async def start(self) -> None: ...

    async def stop(self) -> None:
        """Hand on everything delivered (a drain)."""
        ...

    async def deliver(self, events: list[RawEvent], entries: EntryCounts) -> None: ...

    def health(self) -> dict[str, bool]: ...


class EventCounts(Protocol):
    """Where adapted events are counted (the collector's metrics)."""

    def processed(self, counts: dict[str, int]) -> None: ...

    def failed(self, counts: dict[str, int]) -> None: ...


class BatchAdapter(Protocol):
    def adapt(self, raw: RawEvent) -> AdaptResult: ...

    def adapt_many(self, raws: Sequence[RawEvent]) -> list[AdaptResult]: ...


class CountingAdapter:
    """The schema adapter, turning failures into dead letters and counting both outcomes."""

    def __init__(
        self,
        adapter: BatchAdapter,
        counts: EventCounts | None,
        dead_log: DeadLetterLog | None = None,
        tap: Callable[[Sequence[Item]], None] | None = None,
    ) -> None:
        self._adapter = adapter
        self._counts = counts
        #: The live debugger's tap (sees every adapted item; near-free while nobody watches).
        self.tap = tap
        # Operators see dead letters in the log, rate-limited (one line per kind per minute).
        self.dead_log = dead_log if dead_log is not None else DeadLetterLog()

    def adapt(self, raw: RawEvent) -> AdaptResult:
        """One event (Pub/Sub mode: the archive coordinator's ``EventLoader.add`` adapts)."""
        result = self._adapter.adapt(raw)
        if result.error is not None:
            self.dead_log.record(raw.stream, result.error.code, result.error.message)
        if self.tap is not None:
            error = result.error
            self.tap([DeadLetter.from_raw(raw, error) if error is not None else result.event])  # type: ignore[list-item]
        if self._counts is not None:
            if result.event is not None and result.error is None:
                self._counts.processed({result.event.type: 1})
            elif result.error is not None:
                self._counts.failed({result.error.code: 1})
        return result

    def adapt_batch(self, batch: Sequence[RawEvent]) -> list[Item]:
        """Typed events, and dead letters for the rest (in-process mode, one queue batch)."""
        results = self._adapter.adapt_many(batch)
        # The common case (every event valid) stays in comprehensions; dead letters are rare.
        out: list[Item | None] = [r.event if r.error is None else None for r in results]
        failed: Counter[str] = Counter()
        if None in out:
            for i, (raw, res) in enumerate(zip(batch, results, strict=True)):
                if out[i] is None:
                    error = res.error
                    assert error is not None  # an AdaptResult holds an event or an error
                    out[i] = DeadLetter.from_raw(raw, error)
                    failed[error.code] += 1
                    self.dead_log.record(raw.stream, error.code, error.message)
        items: list[Item] = out  # type: ignore[assignment]  # no None is left
        if self.tap is not None:
            self.tap(items)
        if self._counts is not None:
            self._counts.processed(Counter([e.type for e in items if isinstance(e, TypedEvent)]))
            self._counts.failed(failed)
        return items


class InProcessSink:
    """The in-process queue; its workers adapt and submit to the loader."""

    def __init__(
        self,
        queue: AsyncQueue,
        track: Callable[[EntryCounts], None],
    ) -> None:
        self.queue = queue
        self._track = track

    async def start(self) -> None:
        await self.queue.start()

    async def stop(self) -> None:
        await self.queue.stop(drain=True)

    async def deliver(self, events: list[RawEvent], entries: EntryCounts) -> None:
        # Counted before the events are queued: a worker may store them before put_many returns.
        self._track(entries)
        await self.queue.put_many(events)

    def health(self) -> dict[str, bool]:
        return {"queue": True}


def queue_worker(
    adapt_batch: Callable[[Sequence[RawEvent]], list[Item]],
    submit: Callable[[Sequence[Item]], Awaitable[None]],
) -> Callable[[int, list[RawEvent]], Awaitable[None]]:
    """The in-process queue's handler: adapt one batch, submit it to the loader."""

    async def handle(partition: int, batch: list[RawEvent]) -> None:
        await submit(adapt_batch(batch))

    return handle


class PubSubSink:
    """Publish; release entries once published. The archive coordinator stores."""

    def __init__(
        self,
        queue: PubSubQueue,
        archive: EventCoordinatorManager,
        *,
        release: Callable[[Iterable[int]], None],
        flush: Callable[[], Awaitable[None]],
        prepare: Callable[[], Awaitable[None]] | None = None,
        retry_initial: float = 0.2,
    ) -> None:
        self.queue = queue
        self.archive = archive
        self._release = release
        self._flush = flush
        self._prepare = prepare
        self._retry_initial = retry_initial
        self._started = False
        self.publish_failures = 0

    async def start(self) -> None:
        if self._prepare is not None:
            await self._prepare()
        await self.queue.start()
        await self.archive.start_all()
        self._started = True

    async def stop(self) -> None:
        await self.queue.stop()
        # Handlers (EventLoader.add) return once their batch is written: flush now rather
        # than waiting for the age limit, so the coordinators can ack and stop.
        await asyncio.gather(self.archive.stop_all(), self._flush())

    async def deliver(self, events: list[RawEvent], entries: EntryCounts) -> None:
        """Publish every event, retrying what Pub/Sub refused (in order), then release."""
        todo: Sequence[RawEvent] = events
        delay = self._retry_initial
        while todo:
            try:
                await self.queue.put_many(todo)
                todo = ()
            except PublishError as exc:
                self.publish_failures += 1
                log.warning(
                    "Pub/Sub publish failed for %d of %d events; retrying in %.1f s: %s",
                    len(exc.failed),
                    len(todo),
                    delay,
                    exc,
                )
                todo = list(exc.failed)
                await asyncio.sleep(delay)
                delay = min(delay * 2, _MAX_PUBLISH_DELAY)
        self._release([entry_id for entry_id, _n in entries])

    def health(self) -> dict[str, bool]:
        if not self._started:
            return {"pubsub": False}
        try:
            return {"pubsub": all(self.archive.health().values())}
        except Exception:
            log.exception("Pub/Sub health check failed")
            return {"pubsub": False}
