"""Every EventQueue backend (AsyncQueue, PubSubQueue) through the same tests.

The fixture ``harness`` yields the queue plus a way to see what it delivered:

- ``async``: an :class:`AsyncQueue` whose handler appends each batch to ``delivered``;
- ``pubsub`` (integration, Pub/Sub emulator): a :class:`PubSubQueue` on a fresh topic, and an
  :class:`EventSubscriptionCoordinator` on a fresh *ordered* subscription of that topic whose
  handler appends the decoded :class:`RawEvent` to ``delivered``.

Delivery is observed only once a test calls ``observe()`` (a no-op for AsyncQueue, whose handler
is part of the queue; for Pub/Sub it starts the coordinator). That lets the stop test check that
what ``put_many`` acknowledged is still there for a consumer that only starts after ``stop()``.
Delivery is at least once: the tests look at the *first* delivery of each ``message_id``.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field

import pytest
from eventkit_core import EventQueue, QueueError, RawEvent
from eventkit_queues import AsyncQueue

from tests.emulators import PubSubEmulator
from tests.queues.q_support import payload_of, wait_for

N_EVENTS = 2000
N_IDENTITIES = 50
CHUNK = 500  # put_many calls of this many events, one after the other


@dataclass
class Harness:
    name: str
    queue: EventQueue
    #: Every delivery, in the order the consumer saw them (redeliveries included).
    delivered: list[RawEvent]
    #: Start observing deliveries (idempotent).
    observe: Callable[[], Awaitable[None]]
    #: Seconds a test may wait for deliveries.
    within: float
    cleanups: list[Callable[[], Awaitable[None]]] = field(default_factory=list)

    def first_deliveries(self) -> list[RawEvent]:
        """``delivered`` with each ``message_id`` kept at its first sighting only."""
        seen: set[str | None] = set()
        first: list[RawEvent] = []
        for ev in self.delivered:
            if ev.message_id not in seen:
                seen.add(ev.message_id)
                first.append(ev)
        return first

    def delivered_ids(self) -> set[str | None]:
        return {ev.message_id for ev in self.delivered}

    async def wait_delivered(self, ids: set[str | None], what: str) -> None:
        await wait_for(lambda: ids <= self.delivered_ids(), self.within, what)


def make_events(
    n: int = N_EVENTS, identities: int = N_IDENTITIES, seed: int = 11
) -> list[RawEvent]:
    """``n`` events over ``identities`` users (interleaved at random), ``seq`` = position."""
    rng = random.Random(seed)
    return [
        RawEvent(
            payload={"userId": f"user-{rng.randrange(identities)}", "seq": i},
            message_id=f"msg-{seed}-{i}",
            stream="events",
        )
        for i in range(n)
    ]


async def put_in_chunks(queue: EventQueue, events: Sequence[RawEvent]) -> None:
    for i in range(0, len(events), CHUNK):
        await queue.put_many(events[i : i + CHUNK])


async def _async_harness() -> Harness:
    delivered: list[RawEvent] = []

    async def handler(partition: int, batch: list[RawEvent]) -> None:
        delivered.extend(batch)

    queue = AsyncQueue(handler, partitions=8, max_depth=256, max_batch=100)

    async def observe() -> None:
        return None

    harness = Harness("async", queue, delivered, observe, within=10.0)
    harness.cleanups.append(queue.stop)
    return harness


async def _pubsub_harness(emulator: PubSubEmulator) -> Harness:
    from eventkit_queues import (
        EventSubscriptionCoordinator,
        PubSubQueue,
        ensure_subscription,
        ensure_topic,
    )

    topic = emulator.new_name("qc-topic")
    subscription = emulator.new_name("qc-sub")
    await asyncio.to_thread(ensure_topic, emulator.project, topic)
    # ordered (the per-key order test needs it); created before any publish, so it gets all
    await asyncio.to_thread(
        ensure_subscription,
        emulator.project,
        topic,
        subscription,
        enable_message_ordering=True,
        ack_deadline=10,
    )
    delivered: list[RawEvent] = []

    async def handler(ev: RawEvent) -> None:
        delivered.append(ev)

    queue = PubSubQueue(emulator.project, topic)
    coordinator = EventSubscriptionCoordinator(emulator.project, subscription, handler)
    harness = Harness("pubsub", queue, delivered, coordinator.start, within=60.0)
    harness.cleanups += [coordinator.stop, queue.stop]
    return harness


@pytest.fixture(params=["async", pytest.param("pubsub", marks=pytest.mark.integration)])
async def harness(request: pytest.FixtureRequest) -> AsyncIterator[Harness]:
    if request.param == "async":
        made = await _async_harness()
    else:
        made = await _pubsub_harness(request.getfixturevalue("pubsub_emulator"))
    try:
        yield made
    finally:
        # every one of them (stopping twice is harmless), then report the first failure
        results = [
            await asyncio.gather(cleanup(), return_exceptions=True) for cleanup in made.cleanups
        ]
        errors = [r[0] for r in results if isinstance(r[0], BaseException)]
        if errors:
            raise errors[0]


def assert_per_key_order(events: Sequence[RawEvent]) -> None:
    """Per ``userId``, ``seq`` only goes up."""
    last: dict[str, int] = {}
    for ev in events:
        payload = payload_of(ev)
        user, seq = payload["userId"], payload["seq"]
        assert seq > last.get(user, -1), f"{user}: seq {seq} after {last[user]}"
        last[user] = seq


# -- the protocol and the lifecycle ------------------------------------------------------------


async def test_is_an_event_queue(harness: Harness) -> None:
    assert isinstance(harness.queue, EventQueue)


async def test_start_is_idempotent_and_stop_twice_is_harmless(harness: Harness) -> None:
    queue = harness.queue
    await harness.observe()
    await queue.start()
    await queue.start()  # both backends document start() as idempotent
    events = make_events(10, 3)
    await queue.put_many(events)
    await harness.wait_delivered({ev.message_id for ev in events}, "10 events")
    await queue.stop()
    await queue.stop()
    assert queue.depth() == 0


async def test_a_stopped_queue_refuses_events_and_a_restart(harness: Harness) -> None:
    queue = harness.queue
    await queue.start()
    await queue.stop()
    with pytest.raises(QueueError):
        await queue.put_many(make_events(1))
    with pytest.raises(QueueError):
        await queue.start()


# -- delivery ------------------------------------------------------------------------------------


async def test_every_event_is_delivered_in_per_key_order(harness: Harness) -> None:
    events = make_events()
    await harness.observe()
    await harness.queue.start()
    await put_in_chunks(harness.queue, events)
    await harness.wait_delivered({ev.message_id for ev in events}, f"{N_EVENTS} events")
    first = harness.first_deliveries()
    assert len(first) == N_EVENTS
    assert {payload_of(ev)["seq"] for ev in first} == set(range(N_EVENTS))
    assert_per_key_order(first)


async def test_an_empty_put_many_is_a_no_op(harness: Harness) -> None:
    queue = harness.queue
    await harness.observe()
    await queue.start()
    await queue.put_many([])
    await queue.put_many(())
    assert queue.depth() == 0
    # a marker put afterwards arrives alone: the empty calls delivered nothing
    marker = make_events(1, seed=99)
    await queue.put_many(marker)
    await harness.wait_delivered({marker[0].message_id}, "the marker event")
    assert harness.delivered_ids() == {marker[0].message_id}


async def test_depth_is_a_non_negative_int_and_zero_once_all_was_handled(
    harness: Harness,
) -> None:
    queue = harness.queue
    samples: list[object] = [queue.depth()]
    await harness.observe()
    await queue.start()
    samples.append(queue.depth())
    events = make_events()
    putting = asyncio.ensure_future(put_in_chunks(queue, events))
    while not putting.done():  # sample while put_many calls are in progress
        samples.append(queue.depth())
        await asyncio.sleep(0)
    await putting
    await harness.wait_delivered({ev.message_id for ev in events}, f"{N_EVENTS} events")
    samples.append(queue.depth())
    assert all(type(depth) is int and depth >= 0 for depth in samples), samples
    assert queue.depth() == 0


async def test_stop_after_put_many_loses_nothing_it_acknowledged(harness: Harness) -> None:
    """AsyncQueue: ``stop()`` drains. Pub/Sub: what ``put_many`` returned for is stored on the
    subscription, and a consumer started only after ``stop()`` receives it."""
    events = make_events()
    await harness.queue.start()
    await put_in_chunks(harness.queue, events)
    await harness.queue.stop()
    assert harness.queue.depth() == 0
    await harness.observe()
    await harness.wait_delivered({ev.message_id for ev in events}, f"{N_EVENTS} events")
    first = harness.first_deliveries()
    assert len(first) == N_EVENTS
    assert_per_key_order(first)


async def test_stop_during_put_many_loses_nothing_acknowledged(harness: Harness) -> None:
    """``stop()`` while a producer is putting: every ``put_many`` that returned is delivered;
    calls after the stop are refused with ``QueueError``, never silently dropped."""
    queue = harness.queue
    events = make_events()
    acknowledged: list[RawEvent] = []
    refused: list[RawEvent] = []
    stopping: asyncio.Future[None] | None = None

    async def produce() -> None:
        nonlocal stopping
        for i in range(0, len(events), 100):
            if i == 300:  # stop from here on, while this producer keeps putting
                stopping = asyncio.ensure_future(queue.stop())
            chunk = events[i : i + 100]
            try:
                await queue.put_many(chunk)
            except QueueError:
                refused.extend(events[i:])
                return
            acknowledged.extend(chunk)
            await asyncio.sleep(0)

    await queue.start()
    await produce()
    assert stopping is not None
    await stopping
    assert refused, "put_many kept accepting events after stop()"
    assert acknowledged + refused == events
    await harness.observe()
    await harness.wait_delivered(
        {ev.message_id for ev in acknowledged}, f"{len(acknowledged)} acknowledged events"
    )
    assert_per_key_order(harness.first_deliveries())
