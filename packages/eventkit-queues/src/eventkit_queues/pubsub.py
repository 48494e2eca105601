"""Google Cloud Pub/Sub as the queue (scale-out): :class:`PubSubQueue` and topic helpers.

Needs the extra ``eventkit-queues[pubsub]``. Every event becomes one message: the data is
``encode_raw_event(event)`` and the ordering key is the event's identity
(:func:`eventkit_core.identity_key`), so one user's events are delivered in order.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import hashlib
import logging
import threading
from collections.abc import Iterable, Sequence
from typing import Any

import google.cloud.pubsub_v1 as pubsub_v1
from eventkit_core import (
    ConfigurationError,
    QueueError,
    RawEvent,
    Sequencer,
    encode_raw_event,
    identity_key,
)
from google.api_core.exceptions import AlreadyExists
from google.cloud.pubsub_v1.types import (
    BatchSettings,
    LimitExceededBehavior,
    PublisherOptions,
    PublishFlowControl,
)
from opentelemetry.metrics import MeterProvider

from eventkit_queues._metrics import PUBSUB, QueueMetrics
from eventkit_queues.errors import PublishError

__all__ = [
    "PubSubQueue",
    "PublishError",
    "ensure_subscription",
    "ensure_topic",
    "ordering_key",
    "subscription_path",
    "topic_path",
]

logger = logging.getLogger("eventkit_queues.pubsub")

MiB = 1024 * 1024
#: Pub/Sub refuses ordering keys longer than this (bytes).
MAX_ORDERING_KEY_BYTES = 1024


def topic_path(project_id: str, topic: str) -> str:
    """``projects/<project>/topics/<topic>`` (a full path is returned as it is)."""
    return topic if topic.startswith("projects/") else f"projects/{project_id}/topics/{topic}"


def subscription_path(project_id: str, subscription: str) -> str:
    """``projects/<project>/subscriptions/<subscription>`` (a full path is returned as it is)."""
    if subscription.startswith("projects/"):
        return subscription
    return f"projects/{project_id}/subscriptions/{subscription}"


def ordering_key(event: RawEvent) -> str:
    """The message ordering key of an event: its identity (:func:`identity_key`).

    A key Pub/Sub would refuse (over 1,024 bytes of UTF-8, or not valid UTF-8) is replaced by
    ``sha256:<hex>`` of it: still one key per identity, so order still holds.
    """
    key = identity_key(event)
    if key.isascii() and len(key) <= MAX_ORDERING_KEY_BYTES:
        return key
    try:
        if len(key.encode()) <= MAX_ORDERING_KEY_BYTES:
            return key
    except UnicodeEncodeError:
        pass
    return "sha256:" + hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()


def ensure_topic(project_id: str, topic: str, *, publisher: Any = None) -> str:
    """Create the topic unless it exists; return its path. Blocking (call it at start-up)."""
    path = topic_path(project_id, topic)
    client = publisher if publisher is not None else pubsub_v1.PublisherClient()
    try:
        client.create_topic(name=path)
    except AlreadyExists:
        pass
    finally:
        if publisher is None:
            _close_transport(client)
    return path


def ensure_subscription(
    project_id: str,
    topic: str,
    subscription: str,
    *,
    enable_message_ordering: bool = True,
    ack_deadline: int = 60,
    subscriber: Any = None,
) -> str:
    """Create the subscription (on ``topic``) unless it exists; return its path. Blocking.

    An existing subscription is left as it is, even if its settings differ.
    ``ack_deadline`` (10-600 s) is how long a delivered message stays leased before the server
    may redeliver it when the client holding it has gone away.
    """
    path = subscription_path(project_id, subscription)
    client = subscriber if subscriber is not None else pubsub_v1.SubscriberClient()
    try:
        client.create_subscription(
            request={
                "name": path,
                "topic": topic_path(project_id, topic),
                "enable_message_ordering": enable_message_ordering,
                "ack_deadline_seconds": ack_deadline,
            }
        )
    except AlreadyExists:
        pass
    finally:
        if subscriber is None:
            _close_transport(client)
    return path


def _close_transport(client: Any) -> None:
    with contextlib.suppress(Exception):
        client.transport.close()


class _Countdown:
    """Resolves an asyncio future (from any thread) once ``count`` calls to ``done`` happened."""

    __slots__ = ("_count", "_future", "_lock", "_loop")

    def __init__(self, loop: asyncio.AbstractEventLoop, count: int) -> None:
        self._loop = loop
        self._future: asyncio.Future[None] = loop.create_future()
        self._count = count
        self._lock = threading.Lock()

    def done(self, _: object = None) -> None:
        with self._lock:
            self._count -= 1
            last = self._count == 0
        if last:
            self._loop.call_soon_threadsafe(self._resolve)

    def _resolve(self) -> None:
        if not self._future.done():
            self._future.set_result(None)

    async def wait(self) -> None:
        await self._future


class PubSubQueue:
    """Publishes events to a Pub/Sub topic with ordering keys; implements ``EventQueue``.

    Args:
        project_id: Google Cloud project (ignored when ``topic`` is a full path).
        topic: topic id, or ``projects/<p>/topics/<t>``.
        publisher: a ``PublisherClient`` created with ``enable_message_ordering=True``; by default
            one is made with the batch and flow-control settings below (and stopped by
            :meth:`stop`). The Google client itself honours ``PUBSUB_EMULATOR_HOST``.
        max_messages, max_bytes, max_latency: client-side batch limits (one publish request
            holds at most this many messages / bytes, and waits at most this many seconds).
        flow_control_max_messages, flow_control_max_bytes: most messages / bytes outstanding
            in the client; beyond them :meth:`put_many` waits (never drops).
        create_topic: create the topic on :meth:`start` if it does not exist.
        ordering_buckets: 0 (default): the ordering key is the identity. N > 0: the ordering
            key is one of N buckets chosen by identity (``Sequencer(N)``): each identity still
            keeps its order, and publishing is much faster with many identities (the client
            batches per ordering key), but an ordered subscription then has at most N messages
            in flight per subscriber (see the README).
        meter_provider: OpenTelemetry meter provider; default the global one.
    """

    def __init__(
        self,
        project_id: str,
        topic: str,
        *,
        publisher: Any = None,
        max_messages: int = 1000,
        max_bytes: int = 1 * MiB,
        max_latency: float = 0.01,
        flow_control_max_messages: int = 10_000,
        flow_control_max_bytes: int = 64 * MiB,
        create_topic: bool = False,
        ordering_buckets: int = 0,
        meter_provider: MeterProvider | None = None,
    ) -> None:
        self.project_id = project_id
        self.topic = topic_path(project_id, topic)
        if publisher is not None and not publisher.publisher_options.enable_message_ordering:
            raise QueueError(
                "PubSubQueue needs a PublisherClient created with "
                "publisher_options=PublisherOptions(enable_message_ordering=True)"
            )
        self._publisher = publisher
        self._owns_publisher = publisher is None
        self._batch_settings = BatchSettings(
            max_bytes=max_bytes, max_latency=max_latency, max_messages=max_messages
        )
        self._flow_control = PublishFlowControl(
            message_limit=flow_control_max_messages,
            byte_limit=flow_control_max_bytes,
            limit_exceeded_behavior=LimitExceededBehavior.BLOCK,
        )
        self._create_topic = create_topic
        if ordering_buckets < 0:
            raise ConfigurationError(f"ordering_buckets must be 0 or more, got {ordering_buckets}")
        self._buckets = Sequencer(ordering_buckets) if ordering_buckets else None
        self._metrics = QueueMetrics(PUBSUB, meter_provider)
        # publish() blocks while flow control is exhausted: it runs on these threads, not the loop
        self._executor: concurrent.futures.ThreadPoolExecutor | None = None
        self._in_flight = 0
        self._active = 0
        self._idle = asyncio.Event()
        self._idle.set()
        self._started = False
        self._stopped = False

    @property
    def publisher(self) -> Any:
        """The ``PublisherClient`` in use (``None`` before :meth:`start` when it is our own)."""
        return self._publisher

    async def start(self) -> None:
        """Create the client (and the topic, with ``create_topic=True``). Idempotent."""
        if self._stopped:
            raise QueueError("this PubSubQueue was stopped: create a new one")
        if self._started:
            return
        if self._publisher is None:
            self._publisher = pubsub_v1.PublisherClient(
                batch_settings=self._batch_settings,
                publisher_options=PublisherOptions(
                    enable_message_ordering=True, flow_control=self._flow_control
                ),
            )
        self._executor = concurrent.futures.ThreadPoolExecutor(
            max_workers=4, thread_name_prefix="eventkit-pubsub-publish"
        )
        if self._create_topic:
            await asyncio.get_running_loop().run_in_executor(
                self._executor,
                lambda: ensure_topic(self.project_id, self.topic, publisher=self._publisher),
            )
        self._started = True
        self._metrics.watch(self)

    async def stop(self) -> None:
        """Refuse new events, wait for every ``put_many`` in progress, then stop the client
        (which sends anything still batched). A publisher passed in is left running."""
        if self._stopped:
            return
        self._stopped = True
        await self._idle.wait()
        executor, self._executor = self._executor, None
        if self._owns_publisher and self._publisher is not None and self._started:
            publisher = self._publisher
            await asyncio.get_running_loop().run_in_executor(executor, publisher.stop)
            _close_transport(publisher)
        if executor is not None:
            executor.shutdown(wait=False)
        self._metrics.unwatch(self)

    async def put(self, event: RawEvent) -> None:
        await self.put_many((event,))

    async def put_many(self, events: Sequence[RawEvent]) -> None:
        """Publish ``events``; return when the broker confirmed every one of them.

        Raises :class:`PublishError` when some were not published: ``.published`` may be
        released, ``.failed`` must be put again (in order). Each failed ordering key has been
        resumed, so the retry can go through.
        """
        if not self._started or self._stopped or self._executor is None:
            raise QueueError(
                "PubSubQueue is not running: call start() first (and not after stop())"
            )
        if not events:
            return
        loop = asyncio.get_running_loop()
        countdown = _Countdown(loop, len(events) + 1)
        self._active += 1
        self._idle.clear()
        self._in_flight += len(events)
        try:
            outcomes = await loop.run_in_executor(
                self._executor, self._publish_all, events, countdown
            )
            await countdown.wait()
        finally:
            self._in_flight -= len(events)
            self._active -= 1
            if not self._active:
                self._idle.set()
        self._settle(events, outcomes)

    def _publish_all(
        self, events: Sequence[RawEvent], countdown: _Countdown
    ) -> list[tuple[str, Any]]:
        """Runs on a worker thread: ``(ordering key, future or exception)`` per event."""
        publish = self._publisher.publish
        topic = self.topic
        key_of = self._key_for
        outcomes: list[tuple[str, Any]] = []
        given_up: set[str] = set()  # keys whose earlier event could not even be handed over
        try:
            for event in events:
                key = key_of(event)
                if key in given_up:
                    outcomes.append((key, QueueError("an earlier event of this key failed")))
                    countdown.done()
                    continue
                try:
                    future = publish(topic, encode_raw_event(event), ordering_key=key)
                except Exception as exc:
                    if key:
                        given_up.add(key)
                    outcomes.append((key, exc))
                    countdown.done()
                    continue
                outcomes.append((key, future))
                future.add_done_callback(countdown.done)
        finally:
            countdown.done()
        return outcomes

    def _key_for(self, event: RawEvent) -> str:
        if self._buckets is None:
            return ordering_key(event)
        return f"bucket-{self._buckets.partition_for_key(identity_key(event))}"

    def _settle(self, events: Sequence[RawEvent], outcomes: list[tuple[str, Any]]) -> None:
        published: list[RawEvent] = []
        failed: list[RawEvent] = []
        errors: list[BaseException] = []
        failed_keys: set[str] = set()
        for event, (key, outcome) in zip(events, outcomes, strict=True):
            error = outcome if isinstance(outcome, BaseException) else outcome.exception()
            if error is None and key and key in failed_keys:
                error = QueueError("published after an earlier event of its key failed")
            if error is None:
                published.append(event)
                continue
            failed.append(event)
            errors.append(error)
            if key:
                failed_keys.add(key)
        self._metrics.enqueued(len(published))
        if not failed:
            return
        for key in failed_keys:
            with contextlib.suppress(ValueError, RuntimeError):
                self._publisher.resume_publish(self.topic, key)
        first = errors[0]
        raise PublishError(
            f"{len(failed)} of {len(events)} events were not published to {self.topic} "
            f"({type(first).__name__}: {first}); put the failed ones again",
            published=published,
            failed=failed,
            errors=errors,
        )

    def depth(self) -> int:
        """Events handed to the client and not yet confirmed by the broker."""
        return self._in_flight

    def depth_observations(self) -> Iterable[tuple[str, str, int]]:
        return [(PUBSUB, "all", self._in_flight)]
