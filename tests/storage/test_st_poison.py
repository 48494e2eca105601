"""Events that can never be stored become dead letters; failing stores are still retried."""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path

import msgspec
import pytest
from eventkit_core import DeadLetter, StorageError, TypedEvent
from eventkit_storage import (
    EventLoader,
    LocalErrorStore,
    LocalEventStore,
    MemoryErrorStore,
    MemoryEventStore,
    UnstorableEventsError,
    events_to_table,
)
from eventkit_storage.filestore import FileErrorStore, FileEventStore
from eventkit_storage.parquet import dead_letters_to_table, read_events

from tests.storage.st_support import FlakyErrors, FlakyStore, Reports

MakeEvent = Callable[..., TypedEvent]
MakeDeadLetter = Callable[..., DeadLetter]
Eventually = Callable[[Callable[[], bool]], Awaitable[None]]

NEVER = 3600.0


def make_stores(kind: str, tmp_path: Path) -> tuple[FileEventStore, FileErrorStore]:
    if kind == "memory":
        return MemoryEventStore(), MemoryErrorStore()
    return LocalEventStore(tmp_path / "data"), LocalErrorStore(tmp_path / "data")


async def write(loader: EventLoader, items: Sequence[TypedEvent]) -> None:
    """Give ``items`` and wait (10 s at most) until all of it is written."""
    await loader.submit(items)
    await asyncio.wait_for(loader.flush(), 10)


async def stored_ids(store: FileEventStore) -> list[str]:
    ids: list[str] = []
    for info in await store.list_files():
        ids.extend(read_events(await store.read_bytes(info.path)).column("message_id").to_pylist())
    return ids


@pytest.mark.parametrize("kind", ["memory", "local"])
async def test_poisoned_events_become_dead_letters(
    kind: str, tmp_path: Path, make_event: MakeEvent
) -> None:
    events, errors = make_stores(kind, tmp_path)
    reports = Reports()
    loader = EventLoader(events, errors, max_events=5000, max_age=NEVER, on_flushed=reports)
    good = [make_event() for _ in range(1000)]
    lone_surrogate = make_event(user_id="u-\ud800")  # from a Python caller
    not_utf8 = make_event(properties=msgspec.Raw(b'{"name":"\xff"}'))  # hand-built Raw
    items = [*good[:500], lone_surrogate, *good[500:], not_utf8]

    await write(loader, items)  # nothing is held up

    assert sorted(await stored_ids(events)) == sorted(e.message_id for e in good)
    letters = {d.message_id: d async for d in errors.read_errors("events")}
    assert set(letters) == {lone_surrogate.message_id, not_utf8.message_id}
    assert {d.reason_code for d in letters.values()} == {"unstorable"}
    assert "'user_id'" in letters[lone_surrogate.message_id].reason
    assert "'properties'" in letters[not_utf8.message_id].reason
    assert letters[lone_surrogate.message_id].payload == bytes(lone_surrogate.payload).decode()
    assert letters[not_utf8.message_id].received_at == not_utf8.received_at
    # every source entry is reported exactly once, across the event and dead-letter files
    assert reports.source_ids == Counter(e.source_id for e in items)
    assert {f.path.split("/")[0] for f in reports.files} == {"events", "dead-letters"}
    stats = loader.stats
    assert (stats.unstorable, stats.write_failures, stats.buffered) == (2, 0, 0)
    assert loader.health_check()
    await loader.stop()


async def test_io_failures_are_retried_not_dead_lettered(make_event: MakeEvent) -> None:
    events, errors = FlakyStore(failures=2), MemoryErrorStore()
    reports = Reports()
    loader = EventLoader(
        events, errors, max_age=NEVER, on_flushed=reports, retry_initial=0.01, retry_max=0.02
    )
    items = [make_event() for _ in range(10)]
    await write(loader, items)
    assert events.attempts == 3
    assert loader.stats.write_failures == 2
    assert loader.stats.unstorable == 0
    assert await errors.list_files() == []
    assert sorted(await stored_ids(events)) == sorted(e.message_id for e in items)
    assert reports.source_ids == Counter(e.source_id for e in items)
    await loader.stop()


async def test_both_stores_failing_meanwhile_loses_nothing(make_event: MakeEvent) -> None:
    events, errors = FlakyStore(failures=1), FlakyErrors(failures=2)
    reports = Reports()
    loader = EventLoader(
        events, errors, max_age=NEVER, on_flushed=reports, retry_initial=0.01, retry_max=0.02
    )
    items = [make_event(), make_event(message_id="m-\udfff"), make_event()]
    await write(loader, items)
    assert loader.stats.write_failures == 3  # 1 event write + 2 dead-letter writes
    assert loader.stats.unstorable == 1
    (letter,) = [d async for d in errors.read_errors("events")]
    assert letter.message_id == "m-\\udfff"  # stored escaped: it has to be storable itself
    assert "'message_id'" in letter.reason
    assert sorted(await stored_ids(events)) == [items[0].message_id, items[2].message_id]
    assert reports.source_ids == Counter(e.source_id for e in items)
    await loader.stop()


async def test_without_an_error_store_it_keeps_retrying(
    make_event: MakeEvent, eventually: Eventually, caplog: pytest.LogCaptureFixture
) -> None:
    events = MemoryEventStore()
    reports = Reports()
    loader = EventLoader(events, max_age=0.01, on_flushed=reports, retry_initial=0.01)
    with caplog.at_level(logging.WARNING, logger="eventkit_storage.loader"):
        await loader.submit([make_event(), make_event(user_id="\ud800")])
        await eventually(lambda: loader.stats.write_failures >= 3)
        assert not loader.health_check()
        with pytest.raises(StorageError, match="2 items not written"):
            await loader.stop(grace_period=0.05)
    assert reports.files == []
    assert await events.list_files() == []
    said = [r for r in caplog.records if "no error_store" in r.getMessage()]
    assert len(said) == 1
    assert said[0].levelno == logging.ERROR


async def test_odd_values_of_hand_built_events(make_event: MakeEvent) -> None:
    events, errors = MemoryEventStore(), MemoryErrorStore()
    loader = EventLoader(events, errors, max_age=NEVER)
    ok = make_event()
    odd = [
        make_event(payload=msgspec.Raw(b'{"a":"\xff"}')),
        make_event(timestamp=None),  # a required column
        make_event(event=42),
        make_event(sent_at="yesterday"),
        make_event(received_at="2024-05-01T12:00:00Z"),
    ]
    await write(loader, [ok, *odd])
    assert await stored_ids(events) == [ok.message_id]
    letters = {d.message_id: d async for d in errors.read_errors("events")}
    assert set(letters) == {e.message_id for e in odd}
    assert letters[odd[0].message_id].payload == '{"a":"\ufffd"}'
    for event, column in zip(
        odd, ["extras", "timestamp", "event", "sent_at", "received_at"], strict=True
    ):
        assert f"column {column!r}" in letters[event.message_id].reason
    assert loader.stats.unstorable == 5
    await loader.stop()


def test_conversion_names_every_unstorable_event(make_event: MakeEvent) -> None:
    batch = [make_event() for _ in range(100)]
    batch[3] = make_event(user_id="\ud800", anonymous_id="\udc00")
    batch[70] = make_event(context=msgspec.Raw(b"\xc3("))
    with pytest.raises(UnstorableEventsError) as caught:
        events_to_table(batch)
    rejected = caught.value.rejected
    assert [item for item, _ in rejected] == [batch[3], batch[70]]
    assert "'user_id'" in rejected[0][1]
    assert "'anonymous_id'" in rejected[0][1]
    assert "'context'" in rejected[1][1]
    assert isinstance(caught.value, ValueError)
    assert caught.value.code == "unstorable"


def test_dead_letters_that_cannot_be_stored_are_named(make_dead_letter: MakeDeadLetter) -> None:
    letters = [make_dead_letter(), make_dead_letter(reason="\ud800")]
    with pytest.raises(UnstorableEventsError) as caught:
        dead_letters_to_table(letters)
    assert [item for item, _ in caught.value.rejected] == [letters[1]]


async def test_unstorable_dead_letters_are_retried(
    make_dead_letter: MakeDeadLetter, eventually: Eventually, caplog: pytest.LogCaptureFixture
) -> None:
    loader = EventLoader(MemoryEventStore(), MemoryErrorStore(), max_age=0.01, retry_initial=0.01)
    with caplog.at_level(logging.ERROR, logger="eventkit_storage.loader"):
        await loader.submit([make_dead_letter(payload="\ud800")])
        await eventually(lambda: loader.stats.write_failures >= 2)
    assert "should not happen" in caplog.text
    with pytest.raises(StorageError):
        await loader.stop(grace_period=0.05)


async def test_hours_apart_in_one_batch(make_event: MakeEvent) -> None:
    events, errors = MemoryEventStore(), MemoryErrorStore()
    reports = Reports()
    loader = EventLoader(events, errors, max_age=NEVER, on_flushed=reports)
    later = datetime(2024, 5, 1, 15, tzinfo=UTC)
    items = [
        make_event(),
        make_event(user_id="\ud800"),
        make_event(received_at=later, timestamp=later),
        make_event(received_at=later, timestamp=later, traits=msgspec.Raw(b"\xff")),
    ]
    await write(loader, items)
    assert sorted(await stored_ids(events)) == [items[0].message_id, items[2].message_id]
    assert len([d async for d in errors.read_errors("events")]) == 2
    assert reports.source_ids == Counter(e.source_id for e in items)
    await loader.stop()
