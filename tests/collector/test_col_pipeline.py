"""The pipeline with the real EventLoader and local file stores: release bookkeeping, failures.

Issue 20: entries released only once every event is in a written file, across many streams,
files written during shutdown and entries spanning several streams (a ``/v1/batch`` of mixed
types); after a clean stop every entry is released, so a restart has nothing to recover. Then the
failure paths: the publisher failing to deliver, a failed ``mark_published`` retried, a ring
entry that is not an envelope, and the Pub/Sub publish retry (against the emulator).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from pathlib import Path
from typing import Any

import httpx
import pyarrow.parquet as pq
import pytest
from eventkit_collector.app import Collector, create_app
from eventkit_collector.fastpath import FastIngest
from eventkit_collector.release import ReleaseTracker
from eventkit_collector.settings import Settings
from eventkit_collector.sinks import InProcessSink, PubSubSink
from eventkit_core import RawEvent, StorageError, StoredFile
from eventkit_queues import EventCoordinatorManager, PubSubQueue, ensure_topic
from eventkit_ring_buffer import RingBuffer

KINDS = ("track", "identify", "page", "group", "screen", "alias")
STREAM_OF = {
    "track": "events",
    "identify": "users",
    "page": "pages",
    "group": "groups",
    "screen": "screens",
    "alias": "aliases",
}


def settings(tmp_path: Path, **kw: Any) -> Settings:
    base: dict[str, Any] = {
        "eventkit_data_dir": tmp_path / "data",
        "eventkit_metrics_enabled": False,
        "eventkit_partitions": 4,
        # Nothing is written by age: files come from the count limit or the drain.
        "eventkit_flush_max_age": 600.0,
    }
    base.update(kw)
    return Settings(**base)


@contextlib.asynccontextmanager
async def serving(collector: Collector) -> AsyncIterator[httpx.AsyncClient]:
    """The collector started on this test's event loop, and a client for its app."""
    transport = httpx.ASGITransport(app=FastIngest(create_app(collector=collector), collector))
    await collector.start()
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as c:
            yield c
    finally:
        await collector.stop()


async def wait_for(condition: Callable[[], bool], what: str, within: float = 30.0) -> None:
    deadline = time.monotonic() + within
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {within} s waiting for {what}")
        await asyncio.sleep(0.01)


async def unreleased(s: Settings) -> list[int]:
    ids: list[int] = []
    for db in sorted(s.ring_dir.glob("*.db")):
        async with RingBuffer(db) as ring:
            ids += [e.id for e in await ring.read_unpublished(limit=100_000)]
    return ids


def stored_ids(s: Settings, kind: str = "events") -> list[str]:
    root = s.eventkit_data_dir / kind
    ids: list[str] = []
    for f in sorted(root.rglob("*.parquet")) if root.exists() else []:
        ids += [str(v) for v in pq.read_table(f, columns=["message_id"])["message_id"].to_pylist()]
    return ids


def mixed_batch(n: int) -> dict[str, Any]:
    """One request holding events of every Segment type: one entry, six streams."""
    return {
        "batch": [
            {"type": k, "userId": f"u{n % 5}", "messageId": f"b{n}-{k}", "event": "E", "name": "N"}
            | ({"groupId": "g"} if k == "group" else {})
            | ({"previousId": "p"} if k == "alias" else {})
            for k in KINDS
        ]
    }


async def send_load(c: httpx.AsyncClient, requests: int, streams: int) -> set[str]:
    """``/collect/<stream>`` arrays over many streams and mixed ``/v1/batch`` requests."""
    sent: set[str] = set()
    for n in range(requests):
        if n % 3 == 0:
            body = mixed_batch(n)
            r = await c.post("/v1/batch", json=body)
            sent.update(f"b{n}-{k}" for k in KINDS)
        else:
            ids = [f"c{n}-{k}" for k in range(3)]
            items = [{"messageId": mid, "k": k} for k, mid in enumerate(ids)]
            r = await c.post(f"/collect/s{n % streams}", json=items)
            sent.update(ids)
        assert r.status_code == 200, r.text
    return sent


@pytest.mark.parametrize(
    "max_events",
    [10_000, 7],
    ids=["files-written-by-the-drain", "entries-split-across-files"],
)
async def test_a_clean_stop_releases_every_entry_across_many_streams(
    tmp_path: Path, max_events: int
) -> None:
    s = settings(tmp_path, eventkit_flush_max_events=max_events)
    collector = Collector(s)
    async with serving(collector) as c:
        sent = await send_load(c, requests=240, streams=40)
        assert collector.pipeline.accepted_requests == 240
    assert await unreleased(s) == []
    assert collector.pipeline.outstanding_entries() == 0
    assert collector.pipeline.tracker.released == 240
    stored = stored_ids(s)
    assert sorted(stored) == sorted(sent)  # each once: nothing lost, nothing written twice
    streams = {p.name for p in (s.eventkit_data_dir / "events").iterdir()}
    assert streams == {f"s{i}" for i in range(40)} | set(STREAM_OF.values())
    # a restart has nothing to recover and writes nothing again
    again = Collector(s)
    async with serving(again):
        assert again.pipeline.outstanding_entries() == 0
    assert again.pipeline.tracker.released == 0
    assert sorted(stored_ids(s)) == sorted(sent)


async def test_an_entry_is_released_only_when_its_last_stream_is_written(tmp_path: Path) -> None:
    """A /v1/batch entry spans six streams: written one stream at a time, it waits for all."""
    s = settings(tmp_path)
    collector = Collector(s)
    async with serving(collector) as c:
        assert (await c.post("/v1/batch", json=mixed_batch(1))).status_code == 200
        await wait_for(lambda: collector.pipeline.outstanding_entries() == 1, "tracking")
        tracker = collector.pipeline.tracker
        file = StoredFile(path="x", uri="file:///x", rows=1, bytes=1, source_ids=(1,))
        for _ in KINDS[:-1]:
            tracker.on_flushed([file])  # five of its six events stored
        assert collector.pipeline.outstanding_entries() == 1
        assert tracker.released == 0
    # the drain wrote the real files; the entry is released exactly once
    assert await unreleased(s) == []
    assert tracker.released == 1


# --- failure paths ------------------------------------------------------------------------------


async def test_a_failed_delivery_leaves_the_entry_for_the_next_start(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    s = settings(tmp_path)
    collector = Collector(s)
    async with serving(collector) as c:
        sink = collector.pipeline.sink
        assert isinstance(sink, InProcessSink)
        await sink.queue.stop()  # put_many now raises QueueError: the delivery fails
        r = await c.post("/v1/track", json={"userId": "u", "event": "E", "messageId": "m-1"})
        assert r.status_code == 200  # durable in the ring buffer: the answer stays true
        await wait_for(lambda: "publisher failed to deliver" in caplog.text, "the failure log")
        assert collector.pipeline.outstanding_entries() == 0  # not tracked as in flight
    assert stored_ids(s) == []
    assert len(await unreleased(s)) == 1
    again = Collector(s)
    async with serving(again):
        pass
    assert stored_ids(s) == ["m-1"]
    assert await unreleased(s) == []


class FlakyRing:
    """The real ring buffer, whose ``mark_published`` fails ``failures`` times first."""

    def __init__(self, ring: RingBuffer, failures: int) -> None:
        self.ring = ring
        self.failures = failures
        self.calls = 0

    async def mark_published(self, ids: Iterable[int]) -> int:
        self.calls += 1
        if self.calls <= self.failures:
            raise StorageError("database is locked (injected)")
        return await self.ring.mark_published(ids)


async def test_a_failed_mark_published_is_retried(tmp_path: Path) -> None:
    async with RingBuffer(tmp_path / "r.db") as ring:
        ids = [await ring.append(b"x") for _ in range(3)]
        flaky = FlakyRing(ring, failures=2)
        tracker = ReleaseTracker(retry_delay=0.01)
        tracker.start(flaky)
        tracker.track([(ids[0], 2), (ids[1], 1), (ids[2], 0)])
        tracker.on_flushed(
            [StoredFile(path="p", uri="u", rows=3, bytes=1, source_ids=(ids[0], ids[0], ids[1]))]
        )
        await wait_for(lambda: tracker.released == 3, "the release after two failures")
        assert flaky.calls >= 3
        assert await ring.read_unpublished() == []
        await tracker.close()


async def test_closing_with_a_ring_that_keeps_failing_ends_and_keeps_the_entries(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    async with RingBuffer(tmp_path / "r.db") as ring:
        entry = await ring.append(b"x")
        tracker = ReleaseTracker(retry_delay=0.01)
        tracker.start(FlakyRing(ring, failures=10**6))
        tracker.release([entry])
        await asyncio.wait_for(tracker.close(), 10)  # a stop stays quick
        assert [e.id for e in await ring.read_unpublished()] == [entry]
    assert "the next start delivers them again" in caplog.text


async def test_a_ring_entry_that_is_not_an_envelope_is_released_not_a_crash(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from datetime import UTC, datetime

    from eventkit_collector.envelope import Envelope, encode_envelope

    s = settings(tmp_path)
    body = json.dumps({"userId": "u", "event": "E", "messageId": "kept"}).encode()
    env = Envelope(source="track", stream="events", received_at=datetime.now(UTC), body=body)
    s.ring_dir.mkdir(parents=True)
    async with RingBuffer(s.ring_dir / "0.db") as ring:
        await ring.append(b"\xc1 not msgpack")
        await ring.append(encode_envelope(env))
    caplog.set_level(logging.ERROR, "eventkit_collector.pipeline")
    collector = Collector(s)
    async with serving(collector) as c:
        assert (await c.get("/ready")).status_code == 200
    assert "ring entry 1 is not an envelope; releasing it" in caplog.text
    assert stored_ids(s) == ["kept"]
    assert await unreleased(s) == []


@pytest.mark.integration
async def test_pubsub_publish_is_retried_until_the_topic_exists(pubsub_emulator: Any) -> None:
    project = pubsub_emulator.project
    topic = pubsub_emulator.new_name("late")
    released: list[int] = []

    async def no_flush() -> None:
        return None

    queue = PubSubQueue(project, topic, retry_deadline=5.0)
    sink = PubSubSink(
        queue,
        EventCoordinatorManager([]),
        release=released.extend,
        flush=no_flush,
        retry_initial=0.05,
    )
    await queue.start()
    try:
        events = [
            RawEvent(payload={"userId": "u", "n": n}, stream="events", source="collect")
            for n in range(3)
        ]
        delivery: Awaitable[None] = asyncio.ensure_future(sink.deliver(events, [(7, 2), (8, 1)]))
        await wait_for(lambda: sink.publish_failures >= 1, "a failed publish")
        assert released == []  # nothing is released while Pub/Sub refuses it
        await asyncio.to_thread(ensure_topic, project, topic)
        await asyncio.wait_for(delivery, 60)
        assert released == [7, 8]
    finally:
        await queue.stop()


# --- health -------------------------------------------------------------------------------------


@pytest.mark.parametrize("usable", [True, False], ids=["usable-store", "store-path-is-a-file"])
async def test_ready_and_the_metrics_health_follow_the_store(tmp_path: Path, usable: bool) -> None:
    from eventkit_collector.metrics import MetricsServer
    from eventkit_storage import LocalErrorStore, LocalEventStore

    s = settings(tmp_path)
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    root = s.eventkit_data_dir if usable else blocker / "data"
    collector = Collector(
        s, event_store=LocalEventStore(root), error_store=LocalErrorStore(s.eventkit_data_dir)
    )
    async with serving(collector) as c:
        r = await c.get("/ready")
        assert r.status_code == (200 if usable else 503)
        assert r.json() == {
            "status": "ready" if usable else "not_ready",
            "components": {"ring_buffer": True, "storage": usable, "queue": True},
        }
        server = MetricsServer("127.0.0.1", 0, collector.pipeline.ready)
        server.start()
        try:
            async with httpx.AsyncClient() as http:
                health = await http.get(f"http://127.0.0.1:{server.port}/health")
        finally:
            server.stop()
        assert health.status_code == (200 if usable else 503)
        assert health.json() == {"status": "ok" if usable else "unhealthy"}


async def test_a_start_that_fails_gives_the_shard_back(tmp_path: Path) -> None:
    from eventkit_collector.shards import try_lock

    s = settings(tmp_path)
    collector = Collector(s)
    broken = Collector(s)
    await collector.start()  # holds shard 0
    try:
        sink = broken.pipeline.sink
        assert isinstance(sink, InProcessSink)
        await sink.queue.stop()  # a stopped queue cannot start: broken's start fails
        with pytest.raises(Exception, match="stopped"):
            await broken.start()
    finally:
        await collector.stop()
    assert broken.pipeline.shard == 1
    lock = try_lock(s.ring_dir, 1)
    assert lock is not None  # shard 1 was given back
    lock.release()
