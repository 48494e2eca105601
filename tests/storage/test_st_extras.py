"""The normalised event is rebuilt from its stored row (columns + ``extras``), for every adapter.

The corpus goes through the real adapters (the endpoint table: Segment calls of every type,
``/v1/batch`` with batch-level context, integrations and sentAt, ``/collect`` streams), with the
request's ip and User-Agent, odd and nested fields, unicode, empty objects, nulls and numbers of
every kind. Each event is written to Parquet, read back (and loaded into DuckDB), and the
normalised event rebuilt with :func:`eventkit_storage.extras.normalised_event`, which knows the
columns only, no adapter. The expectation is computed independently: the original object (stdlib
``json``) with each field a non-null column holds replaced by that column's value.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import msgspec
import pytest
from eventkit_core import RawEvent, TypedEvent
from eventkit_storage import LocalEventStore
from eventkit_storage.duckdb import DuckDBWarehouseLoader
from eventkit_storage.extras import extras_json, normalised_event
from eventkit_storage.parquet import events_to_table, read_events, table_to_parquet_bytes
from eventkit_validators import EndpointAdapter

RECEIVED = datetime(2024, 5, 1, 12, 0, 0, 250_000, tzinfo=UTC)

#: The contract (design: Names): Segment's field -> the column holding it.
COLUMN_OF = {
    "messageId": "message_id",
    "type": "type",
    "userId": "user_id",
    "anonymousId": "anonymous_id",
    "event": "event",
    "name": "name",
    "groupId": "group_id",
    "previousId": "previous_id",
    "timestamp": "timestamp",
    "originalTimestamp": "original_timestamp",
    "sentAt": "sent_at",
    "receivedAt": "received_at",
    "properties": "properties",
    "traits": "traits",
    "context": "context",
    "integrations": "integrations",
}
TIME_FIELDS = {"timestamp", "originalTimestamp", "sentAt", "receivedAt"}

# Numbers of every kind, written as JSON text (so the exact spelling reaches the adapter).
NUMBERS = (
    '{"zero":0,"negzero":-0,"negzerof":-0.0,"int":42,"neg":-17,"i64max":9223372036854775807,'
    '"i64min":-9223372036854775808,"tiny":1e-300,"huge":1.7976931348623157e308,"tenth":0.1,'
    '"big":1e21,"exp":2.5E-5,"one":1.0,"third":0.3333333333333333,"list":[1,2.5,-3e3]}'
)
ODD = {
    "writeKey": "wk_123",
    "channel": "server",
    "version": 2,
    "_metadata": {"bundled": ["Segment.io"], "unbundled": [], "bundledIds": []},
    "emptyObject": {},
    "emptyArray": [],
    "nothing": None,
    "flag": False,
    "nested": {"deep": {"deeper": [1, {"x": None, "y": [[]]}], "ключ": "значение"}},
    "ключ": "键 🤖 ü",
    "": "an empty key",
    "stream": "a field named like a column of eventkit's own",
}


def segment(kind: str, n: int, **fields: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "type": kind,
        "messageId": f"m-{kind}-{n}",
        "anonymousId": f"anon-{n}",
        "timestamp": "2024-05-01T11:59:58.123+02:00",
        "context": {"library": {"name": "analytics.js", "version": "1.0"}, "locale": "de-DE"},
    }
    body.update(fields)
    return body


def corpus() -> list[RawEvent]:
    """RawEvents as the collector makes them, for each endpoint kind."""
    raws: list[RawEvent] = []

    def add(payload: Any, source: str, stream: str, **extra: Any) -> None:
        data = payload if isinstance(payload, bytes) else msgspec.json.encode(payload)
        raws.append(
            RawEvent(
                payload=msgspec.Raw(data),
                stream=stream,
                source=source,
                received_at=RECEIVED + timedelta(milliseconds=len(raws)),
                ip="203.0.113.7",
                user_agent="Mozilla/5.0 (X11; Linux) ✓",
                message_id=f"derived-{len(raws)}",
                **extra,
            )
        )

    track_props = msgspec.json.decode(NUMBERS)
    add(segment("track", 1, event="Order Completed", properties=track_props), "track", "events")
    add(
        segment(
            "identify",
            2,
            userId="Zoë 🚀",
            traits={"name": "Zoë", "email": "zoe@example.com", "plan": None, "address": {}},
            sentAt="2024-05-01T10:00:01.000Z",
            **ODD,
        ),
        "identify",
        "users",
    )
    add(
        segment(
            "page",
            3,
            name="Pricing — Acme",
            category="Docs",
            properties={"path": "/pricing", "title": "Pricing"},
            originalTimestamp="2024-05-01T09:59:00Z",
            integrations={"All": False, "Mixpanel": True},
        ),
        "page",
        "pages",
    )
    add(segment("screen", 4, name="Home", properties={}), "screen", "screens")
    add(
        segment("group", 5, groupId="org_9", traits={"employees": 5000, "tags": ["b2b"]}),
        "group",
        "groups",
    )
    add(segment("alias", 6, userId="user_6", previousId="anon-6"), "alias", "aliases")
    # The same escaped differently: the column holds "é", the JSON text says \u00e9.
    add(
        b'{"type":"track","event":"caf\\u00e9","userId":"\\u00e9","anonymousId":"a",'
        b'"properties":{"text":"\\u0000 nul and \\ud83d\\ude00"}}',
        "track",
        "events",
    )
    # Without messageId, context or timestamp: the columns fill them in.
    add({"type": "track", "event": "Bare", "userId": "u-bare"}, "track", "events")
    # /v1/batch items: batch context, integrations and sentAt apply to each.
    batch = {
        "batch_context": msgspec.Raw(b'{"library":{"name":"analytics-python"},"app":{"v":"1"}}'),
        "batch_integrations": msgspec.Raw(b'{"Amplitude":false}'),
        "batch_sent_at": "2024-05-01T12:00:00.000Z",
    }
    add(
        segment("track", 7, event="In a batch", properties={"a": [1, {}]}),
        "batch",
        "events",
        **batch,
    )
    add(segment("identify", 8, userId="u8", traits={"x": 1}), "batch", "users", **batch)
    # /collect streams (schemaless): anything that is an object.
    add({"what": "no Segment field at all", "n": 1.5e-7, **ODD}, "collect", "clicks")
    add(
        {
            "type": 5,  # not a string: the column says "custom", extras keeps 5
            "messageId": 17,
            "userId": 42,
            "anonymousId": "",
            "properties": "not an object",
            "context": [1, 2],
            "timestamp": "not a time",
            "sentAt": None,
            "receivedAt": "2000-01-01T00:00:00Z",
            "event": ["a list"],
        },
        "collect",
        "odd",
    )
    add({"type": "purchase", "userId": None, "amount": 19.99, "currency": "EUR"}, "collect", "buys")
    add({"type": "track", "event": "Typed", "userId": "u", "integrations": {}}, "collect", "x")
    add(b'{"a":1,"a":2,"messageId":"dup-keys"}', "collect", "dups")
    return raws


def adapted() -> list[TypedEvent]:
    adapter = EndpointAdapter()
    events = []
    for raw, result in zip(corpus(), adapter.adapt_many(corpus()), strict=True):
        assert result.event is not None, (raw.payload, result.error)
        events.append(result.event)
    return events


def _json_column(value: msgspec.Raw | None) -> Any:
    return json.loads(bytes(value)) if value is not None else None


def expected(event: TypedEvent) -> dict[str, Any]:
    """The normalised event: the original object, each field a column holds as the column."""
    out = dict(json.loads(bytes(event.payload)))
    for name, column in COLUMN_OF.items():
        value = getattr(event, column)
        if value is None:
            continue
        out[name] = _json_column(value) if isinstance(value, msgspec.Raw) else value
    return out


def _instant(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.astimezone(UTC)
    if isinstance(value, str):
        try:
            return datetime.fromisoformat(value).astimezone(UTC)
        except ValueError:
            return value  # not a time (a schemaless stream's field, kept as it was)
    return value


def as_json(event: dict[str, Any]) -> str:
    """Canonical JSON text, times as instants (the same instant compares equal)."""
    canonical = {}
    for key, value in event.items():
        moment = _instant(value) if key in TIME_FIELDS else value
        canonical[key] = moment.isoformat() if isinstance(moment, datetime) else moment
    return json.dumps(canonical, sort_keys=True, ensure_ascii=False)


def _check(rows: list[dict[str, Any]], events: list[TypedEvent]) -> None:
    by_id = {row["message_id"]: row for row in rows}
    assert len(by_id) == len(events)
    for event in events:
        rebuilt = normalised_event(by_id[event.message_id])
        assert as_json(rebuilt) == as_json(expected(event)), event.payload


@pytest.mark.parametrize("payload", ["extras", "full"])
def test_every_event_is_rebuilt_from_its_parquet_row(payload: str) -> None:
    events = adapted()
    data = table_to_parquet_bytes(events_to_table(events, payload=payload))  # type: ignore[arg-type]
    rows = read_events(data).to_pylist()
    _check(rows, events)
    if payload == "extras":
        assert all(row["payload"] is None for row in rows)
    else:
        assert [row["payload"] for row in rows] == [bytes(e.payload).decode() for e in events]


def test_rows_without_extras_but_with_payload_are_rebuilt_too() -> None:
    """A row written before ``extras`` existed: ``payload`` stands in for it."""
    events = adapted()
    rows = events_to_table(events, payload="full").drop_columns(["extras"]).to_pylist()
    _check(rows, events)


def test_extras_holds_only_what_no_column_holds() -> None:
    by_source = {e.message_id: e for e in adapted()}
    # An SDK event whose fields all have columns stores no extras at all.
    assert extras_json(by_source["m-track-1"]) is None
    assert extras_json(by_source["m-screen-4"]) is None
    page = msgspec.json.decode(extras_json(by_source["m-page-3"]) or b"null")
    assert page == {"category": "Docs"}
    identify = msgspec.json.decode(extras_json(by_source["m-identify-2"]) or b"null")
    assert identify == ODD
    # Schemaless: fields not in their column are kept with their original value.
    odd = next(e for e in by_source.values() if e.stream == "odd")
    kept = msgspec.json.decode(extras_json(odd) or b"null")
    assert kept == {
        "type": 5,
        "messageId": 17,
        "userId": 42,
        "anonymousId": "",
        "properties": "not an object",
        "context": [1, 2],
        "sentAt": None,
        "event": ["a list"],
    }
    assert normalised_event(events_to_table([odd]).to_pylist()[0])["type"] == "custom"


async def test_every_event_is_rebuilt_from_the_duckdb_warehouse(tmp_path: Path) -> None:
    events = adapted()
    store = LocalEventStore(tmp_path / "data")
    files = await store.store_batch(events)
    loader = DuckDBWarehouseLoader(tmp_path / "warehouse.duckdb")
    report = await loader.load_files([f.uri for f in files])
    assert report.rows == len(events)
    for relation in ("raw_events", "events"):
        names, rows = loader.query(f"SELECT * FROM {relation}")
        _check([dict(zip(names, row, strict=True)) for row in rows], events)
    # The view exposes extras as JSON: its fields can be queried.
    _, rows = loader.query("SELECT extras->>'category' FROM pages")
    assert rows == [("Docs",)]
