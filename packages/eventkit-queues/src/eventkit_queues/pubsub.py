"""Google Cloud Pub/Sub as the queue (scale-out): :class:`PubSubQueue` and topic helpers.

Needs the extra ``eventkit-queues[pubsub]``. Every event becomes one message: the data is
``encode_raw_event(event)`` and the ordering key is the event's identity
(:func:`eventkit_core.identity_key`), so one user's events are delivered in order. Messages of
many ordering keys go in one Publish request (the Google client's own ``publish()`` batches
per ordering key, which with many users means about one message per request).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import functools
import hashlib
import logging
from collections.abc import Callable, Iterable, Iterator, Sequence
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
from google.api_core import exceptions as api_exceptions
from google.api_core.exceptions import AlreadyExists
from google.api_core.retry import Retry, if_exception_type
from google.pubsub_v1 import PublisherClient as GapicPublisherClient
from google.pubsub_v1.types import PublishRequest, PubsubMessage
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
#: Most messages in one Publish request (Pub/Sub's limit).
MAX_REQUEST_MESSAGES = 1000
#: Most message bytes in one Publish request (Pub/Sub refuses requests over 10 MB).
MAX_REQUEST_BYTES = 9 * MiB
#: Bytes a message adds to a request beyond its data and ordering key (protobuf framing).
_OVERHEAD = 16
#: Errors after which a Publish request is sent again (within ``retry_deadline``).
_TRANSIENT = (
    api_exceptions.Aborted,
    api_exceptions.Cancelled,
    api_exceptions.DeadlineExceeded,
    api_exceptions.InternalServerError,
    api_exceptions.ResourceExhausted,
    api_exceptions.ServiceUnavailable,
    api_exceptions.Unknown,
)
# raw protobuf classes: building 1,000 messages costs a third of the proto-plus wrappers
_PubsubMessagePb = PubsubMessage.pb()
_PublishRequestPb = PublishRequest.pb()


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


class PubSubQueue:
    """Publishes events to a Pub/Sub topic with ordering keys; implements ``EventQueue``.

    Each :meth:`put_many` sends its events in Publish requests of up to ``max_messages``
    messages / ``max_bytes`` bytes, holding *many ordering keys per request*, one request after
    the other, and stops at the first request that failed. Pub/Sub keeps the order of the
    messages of one ordering key within a request and across sequential requests.

    Args:
        project_id: Google Cloud project (ignored when ``topic`` is a full path).
        topic: topic id, or ``projects/<p>/topics/<t>``.
        publisher: a ``PublisherClient`` (``google.cloud.pubsub_v1`` or the generated
            ``google.pubsub_v1`` one) whose Publish RPC is used; by default a generated client
            is made on :meth:`start` (and closed by :meth:`stop`). Both honour
            ``PUBSUB_EMULATOR_HOST``. Its batch / ordering settings play no part.
        max_messages: most messages in one Publish request (at most 1,000, Pub/Sub's limit).
        max_bytes: most bytes of messages in one Publish request (at most 9 MiB: Pub/Sub
            refuses requests over 10 MB). A single larger message goes alone.
        max_latency, flow_control_max_messages, flow_control_max_bytes: accepted for
            compatibility and ignored: nothing waits to be batched, and at most 4 ``put_many``
            calls send at once (others wait for a thread, never drop).
        create_topic: create the topic on :meth:`start` if it does not exist.
        ordering_buckets: 0 (default): the ordering key is the identity. N > 0: the ordering
            key is one of N buckets chosen by identity (``Sequencer(N)``): each identity still
            keeps its order, but an ordered subscription then has at most N messages in flight
            per subscriber (see the README).
        request_timeout: seconds one attempt of a Publish request may take.
        retry_deadline: seconds a request is retried for on transient errors (unavailable,
            deadline exceeded, ...), with backoff; then it counts as failed. A retried request
            may have been stored already: the events may arrive twice (at least once).
        meter_provider: OpenTelemetry meter provider; default the global one.
    """

    def __init__(
        self,
        project_id: str,
        topic: str,
        *,
        publisher: Any = None,
        max_messages: int = MAX_REQUEST_MESSAGES,
        max_bytes: int = MAX_REQUEST_BYTES,
        max_latency: float = 0.0,
        flow_control_max_messages: int = 10_000,
        flow_control_max_bytes: int = 64 * MiB,
        create_topic: bool = False,
        ordering_buckets: int = 0,
        request_timeout: float = 30.0,
        retry_deadline: float = 60.0,
        meter_provider: MeterProvider | None = None,
    ) -> None:
        del max_latency, flow_control_max_messages, flow_control_max_bytes  # see the docstring
        self.project_id = project_id
        self.topic = topic_path(project_id, topic)
        if max_messages < 1 or max_bytes < 1:
            raise ConfigurationError("max_messages and max_bytes must be positive")
        if ordering_buckets < 0:
            raise ConfigurationError(f"ordering_buckets must be 0 or more, got {ordering_buckets}")
        self._publisher = publisher
        self._owns_publisher = publisher is None
        self._max_messages = min(max_messages, MAX_REQUEST_MESSAGES)
        self._max_bytes = min(max_bytes, MAX_REQUEST_BYTES)
        self._timeout = request_timeout
        self._retry = Retry(
            initial=0.1,
            maximum=5.0,
            multiplier=2.0,
            predicate=if_exception_type(*_TRANSIENT),
            timeout=retry_deadline,
        )
        self._create_topic = create_topic
        self._buckets = Sequencer(ordering_buckets) if ordering_buckets else None
        self._metrics = QueueMetrics(PUBSUB, meter_provider)
        self._send: Callable[..., Any] | None = None
        # the Publish RPC blocks: put_many sends from these threads, never from the event loop
        self._executor: concurrent.futures.ThreadPoolExecutor | None = None
        self._in_flight = 0
        self._active = 0
        self._idle = asyncio.Event()
        self._idle.set()
        self._started = False
        self._stopped = False

    @property
    def publisher(self) -> Any:
        """The publisher client in use (``None`` before :meth:`start` when it is our own)."""
        return self._publisher

    async def start(self) -> None:
        """Create the client (and the topic, with ``create_topic=True``). Idempotent."""
        if self._stopped:
            raise QueueError("this PubSubQueue was stopped: create a new one")
        if self._started:
            return
        if self._publisher is None:
            self._publisher = GapicPublisherClient()
        publisher = self._publisher
        if isinstance(publisher, pubsub_v1.PublisherClient):
            # the high-level client overrides publish() with its batching one: use the RPC
            self._send = functools.partial(GapicPublisherClient.publish, publisher)
        else:
            self._send = publisher.publish
        self._executor = concurrent.futures.ThreadPoolExecutor(
            max_workers=4, thread_name_prefix="eventkit-pubsub-publish"
        )
        if self._create_topic:
            await asyncio.get_running_loop().run_in_executor(
                self._executor,
                lambda: ensure_topic(self.project_id, self.topic, publisher=publisher),
            )
        self._started = True
        self._metrics.watch(self)

    async def stop(self) -> None:
        """Refuse new events, wait for every ``put_many`` in progress, then close our own
        client. A publisher passed in is left open."""
        if self._stopped:
            return
        self._stopped = True
        await self._idle.wait()
        executor, self._executor = self._executor, None
        if executor is not None:  # a cancelled put_many may still be sending: let it end
            await asyncio.to_thread(executor.shutdown, wait=True)
        if self._owns_publisher and self._publisher is not None and self._started:
            _close_transport(self._publisher)
        self._metrics.unwatch(self)

    async def put(self, event: RawEvent) -> None:
        await self.put_many((event,))

    async def put_many(self, events: Sequence[RawEvent]) -> None:
        """Publish ``events``; return when the broker confirmed every one of them.

        The requests are sent one after the other; at the first one that fails, the rest are
        not sent. Raises :class:`PublishError`: ``.published`` (the requests before) may be
        released, ``.failed`` (that request and everything after it) must be put again, in
        order. Call it sequentially to keep order across calls.
        """
        if not self._started or self._stopped or self._executor is None:
            raise QueueError(
                "PubSubQueue is not running: call start() first (and not after stop())"
            )
        if not events:
            return
        self._active += 1
        self._idle.clear()
        self._in_flight += len(events)
        try:
            sent, failed_request, error = await asyncio.get_running_loop().run_in_executor(
                self._executor, self._send_all, events
            )
        finally:
            self._in_flight -= len(events)
            self._active -= 1
            if not self._active:
                self._idle.set()
        self._metrics.enqueued(sent)
        if error is None:
            return
        failed = list(events[sent:])
        skipped = QueueError(
            f"not sent: an earlier publish request of this put_many failed "
            f"({type(error).__name__}: {error})"
        )
        errors = [error] * failed_request + [skipped] * (len(failed) - failed_request)
        raise PublishError(
            f"{len(failed)} of {len(events)} events were not published to {self.topic} "
            f"({type(error).__name__}: {error}); put the failed ones again",
            published=events[:sent],
            failed=failed,
            errors=errors,
        )

    def _send_all(self, events: Sequence[RawEvent]) -> tuple[int, int, BaseException | None]:
        """Runs on a worker thread: send the requests in order; stop at the first failure.

        Returns how many events (a prefix) were published, how many the failed request held,
        and its error (``0, None`` when none failed).
        """
        send = self._send
        assert send is not None
        sent = 0
        requests = self._requests(events)
        while True:
            try:
                messages = next(requests, None)
            except Exception as exc:  # an event that cannot be encoded: it and the rest fail
                logger.warning("cannot encode an event for %s: %s", self.topic, exc)
                return sent, len(events) - sent, exc
            if messages is None:
                return sent, 0, None
            request = PublishRequest.wrap(_PublishRequestPb(topic=self.topic, messages=messages))
            call = functools.partial(send, request=request, retry=None, timeout=self._timeout)
            try:
                self._retry(call)()  # bounded: transient errors only, for retry_deadline seconds
            except Exception as exc:
                logger.warning(
                    "publish of %d messages to %s failed: %s", len(messages), self.topic, exc
                )
                return sent, len(messages), exc
            sent += len(messages)

    def _requests(self, events: Sequence[RawEvent]) -> Iterator[list[Any]]:
        """The messages of ``events``, in order, cut into requests within the limits."""
        max_messages, max_bytes = self._max_messages, self._max_bytes
        key_of = self._key_for
        batch: list[Any] = []
        size = 0
        for event in events:
            data = encode_raw_event(event)
            key = key_of(event)
            message_size = len(data) + len(key.encode("utf-8", "surrogatepass")) + _OVERHEAD
            if batch and (len(batch) >= max_messages or size + message_size > max_bytes):
                yield batch
                batch, size = [], 0
            batch.append(_PubsubMessagePb(data=data, ordering_key=key))
            size += message_size
        if batch:
            yield batch

    def _key_for(self, event: RawEvent) -> str:
        if self._buckets is None:
            return ordering_key(event)
        return f"bucket-{self._buckets.partition_for_key(identity_key(event))}"

    def depth(self) -> int:
        """Events in ``put_many`` calls not yet confirmed by the broker."""
        return self._in_flight

    def depth_observations(self) -> Iterable[tuple[str, str, int]]:
        return [(PUBSUB, "all", self._in_flight)]
