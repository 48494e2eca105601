"""Parquet conversion and the file layout: columns, nulls, time zones, names, paths."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone

import msgspec
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from eventkit_core import DeadLetter, InvalidStreamError, TypedEvent
from eventkit_storage import DEAD_LETTER_SCHEMA, EVENT_SCHEMA
from eventkit_storage.parquet import (
    dead_letters_to_table,
    events_to_table,
    raw_to_string_array,
    read_dead_letters,
    read_events,
    table_to_parquet_bytes,
)
from eventkit_storage.paths import event_path, file_name, hour_of, parse_hour

MakeEvent = Callable[..., TypedEvent]
MakeDeadLetter = Callable[..., DeadLetter]
AT = datetime(2024, 5, 1, 12, 34, 56, 789012, tzinfo=UTC)


def test_events_to_table_columns_and_nulls(make_event: MakeEvent) -> None:
    plus2 = timezone(timedelta(hours=2))
    events = [
        make_event(sent_at=AT, original_timestamp=AT - timedelta(seconds=1)),
        make_event(properties=None, context=None, user_id=None, anonymous_id="a"),
        make_event(received_at=AT.astimezone(plus2), timestamp=AT.astimezone(plus2)),
        make_event(properties=msgspec.Raw('{"emoji":"✓","nested":{"a":[1,null]}}'.encode())),
    ]
    table = events_to_table(events)
    assert table.schema.equals(EVENT_SCHEMA)
    rows = table.to_pylist()
    assert rows[0]["sent_at"] == AT
    assert rows[0]["original_timestamp"] == AT - timedelta(seconds=1)
    assert rows[1]["sent_at"] is None
    assert (rows[1]["properties"], rows[1]["context"]) == (None, None)
    assert (rows[1]["user_id"], rows[1]["anonymous_id"]) == (None, "a")
    assert rows[2]["received_at"] == AT  # same instant, stored as UTC
    assert rows[3]["properties"] == '{"emoji":"✓","nested":{"a":[1,null]}}'
    assert rows[0]["payload"] is None  # the columns hold every field: nothing in extras
    assert rows[0]["extras"] is None
    full = events_to_table(events, payload="full").to_pylist()
    assert full[0]["payload"] == bytes(events[0].payload).decode()
    assert [r["message_id"] for r in rows] == [e.message_id for e in events]


def test_naive_datetimes_are_taken_as_utc(make_event: MakeEvent) -> None:
    naive = AT.replace(tzinfo=None)
    table = events_to_table([make_event(received_at=naive, timestamp=naive)])
    assert table.column("received_at")[0].as_py() == AT


def test_parquet_round_trip_is_exact(make_event: MakeEvent) -> None:
    events = [make_event(f"s{i % 2}", sent_at=AT if i % 3 else None) for i in range(50)]
    table = events_to_table(events)
    data = table_to_parquet_bytes(table)
    assert read_events(data).equals(table)
    metadata = pq.ParquetFile(pa.BufferReader(data)).metadata
    assert {metadata.row_group(0).column(i).compression for i in range(metadata.num_columns)} == {
        "ZSTD"
    }


def test_encodings_every_reader_knows_unless_asked(make_event: MakeEvent) -> None:
    events = [make_event(sent_at=AT) for _ in range(20)]
    table = events_to_table(events)

    def encodings(data: bytes) -> set[str]:
        metadata = pq.ParquetFile(pa.BufferReader(data)).metadata
        group = metadata.row_group(0)
        return {e for i in range(metadata.num_columns) for e in group.column(i).encodings}

    assert encodings(table_to_parquet_bytes(table)) <= {"PLAIN", "RLE", "RLE_DICTIONARY"}
    compact = table_to_parquet_bytes(table, delta_encodings=True)
    assert {"DELTA_BINARY_PACKED", "DELTA_LENGTH_BYTE_ARRAY"} <= encodings(compact)
    assert read_events(compact).equals(table)


def test_sorted_files_hold_the_same_rows(make_event: MakeEvent) -> None:
    events = [make_event(user_id=f"u{(i * 7) % 5}", event=f"e{i % 3}") for i in range(30)]
    table = events_to_table(events)
    back = read_events(table_to_parquet_bytes(table, sort=True))
    assert back.num_rows == 30
    assert sorted(back.to_pylist(), key=lambda r: str(r["message_id"])) == sorted(
        table.to_pylist(), key=lambda r: str(r["message_id"])
    )
    keys = [(r["type"], r["event"], r["user_id"]) for r in back.to_pylist()]
    assert keys == sorted(keys)


def test_empty_batches() -> None:
    assert events_to_table([]).num_rows == 0
    assert read_events(table_to_parquet_bytes(events_to_table([]))).num_rows == 0
    assert read_dead_letters(table_to_parquet_bytes(dead_letters_to_table([]))) == []


def test_json_columns_must_be_utf8() -> None:
    with pytest.raises(pa.ArrowInvalid):
        raw_to_string_array([msgspec.Raw(b'"\xff"')])
    assert raw_to_string_array([None, b"{}", None]).to_pylist() == [None, "{}", None]


def test_dead_letters_round_trip(make_dead_letter: MakeDeadLetter) -> None:
    letters = [
        make_dead_letter(),
        make_dead_letter("other", message_id=None, batch_sent_at=None, user_agent=None),
    ]
    letters = [msgspec.structs.replace(d, source_id=None) for d in letters]  # not stored
    table = dead_letters_to_table(letters)
    assert table.schema.equals(DEAD_LETTER_SCHEMA)
    assert read_dead_letters(table_to_parquet_bytes(table)) == letters


def test_file_name_comes_from_the_entries(
    make_event: MakeEvent, make_dead_letter: MakeDeadLetter
) -> None:
    events = [make_event(source_id=i) for i in (42, 7, 1000)]
    name = file_name(events)
    assert name.startswith("000000000007-000000001000-")
    assert len(name.rsplit("-", 1)[1]) == 16
    assert file_name(list(reversed(events))) == name  # order does not matter
    assert file_name(events[:2]) != name
    # the same ids over different events: another name
    others = [msgspec.structs.replace(e, message_id=e.message_id + "x") for e in events]
    assert file_name(others) != name
    # Pub/Sub-style ids: digest only
    acked = [msgspec.structs.replace(e, source_id=f"ack-{i}") for i, e in enumerate(events)]
    assert len(file_name(acked)) == 16
    assert file_name(acked) == file_name(
        [msgspec.structs.replace(e, source_id=None) for e in events]
    )
    # dead letters without a message id are named by their payload
    a = make_dead_letter(message_id=None, payload='{"a":1}', source_id="x")
    b = make_dead_letter(message_id=None, payload='{"a":2}', source_id="x")
    assert file_name([a]) != file_name([b])
    with pytest.raises(ValueError, match="at least one"):
        file_name([])


def test_event_path_layout() -> None:
    at = datetime(2024, 1, 1, 1, 30, tzinfo=timezone(timedelta(hours=2)))
    assert event_path("events", "web", at, "n") == "events/web/2023/12/31/23/n.parquet"
    assert event_path("dead-letters", "web", AT, "n") == "dead-letters/web/2024/05/01/12/n.parquet"
    assert parse_hour("events/web/2024/05/01/12/n.parquet") == hour_of(AT)
    assert parse_hour("elsewhere.parquet") is None
    for stream in ("", "a/b", "..", "x" * 65, "dt=2024"):
        with pytest.raises(InvalidStreamError):
            event_path("events", stream, AT, "n")
    for name in ("", "a/b", ".hidden"):
        with pytest.raises(ValueError, match="file name"):
            event_path("events", "web", AT, name)
    with pytest.raises(ValueError, match="kind"):
        event_path("logs", "web", AT, "n")  # type: ignore[arg-type]
