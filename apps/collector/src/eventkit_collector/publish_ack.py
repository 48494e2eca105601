"""``EVENTKIT_ACK_MODE=publish``: answer 200 once Pub/Sub confirmed the request's events.

In the default ``commit`` mode a request is answered after its SQLite ring-buffer commit, and the
publisher hands it to Pub/Sub later. Where the local disk is not durable (Cloud Run's disk is
memory) that commit protects nothing: an instance that is killed loses what it acknowledged but had
not published yet. In ``publish`` mode Pub/Sub is the durable log: :meth:`PublishAck.accept` turns
the request into RawEvents, waits (at most ``timeout`` seconds) until they are published, and only
then returns; the ring buffer is skipped for that request. A publish that fails or takes too long
raises :class:`~eventkit_core.BackpressureError`, which the request path answers with 503 (JSON
``{"code", "message"}`` and ``Retry-After``): the client retries, as the SDKs do on a 503.

Requests arriving together share Publish calls: one batch loop takes every request waiting when
a publish slot is free and sends all their events in one ``put_many`` (at most
:data:`MAX_IN_FLIGHT` at once). Under light load a request is sent alone at once (lowest
latency); under heavy load requests pile up while the slots are busy, so the work is per batch.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Final, Protocol

from eventkit_core import BackpressureError, ConfigurationError, RawEvent

from eventkit_collector.edge import Parsed
from eventkit_collector.envelope import Envelope, to_raw_events

log = logging.getLogger("eventkit_collector.publish_ack")

#: Publish calls in flight at once (the Pub/Sub queue sends from 4 threads).
MAX_IN_FLIGHT: Final = 4
#: Most events in one ``put_many`` (the queue cuts it into Publish requests of 1,000).
MAX_BATCH_EVENTS: Final = 5_000


class Publisher(Protocol):
    """The Pub/Sub queue, as this module uses it (:class:`eventkit_queues.pubsub.PubSubQueue`)."""

    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    async def put_many(self, events: Sequence[RawEvent]) -> None: ...


def ack_mode_problem(queue_mode: str, ack_mode: str) -> str | None:
    """Why this combination of settings cannot start (one line), or ``None``."""
    if ack_mode == "publish" and queue_mode != "pubsub":
        return (
            f"EVENTKIT_ACK_MODE=publish needs EVENTKIT_QUEUE_MODE=pubsub (it is {queue_mode!r}): "
            "only Pub/Sub can be the durable log; use EVENTKIT_ACK_MODE=commit otherwise"
        )
    return None


def check_ack_mode(queue_mode: str, ack_mode: str) -> None:
    problem = ack_mode_problem(queue_mode, ack_mode)
    if problem is not None:
        raise ConfigurationError(problem)


@dataclass(frozen=True, kw_only=True)
class PublishAckConfig:
    #: Longest a request waits for its publish before it is answered 503 (seconds).
    timeout: float = 10.0
    #: Requests (or body bytes) waiting for their publish before new ones get 503 at once.
    max_pending_requests: int = 20_000
    max_pending_bytes: int = 16 * 1024 * 1024
    type_streams: Mapping[str, str] = field(default_factory=dict)
    source_streams: Mapping[str, Mapping[str, str]] = field(default_factory=dict)


@dataclass(slots=True, eq=False)
class _Waiting:
    events: list[RawEvent]
    done: asyncio.Future[None]


class PublishAck:
    """Publishes each accepted request's events before the request is answered."""

    def __init__(self, publisher: Publisher, config: PublishAckConfig) -> None:
        self.publisher = publisher
        self.config = config
        # Derived messageIds (items sent without one) are unique per process run: there is no
        # durable entry whose id could be reused, and a retried request is a new request.
        self._namespace = f"publish-{uuid.uuid4().hex}"
        self._next_id = 0
        self._queue: deque[_Waiting] = deque()
        self._waiting_requests = 0
        self._waiting_bytes = 0
        self._wake = asyncio.Event()
        self._slots = asyncio.Semaphore(MAX_IN_FLIGHT)
        self._in_flight: set[asyncio.Task[None]] = set()
        self._loop_task: asyncio.Task[None] | None = None
        self._started = False
        self._stopping = False
        #: Publish calls made, and requests answered 503 (for tests and logs).
        self.publish_calls = 0
        self.refused = 0

    async def start(self) -> None:
        await self.publisher.start()
        self._loop_task = asyncio.create_task(self._batch_loop(), name="eventkit-publish-ack")
        self._started = True
        log.info("acknowledgement mode publish: 200 once Pub/Sub confirmed the events")

    async def stop(self) -> None:
        """Refuse new requests, finish the publishes in progress, stop the publisher."""
        if not self._started:
            return
        self._started = False
        self._stopping = True
        self._wake.set()
        if self._loop_task is not None:
            await self._loop_task
        await self.publisher.stop()

    async def accept(self, env: Envelope, parsed: Parsed, size: int | None = None) -> int:
        """Publish one request's events; return once Pub/Sub confirmed them (its entry number).

        Raises :class:`BackpressureError` (answered 503) when starting or stopping, when too many
        requests wait, when the publish failed, or when it took longer than the timeout.
        """
        if not self._started:
            raise BackpressureError(
                "the collector is starting or stopping: retry shortly", retry_after=1.0
            )
        cfg = self.config
        if (
            self._waiting_requests >= cfg.max_pending_requests
            or self._waiting_bytes >= cfg.max_pending_bytes
        ):
            self.refused += 1
            raise BackpressureError(
                "too many requests are waiting for their Pub/Sub publish "
                "(EVENTKIT_MAX_PENDING_REQUESTS / EVENTKIT_MAX_PENDING_BYTES): retry shortly",
                retry_after=1.0,
            )
        self._next_id += 1
        entry_id = self._next_id
        events = to_raw_events(
            entry_id,
            env,
            parsed,
            namespace=self._namespace,
            type_streams=cfg.type_streams,
            source_streams=cfg.source_streams,
        )
        nbytes = len(env.body) if size is None else size
        item = _Waiting(events, asyncio.get_running_loop().create_future())
        self._waiting_requests += 1
        self._waiting_bytes += nbytes
        self._queue.append(item)
        self._wake.set()
        try:
            await asyncio.wait_for(asyncio.shield(item.done), cfg.timeout)
        except TimeoutError:
            # Not sent yet: the batch loop skips it. Being sent: it may still arrive (a retry of
            # the client then stores it twice: at least once, as after any unanswered request).
            item.done.cancel()
            self.refused += 1
            raise BackpressureError(
                f"Pub/Sub did not confirm the publish within {cfg.timeout:g} s "
                "(EVENTKIT_ACK_TIMEOUT): retry shortly",
                retry_after=1.0,
            ) from None
        except Exception as exc:
            self.refused += 1
            raise BackpressureError(
                f"the Pub/Sub publish failed ({type(exc).__name__}): retry shortly",
                retry_after=1.0,
            ) from None
        finally:
            self._waiting_requests -= 1
            self._waiting_bytes -= nbytes
        return entry_id

    # -- the batch loop ----------------------------------------------------------------------

    async def _batch_loop(self) -> None:
        while True:
            if not self._queue:
                if self._stopping:
                    break
                self._wake.clear()
                await self._wake.wait()
                continue
            await self._slots.acquire()
            batch = self._take()
            if not batch:
                self._slots.release()
                continue
            task = asyncio.create_task(self._publish(batch))
            self._in_flight.add(task)
            task.add_done_callback(self._in_flight.discard)
        if self._in_flight:
            await asyncio.gather(*self._in_flight, return_exceptions=True)

    def _take(self) -> list[_Waiting]:
        """The requests waiting now (up to :data:`MAX_BATCH_EVENTS` events; always one)."""
        batch: list[_Waiting] = []
        count = 0
        queue = self._queue
        while queue and (not batch or count + len(queue[0].events) <= MAX_BATCH_EVENTS):
            item = queue.popleft()
            if item.done.done():  # timed out while waiting: its client got a 503 already
                continue
            batch.append(item)
            count += len(item.events)
        return batch

    async def _publish(self, batch: list[_Waiting]) -> None:
        events = [event for item in batch for event in item.events]
        self.publish_calls += 1
        try:
            await self.publisher.put_many(events)
        except Exception as exc:
            published = len(getattr(exc, "published", ()))
            log.warning(
                "Pub/Sub publish failed for %d of %d events (%d requests answered 503): %s",
                len(events) - published,
                len(events),
                len(batch),
                exc,
            )
            _settle_batch(batch, published, exc)
        else:
            _settle_batch(batch, len(events), None)
        finally:
            self._slots.release()


def _settle_batch(batch: list[_Waiting], published: int, error: BaseException | None) -> None:
    """Requests whose events are all within the first ``published`` succeed; the rest fail."""
    end = 0
    for item in batch:
        end += len(item.events)
        with contextlib.suppress(asyncio.InvalidStateError):  # timed out meanwhile
            if error is None or end <= published:
                item.done.set_result(None)
            else:
                item.done.set_exception(error)
