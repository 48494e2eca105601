"""PubSubQueue and the subscription coordinators against the Pub/Sub emulator."""

from __future__ import annotations

import asyncio
import random
import time
from dataclasses import dataclass
from typing import Any

import pytest
from eventkit_core import EventQueue, QueueError, RawEvent
from eventkit_queues import (
    EventCoordinatorManager,
    EventSubscriptionCoordinator,
    PublishError,
    PubSubQueue,
    ensure_subscription,
    ensure_topic,
)
from eventkit_queues.pubsub import ordering_key
from google.api_core.exceptions import (
    InvalidArgument,
    NotFound,
    RetryError,
    ServiceUnavailable,
)
from google.pubsub_v1 import PublisherClient as GapicPublisherClient

from tests.emulators import PubSubEmulator
from tests.queues.q_support import (
    Metrics,
    event,
    first_sightings,
    payload_of,
    seqs_in_order,
    wait_for,
)

pytestmark = pytest.mark.integration


@dataclass
class Topology:
    project: str
    topic: str
    subscription: str


@pytest.fixture
def topology(pubsub_emulator: PubSubEmulator) -> Topology:
    """A new topic with one ordered subscription (ack deadline 10 s)."""
    topic = pubsub_emulator.new_name("q-topic")
    subscription = pubsub_emulator.new_name("q-sub")
    ensure_topic(pubsub_emulator.project, topic)
    ensure_subscription(pubsub_emulator.project, topic, subscription, ack_deadline=10)
    return Topology(pubsub_emulator.project, topic, subscription)


def ident(ev: RawEvent) -> tuple[Any, Any]:
    payload = payload_of(ev)
    return payload["producer"], payload["seq"]


class Received:
    """A coordinator handler that records what it was given."""

    def __init__(self) -> None:
        self.events: list[RawEvent] = []
        self.ids: set[tuple[Any, Any]] = set()

    async def __call__(self, ev: RawEvent) -> None:
        self.events.append(ev)
        self.ids.add(ident(ev))


async def test_ensure_helpers_are_idempotent(topology: Topology) -> None:
    assert ensure_topic(topology.project, topology.topic) == (
        f"projects/{topology.project}/topics/{topology.topic}"
    )
    again = ensure_subscription(topology.project, topology.topic, topology.subscription)
    assert again == f"projects/{topology.project}/subscriptions/{topology.subscription}"


async def test_per_key_order_through_publish_and_subscribe(topology: Topology) -> None:
    queue = PubSubQueue(topology.project, topology.topic)
    assert isinstance(queue, EventQueue)
    received = Received()
    coordinator = EventSubscriptionCoordinator(topology.project, topology.subscription, received)
    producers, per_producer, users = 4, 2500, 8
    rng = random.Random(5)
    work = [
        [event(f"user-{rng.randrange(users)}", seq, producer) for seq in range(per_producer)]
        for producer in range(producers)
    ]

    async def produce(events: list[RawEvent]) -> None:
        for i in range(0, len(events), 500):
            await queue.put_many(events[i : i + 500])

    await queue.start()
    await coordinator.start()
    try:
        await asyncio.gather(*(produce(events) for events in work))
        assert queue.depth() == 0
        await wait_for(lambda: len(received.ids) == producers * per_producer, 120, "all 10k events")
    finally:
        await coordinator.stop()
        await queue.stop()
    assert seqs_in_order(first_sightings(received.events))
    assert coordinator.health()["processed"] >= producers * per_producer


async def test_failed_handler_message_is_redelivered_and_processed(topology: Topology) -> None:
    attempts: dict[int, int] = {}
    done: list[int] = []

    async def flaky(ev: RawEvent) -> None:
        seq = payload_of(ev)["seq"]
        attempts[seq] = attempts.get(seq, 0) + 1
        if seq == 3 and attempts[seq] == 1:
            raise RuntimeError("store unavailable")
        done.append(seq)

    queue = PubSubQueue(topology.project, topology.topic)
    coordinator = EventSubscriptionCoordinator(topology.project, topology.subscription, flaky)
    await queue.start()
    await coordinator.start()
    try:
        await queue.put_many([event("u1", i) for i in range(6)])
        await wait_for(lambda: set(done) == set(range(6)), 60, "every event processed")
    finally:
        await coordinator.stop()
        await queue.stop()
    assert attempts[3] >= 2
    assert coordinator.health()["failed"] >= 1
    assert "store unavailable" in str(coordinator.health()["last_error"])
    assert sorted(set(done)) == list(range(6))


async def test_no_ack_before_the_handler_succeeds(topology: Topology) -> None:
    gate = asyncio.Event()
    entered: list[RawEvent] = []

    async def durable_write(ev: RawEvent) -> None:
        entered.append(ev)
        await gate.wait()  # the "durable write" never completes while we look

    queue = PubSubQueue(topology.project, topology.topic)
    await queue.start()
    await queue.put_many([event("u1", 0)])
    first = EventSubscriptionCoordinator(
        topology.project, topology.subscription, durable_write, max_lease_extension=10
    )
    await first.start()
    await wait_for(lambda: len(entered) == 1, 30, "the handler to be called")
    assert first.depth() == 1
    # Stop while the handler still waits: it is cancelled and its message was never acked ...
    await first.stop(timeout=0.2)
    assert first.health()["processed"] == 0

    # ... so the subscription still holds it: a new coordinator gets it, and acks it this time.
    again = Received()
    second = EventSubscriptionCoordinator(topology.project, topology.subscription, again)
    await second.start()
    try:
        # (the emulator may first hand the nacked message to the closed stream: then it is
        # back when that lease ends, 10 s here)
        await wait_for(lambda: len(again.events) >= 1, 60, "the redelivery")
    finally:
        await second.stop()
        await queue.stop()
    assert ident(again.events[0]) == (0, 0)
    assert second.health()["processed"] >= 1


async def test_stopping_mid_stream_loses_nothing(topology: Topology) -> None:
    """What the first coordinator did not ack comes back to the next one.

    Unordered subscription: on an *ordered* one the emulator can leave ordering keys stuck
    after a streaming pull is cancelled (reproduced with the bare Google client, see the
    README). Messages the emulator pushes to the closed stream come back when their lease
    ends (10 s here), in waves.
    """
    total = 600
    subscription = topology.subscription + "-unordered"
    # The shortest ack deadline (10 s): a message the emulator pushed to the closed stream, never
    # leased there, comes back after 10 s instead of the 60 s default.
    ensure_subscription(
        topology.project,
        topology.topic,
        subscription,
        enable_message_ordering=False,
        ack_deadline=10,
    )
    queue = PubSubQueue(topology.project, topology.topic)
    await queue.start()
    await queue.put_many([event(f"user-{i % 16}", i) for i in range(total)])
    await queue.stop()

    first_done: set[tuple[Any, Any]] = set()

    async def slow(ev: RawEvent) -> None:
        await asyncio.sleep(0.002)
        first_done.add(ident(ev))

    first = EventSubscriptionCoordinator(
        topology.project, subscription, slow, max_messages=50, max_lease_extension=10
    )
    await first.start()
    await wait_for(lambda: len(first_done) >= 100, 60, "part of the stream")
    await first.stop(timeout=5)
    assert len(first_done) < total  # stopped mid-stream
    assert first.depth() == 0

    second_received = Received()
    second = EventSubscriptionCoordinator(topology.project, subscription, second_received)
    await second.start()
    try:
        # Redeliveries come in waves 10 s apart (locally 1-4 waves); a slow machine takes more.
        await wait_for(
            lambda: len(first_done | second_received.ids) == total,
            400,
            "the rest of the stream",
            lambda: f"{total - len(first_done | second_received.ids)} of {total} still missing",
        )
    finally:
        await second.stop()
    assert first_done | second_received.ids == {(0, i) for i in range(total)}


async def test_dual_path_two_subscriptions_each_receive_every_event(
    pubsub_emulator: PubSubEmulator, topology: Topology
) -> None:
    """The seed's dual-path example, as written there (with eventkit_queues as the module)."""
    project = topology.project
    # Order matters for realtime updates; the batched archive does not need it (see README).
    ensure_subscription(project, topology.topic, "events-realtime-" + topology.subscription)
    ensure_subscription(
        project,
        topology.topic,
        "events-archive-" + topology.subscription,
        enable_message_ordering=False,
    )
    realtime_seen: list[RawEvent] = []

    async def process_immediately(ev: RawEvent) -> None:
        realtime_seen.append(ev)

    event_loader = MiniLoader(max_events=100, max_age=0.05)

    realtime_coordinator = EventSubscriptionCoordinator(
        project_id=project,
        subscription="events-realtime-" + topology.subscription,
        handler=process_immediately,
    )
    archive_coordinator = EventSubscriptionCoordinator(
        project_id=project,
        subscription="events-archive-" + topology.subscription,
        handler=event_loader.add,
    )
    manager = EventCoordinatorManager([realtime_coordinator, archive_coordinator])
    await manager.start_all()
    queue = PubSubQueue(project, topology.topic)
    await queue.start()
    total = 1000
    started = time.monotonic()
    try:
        await queue.put_many([event(f"user-{i % 10}", i) for i in range(total)])
        await wait_for(
            lambda: (
                len({ident(e) for e in realtime_seen}) == total
                and len({ident(e) for e in event_loader.written}) == total
            ),
            60,
            "both paths",
        )
        elapsed = time.monotonic() - started
        assert manager.health() == {
            "events-realtime-" + topology.subscription: True,
            "events-archive-" + topology.subscription: True,
        }
    finally:
        await queue.stop()
        await manager.stop_all()
    assert manager.health() == dict.fromkeys(manager.health(), False)
    # The archive path really batched: more than one flush, and no more than the batches that
    # count (max_events) and age (one per max_age at most) can make; one event per flush (1000)
    # would exceed that bound unless delivery took over 40 s.
    assert event_loader.flushes > 1
    bound = len(event_loader.written) // 100 + int(elapsed / 0.05) + 1
    assert event_loader.flushes <= bound, (event_loader.flushes, bound)


async def test_publish_to_a_deleted_topic_fails_then_goes_through(
    pubsub_emulator: PubSubEmulator, topology: Topology
) -> None:
    queue = PubSubQueue(topology.project, topology.topic)
    await queue.start()
    try:
        await queue.put_many([event("u1", 0)])
        admin = pubsub_emulator.publisher()
        admin.delete_topic(topic=pubsub_emulator.topic_path(topology.topic))
        events = [event(f"u{i % 3}", i) for i in range(9)]
        with pytest.raises(PublishError) as info:
            await queue.put_many(events)
        assert info.value.published == []
        assert info.value.failed == events
        assert len(info.value.errors) == 9
        assert all(isinstance(e, NotFound) for e in info.value.errors)  # not retried
        assert queue.depth() == 0

        # once the topic is back, the same events go through
        ensure_topic(topology.project, topology.topic)
        await queue.put_many(info.value.failed)
    finally:
        await queue.stop()


class FailingPublisher(GapicPublisherClient):  # type: ignore[misc]
    """A real (generated) PublisherClient whose Publish requests number ``fail_on`` raise."""

    def __init__(self, fail_on: dict[int, Exception]) -> None:
        super().__init__()
        self.fail_on = fail_on
        self.calls = 0
        self.sizes: list[int] = []

    def publish(self, *args: Any, **kwargs: Any) -> Any:
        self.calls += 1
        self.sizes.append(len(kwargs["request"].messages))
        error = self.fail_on.pop(self.calls, None)
        if error is not None:
            raise error
        return super().publish(*args, **kwargs)


async def test_request_failing_midway_fails_the_rest_and_the_retry_keeps_key_order(
    topology: Topology,
) -> None:
    publisher = FailingPublisher(
        {2: InvalidArgument("injected: this request is refused")}  # type: ignore[no-untyped-call]
    )
    queue = PubSubQueue(topology.project, topology.topic, publisher=publisher, max_messages=1000)
    events = [event(f"user-{i % 8}", i) for i in range(3000)]
    received = Received()
    coordinator = EventSubscriptionCoordinator(topology.project, topology.subscription, received)
    await queue.start()
    await coordinator.start()
    try:
        with pytest.raises(PublishError) as info:
            await queue.put_many(events)
        # request 1 went through; request 2 failed; request 3 was never sent
        assert publisher.calls == 2
        assert publisher.sizes == [1000, 1000]
        assert info.value.published == events[:1000]
        assert info.value.failed == events[1000:]
        errors = info.value.errors
        assert len(errors) == 2000
        assert all(isinstance(e, InvalidArgument) for e in errors[:1000])
        assert all(type(e) is QueueError and "earlier" in str(e) for e in errors[1000:])

        await queue.put_many(info.value.failed)  # the retry, in order
        assert publisher.calls == 4
        await wait_for(lambda: len(received.ids) == len(events), 60, "every event")
    finally:
        await coordinator.stop()
        await queue.stop()
        publisher.transport.close()  # type: ignore[no-untyped-call]
    assert seqs_in_order(first_sightings(received.events))
    assert sorted(seq for _producer, seq in received.ids) == list(range(3000))


async def test_transient_errors_are_retried_within_the_deadline(topology: Topology) -> None:
    def unavailable() -> Exception:
        return ServiceUnavailable("injected")  # type: ignore[no-untyped-call]

    publisher = FailingPublisher({1: unavailable(), 2: unavailable()})
    queue = PubSubQueue(topology.project, topology.topic, publisher=publisher, retry_deadline=2)
    await queue.start()
    try:
        await queue.put_many([event("u1", 0)])  # third attempt goes through
        assert publisher.calls == 3

        publisher.fail_on = {n: unavailable() for n in range(4, 1000)}
        second = [event("u1", 1)]
        started = time.monotonic()
        with pytest.raises(PublishError) as info:  # ... but not forever
            await queue.put_many(second)
        # Stopped by the retry deadline (a RetryError), long before the injected failures
        # ran out; the time bound only catches "forever", not the machine's speed.
        assert isinstance(info.value.errors[0], RetryError)
        assert publisher.calls < 1000
        assert time.monotonic() - started < 120
        assert info.value.failed == second
    finally:
        await queue.stop()
        publisher.transport.close()  # type: ignore[no-untyped-call]


async def test_poison_messages_go_to_on_poison_and_do_not_block(
    pubsub_emulator: PubSubEmulator, topology: Topology
) -> None:
    poisoned: list[bytes] = []

    async def on_poison(data: bytes, error: Exception) -> None:
        poisoned.append(data)

    received = Received()
    coordinator = EventSubscriptionCoordinator(
        topology.project, topology.subscription, received, on_poison=on_poison
    )
    publisher = pubsub_emulator.publisher()
    publisher.publish(pubsub_emulator.topic_path(topology.topic), b"not an event").result(30)
    queue = PubSubQueue(topology.project, topology.topic)
    await queue.start()
    await queue.put_many([event("u1", 1)])
    await coordinator.start()
    try:
        await wait_for(lambda: bool(poisoned and received.events), 30, "both messages")
    finally:
        await coordinator.stop()
        await queue.stop()
        publisher.stop()
    assert poisoned == [b"not an event"]
    assert coordinator.health()["poison"] == 1


async def test_coordinator_metrics(topology: Topology) -> None:
    metrics = Metrics()
    received = Received()
    coordinator = EventSubscriptionCoordinator(
        topology.project, topology.subscription, received, meter_provider=metrics.provider
    )
    queue = PubSubQueue(topology.project, topology.topic, meter_provider=metrics.provider)
    await queue.start()
    await coordinator.start()
    try:
        await queue.put_many([event("u1", i) for i in range(20)])
        await wait_for(lambda: len(received.ids) == 20, 30, "20 events")
    finally:
        await coordinator.stop()
        await queue.stop()
    mode = ("queue_mode", "pubsub")
    assert metrics.points("eventkit_queue_enqueued") == {(mode,): 20}
    assert metrics.points("eventkit_queue_dequeued")[(mode,)] >= 20
    assert metrics.points("eventkit_queue_processed")[(mode, ("result", "ok"))] >= 20


class MiniLoader:
    """The shape of EventLoader.add: returns only after the batch holding the event is written."""

    def __init__(self, max_events: int, max_age: float) -> None:
        self.max_events = max_events
        self.max_age = max_age
        self.written: list[RawEvent] = []
        self.flushes = 0
        self._batch: list[RawEvent] = []
        self._flushed: asyncio.Future[None] | None = None
        self._timer: asyncio.TimerHandle | None = None

    async def add(self, ev: RawEvent) -> None:
        loop = asyncio.get_running_loop()
        if self._flushed is None:
            self._flushed = loop.create_future()
            self._timer = loop.call_later(self.max_age, self._flush)
        self._batch.append(ev)
        flushed = self._flushed
        if len(self._batch) >= self.max_events:
            self._flush()
        await flushed

    def _flush(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self.written.extend(self._batch)  # the "durable write"
        self.flushes += 1
        self._batch = []
        flushed, self._flushed = self._flushed, None
        if flushed is not None and not flushed.done():
            flushed.set_result(None)


async def test_ordering_buckets_keep_each_identity_in_order(topology: Topology) -> None:
    queue = PubSubQueue(topology.project, topology.topic, ordering_buckets=4)
    received = Received()
    coordinator = EventSubscriptionCoordinator(topology.project, topology.subscription, received)
    events = [event(f"user-{i % 50}", i) for i in range(1000)]
    await queue.start()
    await coordinator.start()
    try:
        for i in range(0, len(events), 250):
            await queue.put_many(events[i : i + 250])
        await wait_for(lambda: len(received.ids) == len(events), 60, "every event")
    finally:
        await coordinator.stop()
        await queue.stop()
    assert seqs_in_order(first_sightings(received.events))


async def test_any_publisher_client_is_used_for_its_publish_rpc(
    pubsub_emulator: PubSubEmulator, topology: Topology
) -> None:
    """A high-level client, even without message ordering: only its Publish RPC is used."""
    publisher = pubsub_emulator.publisher()
    queue = PubSubQueue(topology.project, topology.topic, publisher=publisher)
    received = Received()
    coordinator = EventSubscriptionCoordinator(topology.project, topology.subscription, received)
    events = [event(f"user-{i % 5}", i) for i in range(200)]
    await queue.start()
    await coordinator.start()
    try:
        await queue.put_many(events)
        await wait_for(lambda: len(received.ids) == len(events), 60, "every event")
    finally:
        await coordinator.stop()
        await queue.stop()
        publisher.stop()
    assert seqs_in_order(first_sightings(received.events))


async def test_many_keys_per_request_keep_per_key_order(topology: Topology) -> None:
    """10,000 events over 1,000 ordering keys: published and received, each key in order."""
    queue = PubSubQueue(topology.project, topology.topic)
    received = Received()
    coordinator = EventSubscriptionCoordinator(topology.project, topology.subscription, received)
    rng = random.Random(7)
    events = [event(f"user-{rng.randrange(1000)}", seq) for seq in range(10_000)]
    assert len({ordering_key(e) for e in events}) == 1000
    await queue.start()
    await coordinator.start()
    try:
        for i in range(0, len(events), 1000):
            await queue.put_many(events[i : i + 1000])
        await wait_for(lambda: len(received.ids) == len(events), 120, "all 10k events")
    finally:
        await coordinator.stop()
        await queue.stop()
    assert seqs_in_order(first_sightings(received.events))


async def test_a_handler_that_keeps_failing_turns_the_coordinator_unhealthy(
    topology: Topology,
) -> None:
    broken = True
    done: list[RawEvent] = []

    async def store(ev: RawEvent) -> None:  # a store that is down, then back
        if broken:
            raise OSError("store unreachable")
        done.append(ev)

    coordinator = EventSubscriptionCoordinator(
        topology.project, topology.subscription, store, unhealthy_after=0.5
    )
    manager = EventCoordinatorManager([coordinator])
    queue = PubSubQueue(topology.project, topology.topic)
    await queue.start()
    await manager.start_all()
    try:
        await queue.put_many([event("u1", 0)])
        await wait_for(lambda: coordinator.failed >= 1, 30, "a failure")
        # Redelivered and failing on for unhealthy_after (0.5 s): unhealthy.
        await wait_for(lambda: not coordinator.is_healthy(), 60, "unhealthy")
        health = coordinator.health()
        assert health["healthy"] is False
        assert health["running"] is True  # the stream still pulls: only health tells
        assert "handler failed: OSError: store unreachable" in health["last_error"]
        assert manager.health() == {coordinator.name: False}
        broken = False
        await wait_for(lambda: bool(done), 60, "the redelivered event stored")
        assert coordinator.is_healthy()  # the success made it healthy again
        assert manager.health() == {coordinator.name: True}
    finally:
        await manager.stop_all()
        await queue.stop()
    assert payload_of(done[0])["seq"] == 0


def test_unhealthy_after_must_be_positive(topology: Topology) -> None:
    with pytest.raises(ValueError, match="unhealthy_after"):
        EventSubscriptionCoordinator(
            topology.project, topology.subscription, Received(), unhealthy_after=0
        )
