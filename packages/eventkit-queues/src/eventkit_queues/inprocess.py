"""The in-process partitioned queue (the embedded default): :class:`AsyncQueue`.

Events are routed to ``partitions`` partitions by identity (:class:`eventkit_core.Sequencer`), so
all events of one user land in one partition, in the order they were put. Each partition has one
consumer task that hands the handler *everything waiting*, up to ``max_batch`` events, in one call,
and takes the next batch only after the handler returned: per-partition FIFO, per-identity order.

Backpressure: a partition holds at most ``max_depth`` waiting events; a producer whose events do
not fit awaits until the consumer makes room (producers are served first come, first served).
Nothing is ever dropped.

Handler failures: the consumer logs the exception, counts the batch as ``result="error"``, waits
(exponential backoff from ``retry_initial`` up to ``retry_max`` seconds) and hands *the same batch*
to the handler again, until it succeeds. A failing handler therefore holds its partition (and,
through backpressure, the producers) instead of losing or reordering events.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Awaitable, Callable, Iterable, Sequence

from eventkit_core import ConfigurationError, QueueError, RawEvent, Sequencer, identity_key
from opentelemetry.metrics import MeterProvider

from eventkit_queues._metrics import ASYNC, QueueMetrics

__all__ = ["AsyncQueue", "Handler"]

logger = logging.getLogger("eventkit_queues.inprocess")

#: ``handler(partition, batch)``: process a batch of events taken from one partition, in order.
Handler = Callable[[int, list[RawEvent]], Awaitable[None]]

_ROUTE_CACHE_SIZE = 65_536


class _Partition:
    __slots__ = ("data", "index", "items", "label", "producers", "space")

    def __init__(self, index: int) -> None:
        self.index = index
        self.label = str(index)
        self.items: deque[RawEvent] = deque()
        self.data = asyncio.Event()  # set: items waiting (or the queue is stopping)
        self.space = asyncio.Event()  # set: the consumer took items (room may be free)
        self.producers = asyncio.Lock()  # producers waiting for room, first come first served


class AsyncQueue:
    """In-process queue of ``partitions`` FIFO partitions; implements ``eventkit_core.EventQueue``.

    Args:
        handler: ``await handler(partition, batch)`` for each batch (see :data:`Handler`).
        partitions: number of partitions, each with its own consumer task.
        max_depth: events waiting per partition before producers are made to wait.
        max_batch: most events handed to one handler call.
        sequencer: routes events to partitions; default ``Sequencer(partitions)``.
        retry_initial: first wait (seconds) before retrying a batch whose handler raised.
        retry_max: longest wait between retries.
        meter_provider: OpenTelemetry meter provider; default the global one.
    """

    def __init__(
        self,
        handler: Handler,
        *,
        partitions: int = 8,
        max_depth: int = 10_000,
        max_batch: int = 1000,
        sequencer: Sequencer | None = None,
        retry_initial: float = 0.1,
        retry_max: float = 10.0,
        meter_provider: MeterProvider | None = None,
    ) -> None:
        if sequencer is None:
            sequencer = Sequencer(partitions)
        elif sequencer.partitions != partitions:
            partitions = sequencer.partitions
        if max_depth < 1:
            raise ConfigurationError(f"max_depth must be at least 1, got {max_depth}")
        if max_batch < 1:
            raise ConfigurationError(f"max_batch must be at least 1, got {max_batch}")
        if retry_initial <= 0 or retry_max < retry_initial:
            raise ConfigurationError(
                f"need 0 < retry_initial <= retry_max, got {retry_initial} and {retry_max}"
            )
        self._handler = handler
        self._sequencer = sequencer
        self._max_depth = max_depth
        self._max_batch = max_batch
        self._retry_initial = retry_initial
        self._retry_max = retry_max
        self._parts = [_Partition(i) for i in range(partitions)]
        self._route_cache: dict[str, int] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self._closed = False  # no new puts
        self._stopping = False  # consumers exit once their partition is empty
        self._aborted = False  # stop(drain=False): waiting producers give up
        self._active_puts = 0  # put_many calls in progress (a draining consumer waits for them)
        self._metrics = QueueMetrics(ASYNC, meter_provider)
        self.handler_errors = 0

    @property
    def partitions(self) -> int:
        return len(self._parts)

    # -- lifecycle -----------------------------------------------------------------------------

    async def start(self) -> None:
        """Start one consumer task per partition (idempotent). Events put before start wait."""
        if self._closed:
            raise QueueError("this AsyncQueue was stopped: create a new one")
        if self._tasks:
            return
        self._tasks = [
            asyncio.create_task(self._consume(part), name=f"eventkit-queue-partition-{part.index}")
            for part in self._parts
        ]
        self._metrics.watch(self)

    async def stop(self, *, drain: bool = True, drain_timeout: float | None = None) -> None:
        """Stop accepting events and stop the consumers.

        With ``drain=True`` the consumers first hand over everything queued (including events
        of producers still waiting for room); with a ``drain_timeout`` (seconds) they are cancelled
        when it passes, and what is left stays queued (``depth()`` says how much). With
        ``drain=False`` they are cancelled at once: events not yet handled are not delivered
        (in eventkit they are still in the durable log, which delivers them again).
        """
        self._closed = True
        self._stopping = True
        if not drain:
            self._aborted = True
        for part in self._parts:
            part.data.set()
            if not drain:
                part.space.set()
        tasks, self._tasks = self._tasks, []
        if tasks and drain:
            _done, pending = await asyncio.wait(tasks, timeout=drain_timeout)
            if pending:
                logger.warning(
                    "AsyncQueue.stop: drain did not finish within %s s; %d events left queued",
                    drain_timeout,
                    self.depth(),
                )
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._metrics.unwatch(self)

    # -- producers -----------------------------------------------------------------------------

    async def put(self, event: RawEvent) -> None:
        """Put one event (see :meth:`put_many`)."""
        await self.put_many((event,))

    async def put_many(self, events: Sequence[RawEvent]) -> None:
        """Route ``events`` to their partitions, in order; await while a partition is full.

        Returns when every event is queued. If the call is cancelled while waiting for room,
        a prefix of the events of that partition may already be queued.
        """
        if self._closed:
            raise QueueError("the queue is stopped and accepts no events")
        if not events:
            return
        self._active_puts += 1
        try:
            await self._route_and_put(events)
        finally:
            self._active_puts -= 1
            if self._stopping and not self._active_puts:
                for part in self._parts:
                    part.data.set()  # draining consumers may finish now

    async def _route_and_put(self, events: Sequence[RawEvent]) -> None:
        if len(self._parts) == 1:
            await self._put_partition(self._parts[0], events)
            return
        groups: list[list[RawEvent]] = [[] for _ in self._parts]
        cache = self._route_cache
        for event in events:
            key = identity_key(event)
            index = cache.get(key)
            if index is None:
                if len(cache) >= _ROUTE_CACHE_SIZE:
                    cache.clear()
                index = cache[key] = self._sequencer.partition_for_key(key)
            groups[index].append(event)
        for part, group in zip(self._parts, groups, strict=True):
            if group:
                await self._put_partition(part, group)

    async def _put_partition(self, part: _Partition, group: Sequence[RawEvent]) -> None:
        items = part.items
        if not part.producers.locked() and len(items) + len(group) <= self._max_depth:
            items.extend(group)  # fast path: room, and nobody waiting before us
            part.data.set()
            self._metrics.enqueued(len(group))
            return
        async with part.producers:
            done = 0
            try:
                while done < len(group):
                    if self._aborted:
                        raise QueueError(
                            f"the queue was stopped: {len(group) - done} events were not queued"
                        )
                    room = self._max_depth - len(items)
                    if room <= 0:
                        part.space.clear()
                        await part.space.wait()
                        continue
                    chunk = group[done : done + room]
                    items.extend(chunk)
                    done += len(chunk)
                    part.data.set()
            finally:
                self._metrics.enqueued(done)

    # -- consumers -----------------------------------------------------------------------------

    async def _consume(self, part: _Partition) -> None:
        items = part.items
        max_batch = self._max_batch
        while True:
            if not items:
                if self._stopping and not self._active_puts:
                    return
                part.data.clear()
                await part.data.wait()
                continue
            if len(items) <= max_batch:
                batch = list(items)
                items.clear()
            else:
                popleft = items.popleft
                batch = [popleft() for _ in range(max_batch)]
            part.space.set()
            self._metrics.dequeued(len(batch))
            await self._deliver(part.index, batch)

    async def _deliver(self, index: int, batch: list[RawEvent]) -> None:
        delay = self._retry_initial
        while True:
            try:
                await self._handler(index, batch)
            except Exception:
                self.handler_errors += 1
                self._metrics.processed(len(batch), ok=False)
                logger.exception(
                    "queue handler failed on partition %d (batch of %d events); retrying in %.2f s",
                    index,
                    len(batch),
                    delay,
                )
                await asyncio.sleep(delay)
                delay = min(delay * 2, self._retry_max)
                continue
            self._metrics.processed(len(batch), ok=True)
            return

    # -- introspection -------------------------------------------------------------------------

    def depth(self) -> int:
        """Events queued and not yet handed to the handler, over all partitions."""
        return sum(len(part.items) for part in self._parts)

    def partition_depths(self) -> list[int]:
        """Events queued per partition."""
        return [len(part.items) for part in self._parts]

    def depth_observations(self) -> Iterable[tuple[str, str, int]]:
        return [(ASYNC, part.label, len(part.items)) for part in self._parts]
