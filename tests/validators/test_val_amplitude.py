"""AmplitudeAdapter: the mapping table of eventkit_validators.amplitude, traits, errors."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import msgspec
import pytest
from eventkit_core import AdaptResult, RawEvent, TypedEvent
from eventkit_validators import VENDOR_PEEKS, AmplitudeAdapter, EndpointAdapter
from eventkit_validators.amplitude import peek, user_traits

ADAPTER = AmplitudeAdapter()
T = datetime(2024, 5, 6, 7, 8, 9, tzinfo=UTC)
T_MS = 1714979289000


def adapt(payload: Any) -> AdaptResult:
    """Adapt as msgspec.Raw (the collector's form) and as a dict (a replay's): both agree."""
    raw = RawEvent(payload=msgspec.Raw(msgspec.json.encode(payload)), source="amplitude")
    result = ADAPTER.adapt(raw)
    if isinstance(payload, dict):
        assert ADAPTER.adapt(msgspec.structs.replace(raw, payload=payload)).error == result.error
    return result


def ok(payload: Any) -> TypedEvent:
    result = adapt(payload)
    assert result.error is None, result.error
    assert result.event is not None
    return result.event


def js(value: msgspec.Raw | None) -> Any:
    return None if value is None else json.loads(bytes(value))


def test_track_with_every_mapped_field() -> None:
    e = ok(
        {
            "event_type": "Song Played",
            "user_id": "user-1",
            "device_id": "device-1",
            "time": T_MS,
            "insert_id": "i-1",
            "event_properties": {"title": "Blue"},
            "library": "amplitude-python/1.3.0",
            "platform": "Python",
            "os_name": "Linux",
            "os_version": "6.1",
            "device_model": "X1",
            "app_version": "2.0",
            "ip": "10.0.0.1",
            "language": "en",
            "country": "NL",
            "city": "Delft",
            "location_lat": 52.0,
            "location_lng": 4.3,
        }
    )
    assert (e.type, e.event, e.message_id) == ("track", "Song Played", "i-1")
    assert (e.user_id, e.anonymous_id) == ("user-1", "device-1")
    assert e.original_timestamp == T
    assert js(e.properties) == {"title": "Blue"}
    assert js(e.context) == {
        "library": {"name": "amplitude-python", "version": "1.3.0"},
        "os": {"name": "Linux", "version": "6.1"},
        "device": {"model": "X1"},
        "app": {"version": "2.0"},
        "location": {"country": "NL", "city": "Delft", "latitude": 52.0, "longitude": 4.3},
        "platform": "Python",
        "ip": "10.0.0.1",
        "locale": "en",
    }


def test_identify_applies_set_and_set_once_and_keeps_the_rest_in_payload() -> None:
    e = ok(
        {
            "event_type": "$identify",
            "user_id": "u",
            "user_properties": {
                "$set": {"plan": "pro", "a": 1},
                "$setOnce": {"a": 0, "first_seen": "2024"},
                "$add": {"logins": 1},
                "$unset": {"old": "-"},
            },
        }
    )
    assert e.type == "identify"
    assert js(e.traits) == {"plan": "pro", "a": 1, "first_seen": "2024"}
    assert js(e.payload)["user_properties"]["$add"] == {"logins": 1}


def test_plain_user_properties_are_traits_of_any_event() -> None:
    e = ok({"event_type": "x", "device_id": "d", "user_properties": {"plan": "pro"}})
    assert (e.type, e.user_id, e.anonymous_id, js(e.traits)) == (
        "track",
        None,
        "d",
        {"plan": "pro"},
    )
    assert user_traits({"plan": "a", "$set": {"plan": "b"}}) == {"plan": "b"}


def test_revenue_fields_join_the_properties() -> None:
    e = ok(
        {
            "event_type": "revenue_amount",
            "user_id": "u",
            "price": 9.99,
            "quantity": 2,
            "productId": "sku",
            "revenueType": "purchase",
            "event_properties": {"$price": 9.99, "quantity": 3},
        }
    )
    props = js(e.properties)
    assert props == {
        "price": 9.99,
        "quantity": 3,  # the event's own property wins
        "productId": "sku",
        "revenueType": "purchase",
        "$price": 9.99,
    }


def test_group_identify() -> None:
    e = ok(
        {
            "event_type": "$groupidentify",
            "user_id": "u",
            "groups": {"company": "acme"},
            "group_properties": {"$set": {"seats": 12}},
        }
    )
    assert (e.type, e.group_id, js(e.traits)) == ("group", "acme", {"seats": 12})
    listed = ok({"event_type": "$groupidentify", "user_id": "u", "groups": {"team": ["t1", "t2"]}})
    assert listed.group_id == "t1"


@pytest.mark.parametrize(
    ("payload", "code", "words"),
    [
        ({"user_id": "u"}, "missing_field", "event_type is missing"),
        ({"event_type": "x"}, "missing_field", "user_id or device_id"),
        ({"event_type": "$groupidentify", "user_id": "u"}, "missing_field", "groups"),
        ({"event_type": "x", "user_id": "u", "time": "later"}, "invalid_timestamp", "later"),
        (
            {"event_type": "x", "user_id": "u", "event_properties": [1]},
            "wrong_type",
            "event_properties",
        ),
        ({"event_type": "x", "user_id": ["u"]}, "wrong_type", "user_id"),
        ({"event_type": 1, "user_id": "u"}, "wrong_type", "event_type"),
        ("text", "not_an_object", "string"),
    ],
)
def test_unmappable_events_say_why_and_name_amplitude(payload: Any, code: str, words: str) -> None:
    result = adapt(payload)
    assert result.error is not None
    assert result.error.code == code
    assert result.error.message.startswith("Amplitude event: ")
    assert words in result.error.message


def test_peek_and_endpoint_adapter() -> None:
    item = msgspec.json.encode({"event_type": "$identify", "insert_id": "i", "device_id": "d"})
    assert peek(item) == ("identify", "i", "d")
    assert VENDOR_PEEKS["amplitude"] is peek
    raw = RawEvent(payload=msgspec.Raw(item), source="amplitude")
    result = EndpointAdapter().adapt(raw)
    assert result.event is not None
    assert result.event.type == "identify"


def test_device_and_user_ids_reach_identity_resolution() -> None:
    from eventkit_storage.identity import EventIds, extract

    e = ok({"event_type": "x", "user_id": "user-1", "device_id": "dev-1"})
    ids = EventIds(e.message_id, e.type, e.timestamp, e.user_id, e.anonymous_id)
    assert {edge[:5] for edge in extract(ids).edges} == {
        ("anonymous_id", "dev-1", "user_id", "user-1", "same_event")
    }
