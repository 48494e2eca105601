"""Pub/Sub subscription coordinators (one subscription per consumer, e.g. realtime and archive).

An :class:`EventSubscriptionCoordinator` runs a streaming pull on one subscription and hands each
message, decoded to a :class:`~eventkit_core.RawEvent`, to an async handler on the event loop
that called :meth:`~EventSubscriptionCoordinator.start`. The message is acked only after the
handler returned (for a batching handler such as ``EventLoader.add``, which returns once the
batch holding the event is durably written: after the durable write), and nacked (so redelivered)
when it raised. The Google client's callback threads only decode and schedule: they never wait
for a handler.

Messages that are not an encoded RawEvent ("poison") can never succeed: they are given to
``on_poison(data, error)`` when set (acked when it returns, nacked when it raises); without it
they are logged, counted as failed and acked, so that they do not come back forever.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import google.cloud.pubsub_v1 as pubsub_v1
from eventkit_core import ConfigurationError, QueueError, RawEvent, decode_raw_event
from google.cloud.pubsub_v1.types import FlowControl
from opentelemetry.metrics import MeterProvider

from eventkit_queues._metrics import PUBSUB, QueueMetrics
from eventkit_queues.pubsub import MiB, subscription_path

__all__ = ["EventCoordinatorManager", "EventSubscriptionCoordinator", "PoisonHandler"]

logger = logging.getLogger("eventkit_queues.coordinator")

#: ``on_poison(message data, decode error)``: e.g. write a dead letter.
PoisonHandler = Callable[[bytes, Exception], Awaitable[None]]

_METRICS_FLUSH_SECONDS = 1.0
_LOG_EVERY_SECONDS = 5.0


class EventSubscriptionCoordinator:
    """Consumes one Pub/Sub subscription into an async ``handler(event)``.

    Args:
        project_id: Google Cloud project (ignored when ``subscription`` is a full path).
        subscription: subscription id, or ``projects/<p>/subscriptions/<s>``.
        handler: ``await handler(event)`` per message; return = done (ack), raise = retry (nack).
        max_messages, max_bytes: flow control: most messages / bytes delivered and not yet
            acked or nacked (so at most ``max_messages`` handler calls run at once).
        name: name in health reports and logs; default the subscription id.
        subscriber: a ``SubscriberClient``; by default one is made (and closed by :meth:`stop`).
            The Google client itself honours ``PUBSUB_EMULATOR_HOST``.
        on_poison: what to do with a message that is not an encoded RawEvent (see the module).
        max_lease_extension: seconds (10-600) each lease of a delivered message lasts before
            the client extends it; 0 = the client's default (60 s, then adaptive). It bounds how
            long messages held by a coordinator that went away stay invisible.
        unhealthy_after: seconds the handler may keep failing, with no success in between,
            before :meth:`is_healthy` says False (a store that is down, a handler that always
            raises): the stream still pulls, so only health tells an operator. The next
            success makes it healthy again.
        meter_provider: OpenTelemetry meter provider; default the global one.
    """

    def __init__(
        self,
        project_id: str,
        subscription: str,
        handler: Callable[[RawEvent], Awaitable[None]],
        *,
        max_messages: int = 1000,
        max_bytes: int = 100 * MiB,
        name: str | None = None,
        subscriber: Any = None,
        on_poison: PoisonHandler | None = None,
        max_lease_extension: int = 0,
        unhealthy_after: float = 30.0,
        meter_provider: MeterProvider | None = None,
    ) -> None:
        if unhealthy_after <= 0:
            raise ValueError(f"unhealthy_after must be > 0 seconds, not {unhealthy_after}")
        self._unhealthy_after = unhealthy_after
        # monotonic time of the first handler failure since the last success (None: none)
        self._failing_since: float | None = None
        self.subscription = subscription_path(project_id, subscription)
        self.name = name or self.subscription.rsplit("/", 1)[-1]
        self._handler = handler
        self._on_poison = on_poison
        self._flow_control = FlowControl(
            max_messages=max_messages,
            max_bytes=max_bytes,
            max_duration_per_lease_extension=max_lease_extension,
        )
        self._subscriber = subscriber
        self._owns_subscriber = subscriber is None
        self._metrics = QueueMetrics(PUBSUB, meter_provider)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stream: Any = None
        self._flusher: asyncio.Task[None] | None = None
        # shared with the client's threads: guarded by _lock
        self._lock = threading.Lock()
        self._stopping = False
        self._closing = False
        self._held: list[Any] = []
        self._in_flight = 0
        # loop-only state
        self._tasks: set[asyncio.Task[None]] = set()
        self._idle = asyncio.Event()  # set by the last handler to finish once stopping
        self._running = False
        self._stream_error: BaseException | None = None
        self._last_error: str | None = None
        self._last_log = 0.0
        self.received = 0
        self.processed = 0
        self.failed = 0
        self.poison = 0
        self._flushed = (0, 0, 0)

    # -- lifecycle -----------------------------------------------------------------------------

    async def start(self) -> None:
        """Open the streaming pull. Handlers run on the event loop calling this. Idempotent."""
        if self._running:
            return
        if self._stream is not None:
            raise QueueError(
                f"coordinator {self.name} was stopped: create a new one", code="coordinator_stopped"
            )
        self._loop = asyncio.get_running_loop()
        if self._subscriber is None:
            self._subscriber = pubsub_v1.SubscriberClient()
        self._stream = self._subscriber.subscribe(
            self.subscription,
            callback=self._on_message,
            flow_control=self._flow_control,
            await_callbacks_on_shutdown=True,
        )
        self._stream.add_done_callback(self._on_stream_done)
        self._running = True
        self._flusher = asyncio.create_task(self._flush_metrics_forever())
        self._metrics.watch(self)

    async def stop(self, timeout: float = 30) -> None:  # noqa: ASYNC109
        """Stop gracefully: stop taking messages, wait up to ``timeout`` seconds for the handlers
        running and ack/nack their messages, nack what was delivered meanwhile, then close.

        Handlers still running after ``timeout`` are cancelled and their messages nacked:
        Pub/Sub delivers them again (to this or another subscriber). Nothing unacked is lost.
        Settling happens while the stream is still open, earlier messages first, so that an
        ordering key's messages are released in order.
        """
        if not self._running:
            return
        loop = asyncio.get_running_loop()
        with self._lock:
            self._stopping = True  # deliveries from now on are held, then nacked below
            busy = self._in_flight > 0
        if busy:
            self._idle.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._idle.wait(), timeout)
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        with self._lock:
            held, self._held = self._held, []
            self._closing = True  # later deliveries are nacked at once
        for message in held:
            message.nack()
        stream = self._stream
        stream.cancel()  # sends the acks/nacks queued above, then closes
        with contextlib.suppress(Exception):  # the stream's own error is reported by health()
            await loop.run_in_executor(None, stream.result, timeout)
        if self._owns_subscriber:
            await loop.run_in_executor(None, self._subscriber.close)
        if self._flusher is not None:
            self._flusher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._flusher
        self._flush_metrics()
        self._metrics.unwatch(self)
        self._running = False

    # -- the client's callback threads ---------------------------------------------------------

    def _on_message(self, message: Any) -> None:
        loop = self._loop
        with self._lock:
            if self._closing or loop is None:
                accepted = False
            elif self._stopping:
                self._held.append(message)  # nacked by stop() once the handlers are done
                return
            else:
                accepted = True
                self._in_flight += 1
        if not accepted:
            message.nack()
            return
        try:
            coro = self._process(message)
            try:
                asyncio.run_coroutine_threadsafe(coro, loop)  # type: ignore[arg-type]
            except RuntimeError:  # the loop is closed
                coro.close()
                raise
        except Exception:
            with self._lock:
                self._in_flight -= 1
            message.nack()

    def _on_stream_done(self, future: Any) -> None:
        try:
            error = future.exception()
        except BaseException as exc:  # cancelled
            error = None if isinstance(exc, Exception) else exc
        if error is not None and not self._stopping:
            self._stream_error = error
            logger.error("subscription %s stopped pulling: %s", self.subscription, error)

    # -- the event loop ------------------------------------------------------------------------

    async def _process(self, message: Any) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        self.received += 1
        try:
            data: bytes = message.data
            try:
                event = decode_raw_event(data)
            except Exception as exc:
                await self._poison(message, data, exc)
                return
            try:
                await self._handler(event)
            except asyncio.CancelledError:
                message.nack()
                raise
            except Exception as exc:
                message.nack()
                self.failed += 1
                if self._failing_since is None:
                    self._failing_since = time.monotonic()
                self._note_failure("handler failed", exc)
                return
            message.ack()
            self.processed += 1
            self._failing_since = None
        finally:
            self._tasks.discard(task)
            with self._lock:
                self._in_flight -= 1
                idle = self._stopping and self._in_flight == 0
            if idle:
                self._idle.set()

    async def _poison(self, message: Any, data: bytes, error: Exception) -> None:
        self.poison += 1
        self.failed += 1
        if self._on_poison is None:
            logger.error(
                "subscription %s: message %s is not an encoded RawEvent (%s); acked and "
                "dropped (pass on_poison= to keep such messages)",
                self.subscription,
                message.message_id,
                error,
            )
            message.ack()
            return
        try:
            await self._on_poison(data, error)
        except asyncio.CancelledError:
            message.nack()
            raise
        except Exception as exc:
            message.nack()
            self._note_failure("on_poison failed", exc)
            return
        message.ack()

    def _note_failure(self, what: str, error: Exception) -> None:
        self._last_error = f"{what}: {type(error).__name__}: {error}"
        now = time.monotonic()
        if now - self._last_log >= _LOG_EVERY_SECONDS:  # no log flood when a store is down
            self._last_log = now
            logger.warning(
                "subscription %s: %s (message nacked; %d failures so far)",
                self.subscription,
                what,
                self.failed,
                exc_info=error,
            )

    async def _flush_metrics_forever(self) -> None:
        while True:
            await asyncio.sleep(_METRICS_FLUSH_SECONDS)
            self._flush_metrics()

    def _flush_metrics(self) -> None:
        received, processed, failed = self.received, self.processed, self.failed
        last_received, last_processed, last_failed = self._flushed
        self._metrics.dequeued(received - last_received)
        self._metrics.processed(processed - last_processed, ok=True)
        self._metrics.processed(failed - last_failed, ok=False)
        self._flushed = (received, processed, failed)

    # -- health --------------------------------------------------------------------------------

    def is_healthy(self) -> bool:
        """Started, not stopped, the streaming pull still running, and the handler not failing
        for ``unhealthy_after`` seconds without a success."""
        failing = self._failing_since
        if failing is not None and time.monotonic() - failing >= self._unhealthy_after:
            return False
        return self._running and self._stream is not None and not self._stream.done()

    def health(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "subscription": self.subscription,
            "healthy": self.is_healthy(),
            "running": self._running,
            "in_flight": self._in_flight,
            "received": self.received,
            "processed": self.processed,
            "failed": self.failed,
            "poison": self.poison,
            "last_error": self._last_error
            if self._stream_error is None
            else f"stream: {self._stream_error}",
        }

    def depth(self) -> int:
        """Messages delivered to this coordinator and not yet acked or nacked."""
        return self._in_flight

    def depth_observations(self) -> list[tuple[str, str, int]]:
        return [(PUBSUB, "all", self._in_flight)]


class EventCoordinatorManager:
    """Starts, stops and reports on several coordinators together (e.g. realtime + archive)."""

    def __init__(self, coordinators: Sequence[EventSubscriptionCoordinator]) -> None:
        names = [c.name for c in coordinators]
        if len(set(names)) != len(names):
            raise ConfigurationError(
                f"coordinator names must be unique, got {names}: pass name=..."
            )
        self.coordinators = list(coordinators)

    async def start_all(self) -> None:
        """Start every coordinator; if one fails to start, stop those started and re-raise."""
        started: list[EventSubscriptionCoordinator] = []
        try:
            for coordinator in self.coordinators:
                await coordinator.start()
                started.append(coordinator)
        except BaseException:
            await asyncio.gather(*(c.stop() for c in started), return_exceptions=True)
            raise

    async def stop_all(self, timeout: float = 30) -> None:  # noqa: ASYNC109
        """Stop every coordinator at once (each gracefully, see ``stop``)."""
        results = await asyncio.gather(
            *(c.stop(timeout) for c in self.coordinators), return_exceptions=True
        )
        errors = [r for r in results if isinstance(r, BaseException)]
        if errors:
            raise errors[0]

    def health(self) -> dict[str, bool]:
        """``{name: healthy}`` per coordinator."""
        return {c.name: c.is_healthy() for c in self.coordinators}
