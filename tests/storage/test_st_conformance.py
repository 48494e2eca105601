"""Every EventStore and ErrorStore backend (memory, local, gcs) through the same tests.

The GCS backend runs against fake-gcs-server (fixture ``gcs_emulator``); files are checked both
through the store and directly where the backend keeps them (dict, directory, emulator root).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import msgspec
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from eventkit_core import DeadLetter, ErrorStore, EventStore, InvalidStreamError, TypedEvent
from eventkit_storage import EVENT_SCHEMA, FileErrorStore, FileEventStore, file_name
from eventkit_storage.extras import extras_json
from eventkit_storage.memory import MemoryErrorStore, MemoryEventStore, MemoryFiles
from eventkit_storage.parquet import read_dead_letters, read_events
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader

from tests.emulators import GcsEmulator

HOUR = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)  # the factories' default received_at
MakeEvent = Callable[..., TypedEvent]
MakeDeadLetter = Callable[..., DeadLetter]

NAME_RE = r"\d{12}-\d{12}-[0-9a-f]{16}"


@dataclass
class Backend:
    name: str
    events: FileEventStore
    errors: FileErrorStore
    #: The bytes of a stored file, read where the backend keeps it (not through the store).
    raw: Callable[[str], bytes]
    #: What every uri starts with.
    uri_prefix: str
    metrics: InMemoryMetricReader


def _memory(
    metrics: MeterProvider,
) -> tuple[FileEventStore, FileErrorStore, Callable[[str], bytes]]:
    files = MemoryFiles()
    events = MemoryEventStore(files, meter_provider=metrics)
    errors = MemoryErrorStore(files, meter_provider=metrics)

    def raw(path: str) -> bytes:
        return files.files[path][0]

    return events, errors, raw


@pytest.fixture(
    params=["memory", "local", pytest.param("gcs", marks=pytest.mark.integration)],
)
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader])
    if request.param == "memory":
        events, errors, raw = _memory(provider)
        yield Backend("memory", events, errors, raw, "memory:///", reader)
    elif request.param == "local":
        from eventkit_storage.local import LocalErrorStore, LocalEventStore

        root = tmp_path / "data"
        yield Backend(
            "local",
            LocalEventStore(root, meter_provider=provider),
            LocalErrorStore(root, meter_provider=provider),
            lambda path: (root / path).read_bytes(),
            root.as_uri() + "/",
            reader,
        )
    else:
        from eventkit_storage.gcs import GCSErrorStore, GCSEventStore

        emulator: GcsEmulator = request.getfixturevalue("gcs_emulator")
        bucket = emulator.create_bucket()
        client = emulator.client()
        prefix = "team/eventkit"
        yield Backend(
            "gcs",
            GCSEventStore(bucket, prefix=prefix + "/", client=client, meter_provider=provider),
            GCSErrorStore(bucket, prefix=prefix, client=client, meter_provider=provider),
            lambda path: (emulator.root / bucket / prefix / path).read_bytes(),
            f"gs://{bucket}/{prefix}/",
            reader,
        )
    provider.shutdown()


def _events_in_two_streams_and_hours(make_event: MakeEvent) -> list[TypedEvent]:
    later = HOUR + timedelta(hours=1, minutes=5)
    return [
        make_event("events"),
        make_event("pages", type="page", name="Home", event=None),
        make_event("events", received_at=later),
        make_event("events", sent_at=HOUR - timedelta(seconds=2), original_timestamp=HOUR),
        make_event("pages", type="page", name="Docs", event=None, properties=None),
        make_event("events", received_at=later, anonymous_id="a-1", user_id=None),
    ]


def _expected_row(event: TypedEvent) -> dict[str, Any]:
    row: dict[str, Any] = {}
    for name in EVENT_SCHEMA.names:
        if name == "extras":
            extras = extras_json(event)
            row[name] = None if extras is None else extras.decode()
            continue
        if name == "payload":  # kept only with payload="full"
            row[name] = None
            continue
        value = getattr(event, name)
        row[name] = bytes(value).decode() if isinstance(value, msgspec.Raw) else value
    return row


def _counters(reader: InMemoryMetricReader) -> dict[tuple[str, tuple[tuple[str, Any], ...]], int]:
    data = reader.get_metrics_data()
    totals: dict[tuple[str, tuple[tuple[str, Any], ...]], int] = {}
    if data is None:
        return totals
    for resource in data.resource_metrics:
        for scope in resource.scope_metrics:
            for metric in scope.metrics:
                assert metric.unit == ""
                for point in metric.data.data_points:  # type: ignore[union-attr]
                    labels = tuple(sorted((point.attributes or {}).items()))
                    totals[(metric.name, labels)] = int(point.value)  # type: ignore[union-attr]
    return totals


async def test_protocols(backend: Backend) -> None:
    assert isinstance(backend.events, EventStore)
    assert isinstance(backend.errors, ErrorStore)


async def test_store_batch_round_trip(backend: Backend, make_event: MakeEvent) -> None:
    events = _events_in_two_streams_and_hours(make_event)
    files = await backend.events.store_batch(events)

    assert len(files) == 3  # events@12, pages@12, events@13
    assert sum(f.rows for f in files) == len(events)
    assert all(f.created for f in files)
    assert sorted(i for f in files for i in f.source_ids) == [e.source_id for e in events]
    read_back: dict[str, dict[str, Any]] = {}
    for stored in files:
        data = backend.raw(stored.path)
        assert stored.bytes == len(data)
        assert stored.uri == backend.uri_prefix + stored.path
        assert await backend.events.read_bytes(stored.path) == data
        table = read_events(data)
        assert table.schema.equals(EVENT_SCHEMA)
        metadata = pq.ParquetFile(pa.BufferReader(data)).metadata
        assert metadata.row_group(0).column(0).compression == "ZSTD"
        assert table.num_rows == stored.rows
        for row in table.to_pylist():
            read_back[row["message_id"]] = row
    assert read_back == {e.message_id: _expected_row(e) for e in events}


async def test_path_layout(backend: Backend, make_event: MakeEvent) -> None:
    # 01:30 at +02:00 is 23:30 UTC the day before: the folder is the UTC hour
    received = datetime(2024, 1, 1, 1, 30, tzinfo=timezone(timedelta(hours=2)))
    group = [make_event("Web_Checkout-2", received_at=received, source_id=i) for i in (7, 3, 5)]
    (stored,) = await backend.events.store_batch(group)
    assert re.fullmatch(rf"events/Web_Checkout-2/2023/12/31/23/{NAME_RE}\.parquet", stored.path)
    assert stored.path.endswith(f"/{file_name(group)}.parquet")
    assert stored.path.rsplit("/", 1)[1].startswith("000000000003-000000000007-")
    assert stored.source_ids == (7, 3, 5)

    (letter,) = await backend.errors.store_errors(
        [DeadLetter(stream="raw", reason_code="x", reason="y", payload="1", received_at=received)]
    )
    assert re.fullmatch(r"dead-letters/raw/2023/12/31/23/[0-9a-f]{16}\.parquet", letter.path)


async def test_create_only_rewrite(backend: Backend, make_event: MakeEvent) -> None:
    events = [make_event() for _ in range(3)]
    (first,) = await backend.events.store_batch(events)
    before = backend.raw(first.path)

    # the same entries again, as after a crash, even with different content: left as it was
    changed = [msgspec.structs.replace(e, event="Changed") for e in reversed(events)]
    (again,) = await backend.events.store_batch(changed)

    assert again.path == first.path
    assert not again.created
    assert again.bytes == len(before)
    assert sorted(again.source_ids) == sorted(first.source_ids)
    assert backend.raw(first.path) == before
    assert len(await backend.events.list_files()) == 1
    counters = _counters(backend.metrics)
    label = (("storage_type", backend.name),)
    assert counters[("eventkit_storage_files_written", label)] == 1
    assert counters[("eventkit_storage_bytes_written", label)] == len(before)


async def test_error_round_trip(backend: Backend, make_dead_letter: MakeDeadLetter) -> None:
    later = HOUR + timedelta(hours=2)
    letters = [
        make_dead_letter("events"),
        make_dead_letter("events", message_id=None, ip=None, batch_context=None),
        make_dead_letter("other"),
        make_dead_letter("events", received_at=later),
    ]
    files = await backend.errors.store_errors(letters)
    assert len(files) == 3
    assert all(f.path.startswith("dead-letters/") for f in files)
    for stored in files:
        assert read_dead_letters(backend.raw(stored.path))  # readable where it is kept

    got = [d async for d in backend.errors.read_errors("events")]
    expected = [msgspec.structs.replace(d, source_id=None) for d in letters if d.stream == "events"]
    assert sorted(got, key=repr) == sorted(expected, key=repr)
    assert all(d.received_at.tzinfo is not None for d in got)
    assert [d.to_raw().payload for d in got if d.message_id == "d-1"] == [
        msgspec.Raw(letters[0].payload.encode())
    ]

    since = [d async for d in backend.errors.read_errors("events", since=later)]
    assert since == [msgspec.structs.replace(letters[3], source_id=None)]
    assert [d async for d in backend.errors.read_errors("nothing-here")] == []

    await backend.errors.store_error(make_dead_letter("single"))
    assert len([d async for d in backend.errors.read_errors("single")]) == 1


async def test_health_check(backend: Backend, make_event: MakeEvent) -> None:
    assert backend.events.health_check()
    assert backend.errors.health_check()
    await backend.events.store(make_event())
    assert backend.events.health_check()


async def test_list_files(
    backend: Backend, make_event: MakeEvent, make_dead_letter: MakeDeadLetter
) -> None:
    assert await backend.events.list_files() == []
    started = datetime.now(UTC) - timedelta(seconds=5)  # file times may be coarse
    files = await backend.events.store_batch(_events_in_two_streams_and_hours(make_event))
    await backend.errors.store_errors([make_dead_letter("events")])

    listed = await backend.events.list_files()
    assert [f.path for f in listed] == sorted(f.path for f in files)
    for info in listed:
        assert info.size == len(backend.raw(info.path))
        assert info.uri == backend.uri_prefix + info.path
        assert info.updated >= started
    assert [f.path for f in await backend.events.list_files(stream="pages")] == [
        f.path for f in files if f.path.startswith("events/pages/")
    ]
    future = datetime.now(UTC) + timedelta(hours=1)
    assert await backend.events.list_files(since=future) == []
    assert len(await backend.events.list_files(since=started)) == 3
    (letter,) = await backend.errors.list_files()
    assert letter.path.startswith("dead-letters/events/")
    assert [f.path for f in await backend.events.list_files("dead-letters")] == [letter.path]


async def test_invalid_stream_writes_nothing(backend: Backend, make_event: MakeEvent) -> None:
    with pytest.raises(InvalidStreamError):
        await backend.events.store_batch([make_event("../escape")])
    with pytest.raises(InvalidStreamError):
        await backend.events.list_files(stream="a/b")
    assert await backend.events.list_files() == []
    assert await backend.errors.store_errors([]) == []
    assert await backend.events.store_batch([]) == []
