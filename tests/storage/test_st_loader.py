"""EventLoader: flush triggers, durability of add(), backpressure, retry without loss, reports."""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime

import msgspec
import pytest
from eventkit_core import (
    AdaptError,
    AdaptResult,
    ConfigurationError,
    DeadLetter,
    InvalidStreamError,
    RawEvent,
    SourceId,
    StorageError,
    StoredFile,
    TrackEvent,
    TypedEvent,
)
from eventkit_storage import EventLoader, LoaderStoppedError
from eventkit_storage.memory import MemoryErrorStore, MemoryEventStore
from eventkit_storage.parquet import read_dead_letters, read_events

from tests.storage.st_support import FlakyStore, Reports

MakeEvent = Callable[..., TypedEvent]
MakeDeadLetter = Callable[..., DeadLetter]
Eventually = Callable[[Callable[[], bool]], Awaitable[None]]

NEVER = 3600.0  # a max_age that does not fire during a test


class GatedStore(MemoryEventStore):
    """A memory event store whose writes wait for ``gate`` (per stream when ``streams`` given)."""

    def __init__(self, streams: set[str] | None = None) -> None:
        super().__init__()
        self.gate = asyncio.Event()
        self.streams = streams
        self.entered = 0

    async def store_batch(self, events: Sequence[TypedEvent]) -> list[StoredFile]:
        if self.streams is None or events[0].stream in self.streams:
            self.entered += 1
            await self.gate.wait()
        return await super().store_batch(events)


async def stored_rows(store: MemoryEventStore) -> list[dict[str, object]]:
    rows: list[dict[str, object]] = []
    for info in await store.list_files():
        rows.extend(read_events(await store.read_bytes(info.path)).to_pylist())
    return rows


def test_rejects_bad_settings() -> None:
    with pytest.raises(ConfigurationError, match="max_events"):
        EventLoader(MemoryEventStore(), max_events=0)
    with pytest.raises(ConfigurationError, match="max_age"):
        EventLoader(MemoryEventStore(), max_age=-1)


async def test_flush_by_count(make_event: MakeEvent, eventually: Eventually) -> None:
    store = MemoryEventStore()
    reports = Reports()
    loader = EventLoader(store, max_events=5, max_age=NEVER, on_flushed=reports)
    await loader.start()
    await loader.submit([make_event() for _ in range(12)])

    await eventually(lambda: reports.rows == 10)
    assert [f.rows for f in reports.files] == [5, 5]
    assert loader.stats.buffered == 2
    await loader.stop()
    assert [f.rows for f in reports.files] == [5, 5, 2]
    assert loader.stats.buffered == 0


async def test_flush_by_bytes(make_event: MakeEvent, eventually: Eventually) -> None:
    store = MemoryEventStore()
    reports = Reports()
    events = [make_event() for _ in range(6)]
    size = len(events[0].payload)
    assert all(len(e.payload) == size for e in events)
    loader = EventLoader(
        store, max_events=1000, max_bytes=3 * size, max_age=NEVER, on_flushed=reports
    )
    await loader.start()
    await loader.submit(events[:2])
    assert loader.stats.pending_batches == 0  # batches are cut synchronously in submit()
    await loader.submit(events[2:3])
    assert loader.stats.pending_batches == 1
    await loader.submit(events[3:])
    await eventually(lambda: reports.rows == 6)
    assert [f.rows for f in reports.files] == [3, 3]
    await loader.stop()


async def test_flush_by_age(make_event: MakeEvent, eventually: Eventually) -> None:
    store = MemoryEventStore()
    reports = Reports()
    loader = EventLoader(store, max_events=1000, max_age=0.05, on_flushed=reports)
    await loader.start()
    submitted = time.monotonic()
    await loader.submit([make_event() for _ in range(3)])
    await eventually(lambda: reports.rows == 3)
    # Cut by age, not by count or size: never before max_age (a busy machine only makes it
    # later; the slack is the event loop's clock resolution).
    assert time.monotonic() - submitted >= 0.05 - 0.005
    await loader.submit([make_event()])  # a new buffer gets its own age
    await eventually(lambda: reports.rows == 4)
    assert [f.rows for f in reports.files] == [3, 1]
    await loader.stop()


async def test_stop_flushes_everything(make_event: MakeEvent) -> None:
    store = MemoryEventStore()
    reports = Reports()
    loader = EventLoader(store, max_age=NEVER, on_flushed=reports)
    await loader.start()
    events = [make_event(s) for s in ("events", "pages", "events", "users")]
    await loader.submit(events)
    assert reports.rows == 0
    await loader.stop()
    assert reports.rows == 4
    assert sorted(str(r["message_id"]) for r in await stored_rows(store)) == sorted(
        e.message_id for e in events
    )
    with pytest.raises(LoaderStoppedError):
        await loader.submit([make_event()])


async def test_flush_writes_now(make_event: MakeEvent) -> None:
    store = MemoryEventStore()
    loader = EventLoader(store, max_age=NEVER)
    await loader.submit([make_event(), make_event("pages")])
    await loader.flush()
    assert len(await store.list_files()) == 2
    await loader.flush()  # nothing buffered: nothing to do
    await loader.stop()


async def test_add_returns_only_after_the_durable_write(
    make_event: MakeEvent, eventually: Eventually
) -> None:
    store = GatedStore()
    loader = EventLoader(store, max_events=2, max_age=NEVER)
    await loader.start()
    first = asyncio.create_task(loader.add(make_event()))
    second = asyncio.create_task(loader.add(make_event()))
    await eventually(lambda: store.entered == 1)
    assert not first.done()
    assert not second.done()
    assert await store.list_files() == []

    store.gate.set()
    await asyncio.gather(first, second)
    assert len(await stored_rows(store)) == 2
    await loader.stop()


async def test_add_many_waits_for_every_stream(
    make_event: MakeEvent, eventually: Eventually
) -> None:
    store = GatedStore(streams={"slow"})
    loader = EventLoader(store, max_age=0.01)
    task = asyncio.create_task(loader.add_many([make_event("fast"), make_event("slow")]))
    await eventually(lambda: store.entered == 1)
    await eventually(lambda: loader.stats.files_written == 1)  # "fast" is not held up
    assert not task.done()
    store.gate.set()
    await task
    assert loader.stats.files_written == 2
    await loader.stop()


async def test_cancelled_add_does_not_cancel_the_write(
    make_event: MakeEvent, eventually: Eventually
) -> None:
    store = GatedStore()
    reports = Reports()
    loader = EventLoader(store, max_events=2, max_age=NEVER, on_flushed=reports)
    waiting = asyncio.create_task(loader.add(make_event()))
    await loader.submit([make_event()])
    await eventually(lambda: store.entered == 1)
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting
    store.gate.set()
    await loader.stop()
    assert reports.rows == 2


async def test_submit_pushes_back_when_full(make_event: MakeEvent, eventually: Eventually) -> None:
    store = GatedStore()
    loader = EventLoader(store, max_events=1000, max_age=NEVER, max_buffered_events=10)
    await loader.start()
    await loader.submit([make_event() for _ in range(8)])
    more = [make_event() for _ in range(5)]
    second = asyncio.create_task(loader.submit(more))
    # being full cuts the buffer at once, so the write starts (and is held by the gate)
    await eventually(lambda: store.entered == 1)
    assert not second.done()
    assert loader.stats.buffered == 8

    store.gate.set()
    await second
    assert loader.stats.buffered == 5
    await loader.stop()
    assert len(await stored_rows(store)) == 13


async def test_one_submit_larger_than_the_buffer_is_taken(make_event: MakeEvent) -> None:
    store = MemoryEventStore()
    loader = EventLoader(store, max_events=4, max_age=NEVER, max_buffered_events=3)
    await loader.submit([make_event() for _ in range(9)])  # an empty loader never refuses
    await loader.stop()
    assert len(await stored_rows(store)) == 9


async def test_retries_a_failing_store_without_loss(
    make_event: MakeEvent, eventually: Eventually, caplog: pytest.LogCaptureFixture
) -> None:
    store = FlakyStore(failures=3)
    reports = Reports()
    loader = EventLoader(
        store, max_events=4, max_age=NEVER, on_flushed=reports, retry_initial=0.01, retry_max=0.02
    )
    events = [make_event() for _ in range(10)]
    with caplog.at_level(logging.WARNING, logger="eventkit_storage.loader"):
        await loader.submit(events)  # never raises: failures are the loader's to handle
        await eventually(lambda: store.attempts >= 1)
        assert not loader.health_check()
        assert loader.stats.retrying
        await eventually(lambda: reports.rows == 8)
    assert loader.health_check()
    assert loader.stats.write_failures == 3
    # one warning per failing streak, not one per attempt
    assert len([r for r in caplog.records if r.levelno == logging.WARNING]) == 1
    await loader.stop()

    rows = await stored_rows(store)
    assert sorted(str(r["message_id"]) for r in rows) == sorted(e.message_id for e in events)
    assert reports.source_ids == Counter(e.source_id for e in events)
    # the stream's batches were written in order despite the retries
    assert [min(f.source_ids) for f in reports.files] == [1, 5, 9]


async def test_on_flushed_reports_exactly_the_durable_source_ids(
    make_event: MakeEvent, make_dead_letter: MakeDeadLetter
) -> None:
    events = MemoryEventStore()
    errors = MemoryErrorStore()
    reports = Reports()
    loader = EventLoader(events, errors, max_events=3, max_age=NEVER, on_flushed=reports)
    # several events may come from one source entry (a batch request): ids repeat
    items: list[TypedEvent | DeadLetter] = [
        make_event("events", source_id=1),
        make_event("events", source_id=1),
        make_event("pages", source_id=2),
        make_dead_letter("events", source_id=2),
        make_event("events", source_id=3),
        make_event("users", source_id="ack-7"),
        make_dead_letter("pages", source_id="ack-8"),
    ]
    await loader.submit(items)
    await loader.stop()

    assert reports.source_ids == Counter(i.source_id for i in items)
    durable: Counter[SourceId] = Counter()
    for stored in reports.files:
        store = events if stored.path.startswith("events/") else errors
        data = await store.read_bytes(stored.path)
        rows = (
            read_events(data).num_rows
            if stored.path.startswith("events/")
            else len(read_dead_letters(data))
        )
        assert rows == stored.rows == len(stored.source_ids)
        durable.update(stored.source_ids)
    assert durable == reports.source_ids
    listed = {f.path for f in await events.list_files()} | {
        f.path for f in await errors.list_files()
    }
    assert listed == {f.path for f in reports.files}


async def test_streams_are_written_separately_and_concurrently(
    make_event: MakeEvent, eventually: Eventually
) -> None:
    store = GatedStore(streams={"pages"})
    reports = Reports()
    loader = EventLoader(store, max_events=2, max_age=NEVER, on_flushed=reports)
    await loader.submit([make_event("pages"), make_event("events"), make_event("pages")])
    await loader.submit([make_event("events"), make_event("events"), make_event("events")])
    await eventually(lambda: reports.rows == 4)  # events: 2 + 2, while pages is held
    assert {f.path.split("/")[1] for f in reports.files} == {"events"}
    store.gate.set()
    await loader.stop()
    for info in await store.list_files():
        streams = {r["stream"] for r in read_events(await store.read_bytes(info.path)).to_pylist()}
        assert streams == {info.path.split("/")[1]}
    assert sorted(f.rows for f in reports.files) == [2, 2, 2]


class TrackOnly:
    """An adapter accepting objects with type "track"; anything else is rejected."""

    def adapt(self, raw: RawEvent) -> AdaptResult:
        payload = raw.payload
        if not isinstance(payload, dict) or payload.get("type") != "track":
            return AdaptResult(error=AdaptError("unsupported_type", "only track is supported"))
        return AdaptResult(
            event=TrackEvent(
                message_id=str(payload["messageId"]),
                stream=raw.stream,
                received_at=raw.received_at,
                timestamp=raw.received_at,
                payload=msgspec.Raw(b'{"type":"track"}'),
                source_id=raw.source_id,
            )
        )


async def test_dead_letters_and_raw_events(
    make_event: MakeEvent, make_dead_letter: MakeDeadLetter
) -> None:
    events = MemoryEventStore()
    errors = MemoryErrorStore()
    reports = Reports()
    loader = EventLoader(events, errors, adapter=TrackOnly(), max_age=0.01, on_flushed=reports)
    at = datetime(2024, 5, 1, 12, tzinfo=UTC)
    await loader.add_many(
        [
            RawEvent(payload={"type": "track", "messageId": "ok-1"}, stream="web", source_id=10),
            RawEvent(payload=[1, 2], stream="web", received_at=at, source_id=11, message_id="x"),
            make_dead_letter("web", source_id=12),
            make_event("web", source_id=13),
        ]
    )
    assert reports.source_ids == Counter({10: 1, 11: 1, 12: 1, 13: 1})
    letters = [d async for d in errors.read_errors("web")]
    by_code = {d.reason_code: d for d in letters}
    assert set(by_code) == {"unsupported_type", "invalid_type"}
    assert by_code["unsupported_type"].payload == "[1,2]"
    assert by_code["unsupported_type"].message_id == "x"
    assert by_code["unsupported_type"].received_at == at
    assert {r["message_id"] for r in await stored_rows(events)} == {"ok-1", "m-1"}
    await loader.stop()


async def test_needs_an_adapter_and_an_error_store(
    make_event: MakeEvent, make_dead_letter: MakeDeadLetter
) -> None:
    loader = EventLoader(MemoryEventStore())
    with pytest.raises(ConfigurationError, match="adapter"):
        await loader.add(RawEvent(payload={}))
    with pytest.raises(ConfigurationError, match="error_store"):
        await loader.submit([make_dead_letter()])
    await loader.stop()


async def test_invalid_stream_is_refused_at_once(make_event: MakeEvent) -> None:
    loader = EventLoader(MemoryEventStore(), max_age=NEVER)
    with pytest.raises(InvalidStreamError):
        await loader.submit([make_event("fine"), make_event("no/slashes")])
    assert loader.stats.buffered == 0  # nothing of a refused call is taken
    await loader.stop()


async def test_reflush_after_a_crash_still_reports_the_sources(make_event: MakeEvent) -> None:
    store = MemoryEventStore()
    events = [make_event() for _ in range(3)]
    await store.store_batch(events)  # written by a run that died before releasing them
    reports = Reports()
    loader = EventLoader(store, max_age=NEVER, on_flushed=reports)
    await loader.submit(events)  # redelivered: same entries, same file name
    await loader.stop()
    assert [f.created for f in reports.files] == [False]
    assert reports.source_ids == Counter(e.source_id for e in events)
    assert len(await store.list_files()) == 1


async def test_stop_with_a_grace_period_gives_up_without_releasing(
    make_event: MakeEvent, eventually: Eventually
) -> None:
    store = FlakyStore(failures=10**9)
    reports = Reports()
    loader = EventLoader(store, max_events=1, max_age=NEVER, on_flushed=reports, retry_initial=0.01)
    waiting = asyncio.create_task(loader.add(make_event()))
    await eventually(lambda: store.attempts >= 1)
    with pytest.raises(StorageError, match="1 items not written"):
        await loader.stop(grace_period=0.1)
    with pytest.raises(LoaderStoppedError):
        await waiting
    assert reports.files == []


async def test_on_flushed_errors_are_logged_not_raised(
    make_event: MakeEvent, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(files: Sequence[StoredFile]) -> None:
        raise RuntimeError("ack failed")

    store = MemoryEventStore()
    loader = EventLoader(store, max_events=1, max_age=NEVER, on_flushed=broken)
    await loader.add_many([make_event()])  # would hang if the report stopped the writer
    await loader.submit([make_event()])
    await loader.stop()
    assert caplog.text.count("on_flushed failed") == 2
    assert len(await store.list_files()) == 2
