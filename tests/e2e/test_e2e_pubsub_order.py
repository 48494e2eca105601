"""End to end in Pub/Sub mode: each user's events reach a subscriber in the order the collector
acknowledged them (ordering key = identity), through the real server and the Pub/Sub emulator.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections import defaultdict
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from eventkit_core import RawEvent
from eventkit_queues import EventSubscriptionCoordinator, ensure_subscription, ensure_topic

from tests.e2e.conftest import StartCollector, wait_until
from tests.e2e.test_e2e_collector import count_rows, ev
from tests.emulators import PubSubEmulator

pytestmark = [pytest.mark.integration, pytest.mark.slow]

USERS = 8
PER_USER = 30


class Subscriber:
    """A coordinator on its own event loop thread, recording (userId, seq) as delivered."""

    def __init__(self, project: str, subscription: str) -> None:
        self.seen: list[tuple[str, int]] = []
        self._lock = threading.Lock()
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.coordinator = EventSubscriptionCoordinator(project, subscription, self.handle)

    async def handle(self, event: RawEvent) -> None:
        payload = json.loads(bytes(event.payload))  # type: ignore[arg-type]
        with self._lock:
            self.seen.append((payload["userId"], payload["properties"]["seq"]))

    def first_sightings(self) -> dict[str, list[int]]:
        """Per user, seqs in delivery order, redeliveries (which repeat a suffix) dropped."""
        with self._lock:
            seen = list(self.seen)
        first: set[tuple[str, int]] = set()
        out: dict[str, list[int]] = defaultdict(list)
        for user, seq in seen:
            if (user, seq) not in first:
                first.add((user, seq))
                out[user].append(seq)
        return out

    def run(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(60)


@pytest.fixture
def subscriber(pubsub_emulator: PubSubEmulator) -> Iterator[tuple[str, Subscriber]]:
    project = pubsub_emulator.project
    topic = pubsub_emulator.new_name("ordered")
    ensure_topic(project, topic)
    subscription = pubsub_emulator.new_name("ordered-sub")
    ensure_subscription(project, topic, subscription)  # message ordering on
    sub = Subscriber(project, subscription)
    sub.thread.start()
    sub.run(sub.coordinator.start())
    try:
        yield topic, sub
    finally:
        sub.run(sub.coordinator.stop())
        sub.loop.call_soon_threadsafe(sub.loop.stop)
        sub.thread.join(10)


def test_pubsub_mode_keeps_each_users_order_end_to_end(
    collector_server: StartCollector,
    pubsub_emulator: PubSubEmulator,
    subscriber: tuple[str, Subscriber],
) -> None:
    topic, sub = subscriber
    cp = collector_server(
        EVENTKIT_QUEUE_MODE="pubsub",
        GCP_PROJECT_ID=pubsub_emulator.project,
        EVENTKIT_PUBSUB_TOPIC=topic,
        EVENTKIT_PUBSUB_SUBSCRIPTION=pubsub_emulator.new_name("archive"),
        EVENTKIT_FLUSH_MAX_AGE="0.5",
    )
    users = [f"user-{u}" for u in range(USERS)]
    with httpx.Client(base_url=cp.url, timeout=30) as c:
        # Requests one after the other (each acknowledged before the next: that is the order),
        # users interleaved in every batch, and single events between the batches.
        for seq in range(0, PER_USER, 3):
            batch = [
                ev("track", userId=user, properties={"seq": s})
                for s in (seq, seq + 1)
                for user in users
            ]
            assert c.post("/v1/batch", json={"batch": batch}).status_code == 200
            for user in users:
                single = ev("track", userId=user, properties={"seq": seq + 2})
                assert c.post("/v1/track", json=single).status_code == 200
    total = USERS * PER_USER
    wait_until(lambda: sum(map(len, sub.first_sightings().values())) == total, 120, "every event")
    got = sub.first_sightings()
    assert set(got) == set(users)
    for user in users:
        assert got[user] == list(range(PER_USER)), user  # in order, none missing
    # The collector's own archive path got them all too.
    wait_until(lambda: count_rows(cp.data_dir) >= total, 90, "the archive in Parquet")
    assert cp.stop() == 0
