"""GenericAdapter: any JSON object becomes a CustomEvent."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec
import pytest
from eventkit_core import CustomEvent, RawEvent, SchemaAdapter
from eventkit_validators import GenericAdapter

ADAPTER = GenericAdapter()
RECEIVED = datetime(2024, 3, 1, 12, 0, tzinfo=UTC)


def adapt(payload: Any, **kwargs: Any) -> CustomEvent:
    raw = RawEvent(
        payload=msgspec.Raw(msgspec.json.encode(payload)), received_at=RECEIVED, **kwargs
    )
    result = ADAPTER.adapt(raw)
    assert result.ok, result.error
    assert isinstance(result.event, CustomEvent)
    return result.event


def test_is_a_schema_adapter() -> None:
    assert isinstance(ADAPTER, SchemaAdapter)


def test_any_object_is_kept_whole() -> None:
    payload = {"order": 17, "items": [1, 2], "nested": {"a": None}}
    event = adapt(payload, stream="webhooks", message_id="stable")
    assert event.type == "custom"
    assert event.stream == "webhooks"
    assert event.message_id == "stable"
    assert event.to_dict()["payload"] == payload
    assert event.timestamp == RECEIVED
    assert event.user_id is None
    assert event.properties is None


def test_segment_named_fields_are_extracted() -> None:
    payload = {
        "type": "track",
        "messageId": "m-1",
        "userId": 12,
        "anonymousId": "a",
        "event": "Order Completed",
        "properties": {"total": 3},
        "traits": {"plan": "pro"},
        "integrations": {"All": True},
        "timestamp": "2024-03-01T11:59:50Z",
        "sentAt": "2024-03-01T11:59:55Z",
    }
    event = adapt(payload)
    assert event.type == "track"
    assert (event.message_id, event.user_id, event.anonymous_id) == ("m-1", "12", "a")
    assert event.event == "Order Completed"
    assert event.to_dict()["properties"] == {"total": 3}
    assert event.to_dict()["traits"] == {"plan": "pro"}
    # 12:00:00 - (11:59:55 - 11:59:50) = 11:59:55
    assert event.timestamp == RECEIVED - timedelta(seconds=5)


def test_wrong_types_are_left_out_not_rejected() -> None:
    payload = {
        "type": 5,
        "userId": {"x": 1},
        "event": ["e"],
        "properties": [1],
        "context": "ctx",
        "timestamp": "not a time",
        "messageId": True,
    }
    event = adapt(payload, ip="1.2.3.4")
    assert event.type == "custom"
    assert event.user_id is None
    assert event.event is None
    assert event.properties is None
    assert event.original_timestamp is None
    assert event.timestamp == RECEIVED
    assert len(event.message_id) == 36  # generated
    assert event.to_dict()["context"] == {"ip": "1.2.3.4"}
    assert event.to_dict()["payload"] == payload


@pytest.mark.parametrize("payload", [[], [{"a": 1}], 3, "s", None, False])
def test_non_objects_fail(payload: Any) -> None:
    result = ADAPTER.adapt(RawEvent(payload=msgspec.Raw(msgspec.json.encode(payload))))
    assert result.error is not None
    assert result.error.code == "not_an_object"


def test_size_and_message_id_limits() -> None:
    big = {"blob": "x" * 40_000}
    result = ADAPTER.adapt(RawEvent(payload=big))
    assert result.error is not None
    assert result.error.code == "event_too_large"
    result = ADAPTER.adapt(RawEvent(payload={"messageId": "m" * 101}))
    assert result.error is not None
    assert result.error.code == "invalid_message_id"


def test_batch_fields_and_request_context() -> None:
    event = adapt(
        {"context": {"locale": "de"}, "timestamp": 1709294390},
        batch_context={"app": "x", "locale": "en"},
        batch_sent_at="2024-03-01T11:59:55Z",
        user_agent="curl/8",
    )
    assert event.to_dict()["context"] == {"userAgent": "curl/8", "app": "x", "locale": "de"}
    # original 11:59:50 (Unix), sent 11:59:55 -> 12:00:00 - 5 s
    assert event.timestamp == RECEIVED - timedelta(seconds=5)


def test_bad_batch_sent_at_is_ignored() -> None:
    event = adapt({"timestamp": "2024-03-01T11:00:00Z"}, batch_sent_at="later")
    assert event.sent_at is None
    assert event.timestamp == datetime(2024, 3, 1, 11, 0, tzinfo=UTC)


def test_adapt_many() -> None:
    results = ADAPTER.adapt_many([RawEvent(payload={"a": 1}), RawEvent(payload=[1])])
    assert [r.ok for r in results] == [True, False]


def test_every_segment_named_column_is_filled() -> None:
    payload = {
        "type": "signup",
        "userId": "u",
        "anonymousId": "a",
        "event": "e",
        "name": "n",
        "category": "c",
        "groupId": "g",
        "previousId": "p",
        "properties": {"x": 1},
        "traits": {"y": 2},
        "integrations": {"All": True},
    }
    event = adapt(payload, ip="1.2.3.4")
    d = event.to_dict()
    assert d["type"] == "signup"
    assert (d["event"], d["name"], d["category"], d["group_id"], d["previous_id"]) == tuple("encgp")
    assert (d["properties"], d["traits"], d["integrations"]) == ({"x": 1}, {"y": 2}, {"All": True})
    assert d["context"] == {"ip": "1.2.3.4"}


@pytest.mark.parametrize("kind", ["", None, 3])
def test_type_is_custom_unless_a_non_empty_string(kind: Any) -> None:
    assert adapt({"type": kind}).type == "custom"


def test_adapt_many_matches_adapt() -> None:
    raws = [
        RawEvent(payload=msgspec.Raw(b'{"userId":"u","messageId":"m1","context":{}}'), ip="1"),
        RawEvent(payload=msgspec.Raw(b"[1]")),
        RawEvent(payload=msgspec.Raw(b'{"messageId":"m2","timestamp":1709294390,"name":5}')),
        RawEvent(payload=msgspec.Raw(b"{")),
    ]
    many = GenericAdapter().adapt_many(raws)
    assert many == [GenericAdapter().adapt(raw) for raw in raws]
    assert [r.ok for r in many] == [True, False, True, False]
