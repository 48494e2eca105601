"""SegmentSchemaAdapter: Segment spec examples, skew correction, error codes, request context."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import msgspec
import pytest
from eventkit_core import (
    AdaptResult,
    AliasEvent,
    GroupEvent,
    IdentifyEvent,
    PageEvent,
    RawEvent,
    SchemaAdapter,
    ScreenEvent,
    TrackEvent,
    TypedEvent,
)
from eventkit_validators import SegmentSchemaAdapter

ADAPTER = SegmentSchemaAdapter()
UA = "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_12_5) AppleWebKit/537.36 (KHTML, like Gecko)"


def ts(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def adapt(payload: Any, *, as_raw: bool = True, **kwargs: Any) -> AdaptResult:
    """Adapt both as msgspec.Raw (the hot path) and as a dict; both must agree."""
    raw = RawEvent(payload=msgspec.Raw(msgspec.json.encode(payload)), **kwargs)
    raw_result = ADAPTER.adapt(raw)
    if isinstance(payload, dict):
        dict_result = ADAPTER.adapt(msgspec.structs.replace(raw, payload=payload))
        assert (dict_result.error is None) == (raw_result.error is None)
        if raw_result.error is not None:
            assert dict_result.error == raw_result.error
        else:
            assert dict_result.event is not None
            assert raw_result.event is not None
            from_dict, from_raw = dict_result.event.to_dict(), raw_result.event.to_dict()
            if not payload.get("messageId") and raw.message_id is None:  # generated: differ
                del from_dict["message_id"], from_raw["message_id"]
            assert from_dict == from_raw
    return raw_result


def ok(payload: Any, **kwargs: Any) -> TypedEvent:
    result = adapt(payload, **kwargs)
    assert result.ok, result.error
    assert result.event is not None
    return result.event


def err(payload: Any, **kwargs: Any) -> tuple[str, str]:
    result = adapt(payload, **kwargs)
    assert not result.ok
    assert result.event is None
    assert result.error is not None
    return result.error.code, result.error.message


def test_is_a_schema_adapter() -> None:
    assert isinstance(ADAPTER, SchemaAdapter)


def test_seed_example() -> None:
    adapter = SegmentSchemaAdapter()
    raw = RawEvent(payload={"type": "identify", "userId": "123"})
    result = adapter.adapt(raw)
    assert result.ok
    assert isinstance(result.event, IdentifyEvent)
    assert result.event.user_id == "123"
    # no time sent: timestamp is received_at; messageId generated (uuid4)
    assert result.event.timestamp == raw.received_at
    assert len(result.event.message_id) == 36


# --- Segment spec examples (segment.com/docs/connections/spec/*) ----------------------------

IDENTIFY = {
    "anonymousId": "507f191e810c19729de860ea",
    "channel": "browser",
    "context": {"ip": "8.8.8.8", "userAgent": UA},
    "integrations": {"All": False, "Mixpanel": True, "Salesforce": True},
    "messageId": "022bb90c-bbac-11e4-8dfc-aa07a5b093db",
    "receivedAt": "2015-02-23T22:28:55.387Z",
    "sentAt": "2015-02-23T22:28:55.111Z",
    "timestamp": "2015-02-23T22:28:55.111Z",
    "traits": {
        "name": "Peter Gibbons",
        "email": "peter@example.com",
        "plan": "premium",
        "logins": 5,
        "address": {"street": "6th St", "city": "San Francisco", "state": "CA"},
    },
    "type": "identify",
    "userId": "97980cfea0067",
    "version": "1.1",
}


def test_identify_spec_example() -> None:
    received = ts("2015-02-23T22:28:55.387Z")
    event = ok(IDENTIFY, stream="users", received_at=received, ip="1.1.1.1", user_agent="x")
    assert isinstance(event, IdentifyEvent)
    assert event.type == "identify"
    assert event.stream == "users"
    assert event.message_id == "022bb90c-bbac-11e4-8dfc-aa07a5b093db"
    assert event.user_id == "97980cfea0067"
    assert event.anonymous_id == "507f191e810c19729de860ea"
    # sentAt == timestamp: no time passed on the device, so timestamp = received_at
    assert event.original_timestamp == ts("2015-02-23T22:28:55.111Z")
    assert event.sent_at == ts("2015-02-23T22:28:55.111Z")
    assert event.timestamp == received
    assert event.received_at == received
    d = event.to_dict()
    assert d["traits"] == IDENTIFY["traits"]
    assert d["integrations"] == IDENTIFY["integrations"]
    # the event's own ip / userAgent win over the request's
    assert d["context"] == {"ip": "8.8.8.8", "userAgent": UA}
    assert d["payload"] == IDENTIFY
    assert d["properties"] is None


TRACK = {
    "anonymousId": "23adfd82-aa0f-45a7-a756-24f2a7a4c895",
    "context": {
        "library": {"name": "analytics.js", "version": "2.11.1"},
        "page": {
            "path": "/academy/",
            "referrer": "",
            "search": "",
            "title": "Analytics Academy",
            "url": "https://segment.com/academy/",
        },
        "userAgent": UA,
        "ip": "108.0.78.21",
    },
    "event": "Course Clicked",
    "integrations": {},
    "messageId": "ajs-f8ca1e4de5024d9430b3928bd8ac6b96",
    "properties": {"title": "Intro to Analytics"},
    "receivedAt": "2015-12-12T19:11:01.266Z",
    "sentAt": "2015-12-12T19:11:01.169Z",
    "timestamp": "2015-12-12T19:11:01.249Z",
    "type": "track",
    "userId": "AiUGstSDIg",
    "originalTimestamp": "2015-12-12T19:11:01.152Z",
}


def test_track_spec_example_skew_correction() -> None:
    event = ok(TRACK, stream="events", received_at=ts("2015-12-12T19:11:01.266Z"))
    assert isinstance(event, TrackEvent)
    assert event.event == "Course Clicked"
    # originalTimestamp wins over timestamp; 01.266 - (01.169 - 01.152) = 01.249, as in the spec
    assert event.original_timestamp == ts("2015-12-12T19:11:01.152Z")
    assert event.timestamp == ts("2015-12-12T19:11:01.249Z")
    assert event.to_dict()["properties"] == {"title": "Intro to Analytics"}
    assert event.to_dict()["integrations"] == {}


def test_page_spec_example_without_sent_at() -> None:
    page = {
        "anonymousId": "507f191e810c19729de860ea",
        "channel": "browser",
        "context": {"ip": "8.8.8.8", "userAgent": UA},
        "integrations": {"All": True, "Mixpanel": False, "Salesforce": False},
        "messageId": "022bb90c-bbac-11e4-8dfc-aa07a5b093db",
        "name": "Home",
        "properties": {"title": "Welcome | Initech", "url": "http://www.example.com"},
        "timestamp": "2015-02-23T22:28:55.111Z",
        "type": "page",
        "userId": "97980cfea0067",
        "version": "1.1",
    }
    event = ok(page, stream="pages", received_at=ts("2015-02-23T22:30:00Z"))
    assert isinstance(event, PageEvent)
    assert event.name == "Home"
    # no sentAt: the client's time as it is
    assert event.timestamp == ts("2015-02-23T22:28:55.111Z")
    assert event.sent_at is None


def test_screen_spec_example_with_offset_times() -> None:
    screen = {
        "anonymousId": "3a12eab0-bca7-11e4-8dfc-aa07a5b093db",
        "channel": "mobile",
        "context": {"ip": "8.8.8.8"},
        "messageId": "022bb90c-bbac-11e4-8dfc-aa07a5b093db",
        "name": "Home",
        "properties": {"Feed Type": "private"},
        # device clock runs one hour ahead (+01:00 with the same wall time as UTC)
        "timestamp": "2015-02-23T23:28:55.111+01:00",
        "sentAt": "2015-02-23T23:28:57.111+01:00",
        "type": "screen",
        "userId": "97980cfea0067",
    }
    event = ok(screen, received_at=ts("2015-02-23T22:29:00.000Z"))
    assert isinstance(event, ScreenEvent)
    # 22:29:00.000 - (22:28:57.111 - 22:28:55.111) = 22:28:58.000
    assert event.timestamp == ts("2015-02-23T22:28:58.000Z")
    assert event.original_timestamp == ts("2015-02-23T22:28:55.111Z")
    assert event.original_timestamp is not None
    assert event.original_timestamp.tzinfo is UTC


def test_group_spec_example() -> None:
    group = {
        "anonymousId": "507f191e810c19729de860ea",
        "channel": "browser",
        "context": {"ip": "8.8.8.8", "userAgent": UA},
        "groupId": "0e8c78ea9d97a7b8185e8632",
        "messageId": "022bb90c-bbac-11e4-8dfc-aa07a5b093db",
        "timestamp": "2015-02-23T22:28:55.111Z",
        "traits": {
            "name": "Initech",
            "industry": "Technology",
            "employees": 329,
            "plan": "enterprise",
            "total billed": 830,
        },
        "type": "group",
        "userId": "97980cfea0067",
    }
    event = ok(group, stream="groups")
    assert isinstance(event, GroupEvent)
    assert event.group_id == "0e8c78ea9d97a7b8185e8632"
    assert event.to_dict()["traits"]["employees"] == 329


def test_alias_spec_example() -> None:
    alias = {
        "anonymousId": "507f191e810c19729de860ea",
        "channel": "browser",
        "context": {"ip": "8.8.8.8", "userAgent": UA},
        "messageId": "022bb90c-bbac-11e4-8dfc-aa07a5b093db",
        "previousId": "39239-239239-239239-23923",
        "timestamp": "2015-02-23T22:28:55.111Z",
        "type": "alias",
        "userId": "507f191e81",
    }
    event = ok(alias, stream="aliases")
    assert isinstance(event, AliasEvent)
    assert event.previous_id == "39239-239239-239239-23923"
    assert event.user_id == "507f191e81"


def test_batch_items_with_batch_context_and_sent_at() -> None:
    # The HTTP API's /v1/batch example; the collector splits it into one RawEvent per item.
    body: dict[str, Any] = {
        "batch": [
            {
                "type": "identify",
                "userId": "019mr8mf4r",
                "traits": {"email": "jake@yahoo.com", "name": "Jake Peterson", "age": 26},
                "timestamp": "2012-12-02T00:30:12.984Z",
            },
            {
                "type": "track",
                "userId": "019mr8mf4r",
                "event": "Song Played",
                "properties": {"name": "Fallin for You", "artist": "Dierks Bentley"},
                "context": {"device": {"type": "tablet"}, "locale": "en-US"},
                "timestamp": "2012-12-02T00:30:08.276Z",
            },
        ],
        "context": {"device": {"type": "phone", "name": "Apple iPhone 6"}, "app": {"build": "3"}},
        "integrations": {"All": True},
        "sentAt": "2012-12-02T00:30:14.000Z",
    }
    received = ts("2012-12-02T00:30:15.500Z")
    batch = msgspec.json.decode(msgspec.json.encode(body), type=dict[str, Any])
    for batch_context in (batch["context"], msgspec.Raw(msgspec.json.encode(batch["context"]))):
        raws = [
            RawEvent(
                payload=msgspec.Raw(msgspec.json.encode(item)),
                received_at=received,
                source="batch",
                ip="203.0.113.9",
                batch_context=batch_context,
                batch_integrations=batch["integrations"],
                batch_sent_at=batch["sentAt"],
            )
            for item in batch["batch"]
        ]
        identify, track = ADAPTER.adapt_many(raws)
        assert identify.event is not None
        assert track.event is not None
        assert isinstance(identify.event, IdentifyEvent)
        assert isinstance(track.event, TrackEvent)
        # 15.500 - (14.000 - 12.984) = 14.484 ; 15.500 - (14.000 - 08.276) = 09.776
        assert identify.event.timestamp == ts("2012-12-02T00:30:14.484Z")
        assert track.event.timestamp == ts("2012-12-02T00:30:09.776Z")
        assert identify.event.sent_at == ts("2012-12-02T00:30:14.000Z")
        assert identify.event.to_dict()["context"] == {
            "ip": "203.0.113.9",
            "device": {"type": "phone", "name": "Apple iPhone 6"},
            "app": {"build": "3"},
        }
        # shallow merge: the item's keys win
        assert track.event.to_dict()["context"] == {
            "ip": "203.0.113.9",
            "device": {"type": "tablet"},
            "app": {"build": "3"},
            "locale": "en-US",
        }
        assert track.event.to_dict()["integrations"] == {"All": True}
        # payload stays the item as sent
        assert track.event.to_dict()["payload"] == body["batch"][1]


def test_item_sent_at_wins_over_batch_sent_at() -> None:
    event = ok(
        {"type": "track", "userId": "u", "event": "e", "timestamp": 100, "sentAt": 110},
        received_at=ts("2024-01-01T00:00:00Z"),
        batch_sent_at="2030-01-01T00:00:00Z",
    )
    assert event.timestamp == ts("2024-01-01T00:00:00Z") - timedelta(seconds=10)


def test_invalid_batch_sent_at() -> None:
    code, message = err({"type": "track", "userId": "u", "event": "e"}, batch_sent_at="soon")
    assert code == "invalid_timestamp"
    assert "batch sentAt" in message


# --- ids ----------------------------------------------------------------------------------


def test_explicit_null_ids_are_absent() -> None:
    event = ok({"type": "identify", "userId": None, "anonymousId": "a1"})
    assert event.user_id is None
    assert event.anonymous_id == "a1"
    code, message = err({"type": "identify", "userId": None, "anonymousId": None})
    assert code == "missing_field"
    assert message == "userId is required: send userId or anonymousId"


def test_empty_ids_are_absent() -> None:
    assert err({"type": "identify", "userId": "", "anonymousId": ""})[0] == "missing_field"


def test_numeric_ids_are_stringified() -> None:
    event = ok({"type": "group", "userId": 42, "anonymousId": 7.5, "groupId": 9})
    assert (event.user_id, event.anonymous_id, event.group_id) == ("42", "7.5", "9")


@pytest.mark.parametrize("bad", [True, {"id": 1}, [1]])
def test_non_scalar_ids_are_wrong_type(bad: Any) -> None:
    code, message = err({"type": "identify", "userId": bad})
    assert code == "wrong_type"
    assert "userId must be a string or a number" in message


# --- required fields per call -------------------------------------------------------------


@pytest.mark.parametrize(
    ("payload", "code", "needle"),
    [
        ({"type": "track", "userId": "u"}, "missing_field", "event is required for track"),
        ({"type": "track", "userId": "u", "event": ""}, "missing_field", "event is required"),
        ({"type": "track", "userId": "u", "event": 5}, "wrong_type", "event must be a string"),
        ({"type": "group", "userId": "u"}, "missing_field", "groupId is required"),
        ({"type": "alias", "userId": "u"}, "missing_field", "previousId is required"),
        (
            {"type": "alias", "anonymousId": "a", "previousId": "p"},
            "missing_field",
            "userId is required for alias",
        ),
        ({"userId": "u"}, "invalid_type", "type is missing"),
        ({"type": "batch", "userId": "u"}, "invalid_type", "is not a Segment call"),
        ({"type": "Track", "userId": "u"}, "invalid_type", "is not a Segment call"),
        ({"type": 1, "userId": "u"}, "invalid_type", "type must be a string"),
        ({"type": "page", "userId": "u", "name": 1}, "wrong_type", "name must be a string"),
    ],
)
def test_call_rules(payload: dict[str, Any], code: str, needle: str) -> None:
    got_code, message = err(payload)
    assert got_code == code
    assert needle in message


def test_endpoint_supplies_missing_type_and_rejects_a_conflicting_one() -> None:
    event = ok({"userId": "u", "event": "Signed Up"}, source="track")
    assert isinstance(event, TrackEvent)
    code, message = err({"type": "identify", "userId": "u"}, source="track")
    assert code == "invalid_type"
    assert "/v1/identify" in message


@pytest.mark.parametrize("field", ["properties", "traits", "context", "integrations"])
@pytest.mark.parametrize("value", [[1], "x", 3, True])
def test_nested_maps_must_be_objects(field: str, value: Any) -> None:
    code, message = err({"type": "page", "userId": "u", field: value})
    assert code == "wrong_type"
    assert f"{field} must be a JSON object" in message


def test_null_nested_maps_are_absent() -> None:
    event = ok({"type": "page", "userId": "u", "properties": None, "traits": None})
    assert event.properties is None
    assert event.traits is None


# --- shape and size -----------------------------------------------------------------------


@pytest.mark.parametrize("payload", [1, "x", [{"type": "track"}], None, True, 1.5])
def test_not_an_object(payload: Any) -> None:
    assert err(payload)[0] == "not_an_object"


@pytest.mark.parametrize("data", [b"{", b"", b"\xff", b'{"a":NaN}', b"[" * 5000 + b"]" * 5000])
def test_invalid_json_bytes(data: bytes) -> None:
    result = ADAPTER.adapt(RawEvent(payload=msgspec.Raw(data)))
    assert result.error is not None
    assert result.error.code in {"invalid_json", "not_an_object"}


def test_deep_nesting_in_a_raw_payload_is_invalid_json() -> None:
    data = b'{"type":"track","properties":' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    result = SegmentSchemaAdapter(max_event_bytes=10**6).adapt(RawEvent(payload=msgspec.Raw(data)))
    assert result.error is not None
    assert result.error.code == "invalid_json"


def test_unencodable_python_payload() -> None:
    result = ADAPTER.adapt(RawEvent(payload={"type": "track", "x": object()}))
    assert result.error is not None
    assert result.error.code == "invalid_json"


def test_event_too_large() -> None:
    base = {"type": "track", "userId": "u", "event": "e", "properties": {"blob": ""}}
    overhead = len(msgspec.json.encode(base))
    fits = {**base, "properties": {"blob": "x" * (32768 - overhead)}}
    too_big = {**base, "properties": {"blob": "x" * (32769 - overhead)}}
    assert len(msgspec.json.encode(fits)) == 32768
    ok(fits)
    code, message = err(too_big)
    assert code == "event_too_large"
    assert "32769 bytes" in message
    assert "at most 32768" in message
    small = SegmentSchemaAdapter(max_event_bytes=100)
    assert small.adapt(RawEvent(payload=fits)).error is not None


def test_message_id_limits_and_fallbacks() -> None:
    assert ok({"type": "identify", "userId": "u", "messageId": "m" * 100}).message_id == "m" * 100
    code, message = err({"type": "identify", "userId": "u", "messageId": "m" * 101})
    assert code == "invalid_message_id"
    assert "101 characters" in message
    assert ok({"type": "identify", "userId": "u", "messageId": 12}).message_id == "12"
    # the producer's stable id is used when the payload has none
    event = ok({"type": "identify", "userId": "u"}, message_id="stable-1")
    assert event.message_id == "stable-1"
    event = ok({"type": "identify", "userId": "u", "messageId": None}, message_id="stable-2")
    assert event.message_id == "stable-2"
    a = ok({"type": "identify", "userId": "u"}).message_id
    b = ok({"type": "identify", "userId": "u"}).message_id
    assert a != b


def test_bad_limits_are_configuration_errors() -> None:
    from eventkit_core import ConfigurationError

    with pytest.raises(ConfigurationError):
        SegmentSchemaAdapter(max_event_bytes=0)
    with pytest.raises(ConfigurationError):
        SegmentSchemaAdapter(max_message_id_length=True)


# --- timestamps ---------------------------------------------------------------------------


@pytest.mark.parametrize("field", ["timestamp", "originalTimestamp", "sentAt"])
@pytest.mark.parametrize("value", ["yesterday", "", True, {"t": 1}, "2024-13-01T00:00:00Z"])
def test_invalid_timestamps(field: str, value: Any) -> None:
    code, message = err({"type": "identify", "userId": "u", field: value})
    assert code == "invalid_timestamp"
    assert message.startswith(field)


def test_unix_timestamps_seconds_and_milliseconds() -> None:
    received = ts("2024-01-01T00:01:00Z")
    event = ok(
        {"type": "identify", "userId": "u", "timestamp": 1704067200, "sentAt": 1704067230000},
        received_at=received,
    )
    assert event.original_timestamp == ts("2024-01-01T00:00:00Z")
    assert event.timestamp == ts("2024-01-01T00:00:30Z")


def test_naive_iso_is_utc() -> None:
    event = ok({"type": "identify", "userId": "u", "timestamp": "2024-01-01T00:00:00"})
    assert event.timestamp == ts("2024-01-01T00:00:00Z")


def test_stream_and_source_id_are_kept() -> None:
    event = ok({"type": "track", "userId": "u", "event": "e"}, stream="custom-1", source_id=77)
    assert event.stream == "custom-1"
    assert event.source_id == 77


# --- request context ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("context", "ip", "ua", "expected"),
    [
        (None, "1.2.3.4", "UA", {"ip": "1.2.3.4", "userAgent": "UA"}),
        (None, None, None, None),
        ({}, "1.2.3.4", None, {"ip": "1.2.3.4"}),
        ({"a": 1}, None, "UA", {"userAgent": "UA", "a": 1}),
        ({"ip": "9.9.9.9"}, "1.2.3.4", "UA", {"ip": "9.9.9.9", "userAgent": "UA"}),
        (
            {"ip": None, "userAgent": "mine"},
            "1.2.3.4",
            "UA",
            {"ip": "1.2.3.4", "userAgent": "mine"},
        ),
        ({"userAgent": None}, None, "UA", {"userAgent": "UA"}),
        ({"page": {"ip": "nested"}}, "1.2.3.4", None, {"ip": "1.2.3.4", "page": {"ip": "nested"}}),
        ({"\u0069p": "escaped"}, "1.2.3.4", None, {"ip": "escaped"}),
        ({"userAgent": 'q"\\\u2603'}, "::1", 'a"b\\c', {"ip": "::1", "userAgent": 'q"\\\u2603'}),
    ],
)
def test_request_context_fill(
    context: dict[str, Any] | None, ip: str | None, ua: str | None, expected: Any
) -> None:
    payload: dict[str, Any] = {"type": "identify", "userId": "u"}
    if context is not None:
        payload["context"] = context
    event = ok(payload, ip=ip, user_agent=ua)
    assert event.to_dict()["context"] == expected


def test_request_context_fill_with_whitespace_in_raw() -> None:
    for body in (
        b'{"type":"identify","userId":"u","context": {  }}',
        b'{"type":"identify","userId":"u","context":{ "a" : 1 }}',
    ):
        result = ADAPTER.adapt(RawEvent(payload=msgspec.Raw(body), ip="1.2.3.4"))
        assert result.event is not None
        context = result.event.to_dict()["context"]
        assert context["ip"] == "1.2.3.4"


def test_escaped_key_in_raw_context_is_not_duplicated() -> None:
    body = b'{"type":"identify","userId":"u","context":{"\\u0069p":"mine"}}'
    result = ADAPTER.adapt(RawEvent(payload=msgspec.Raw(body), ip="1.2.3.4"))
    assert result.event is not None
    assert result.event.context is not None
    assert bytes(result.event.context) == b'{"\\u0069p":"mine"}'


def test_adapt_many_matches_adapt() -> None:
    raws = [
        RawEvent(payload={"type": "track", "userId": "u", "event": "e", "messageId": "m1"}),
        RawEvent(payload=[1]),
        RawEvent(payload={"type": "identify", "userId": "u", "messageId": "m2"}),
    ]
    many = ADAPTER.adapt_many(raws)
    single = [ADAPTER.adapt(raw) for raw in raws]
    assert [r.error for r in many] == [r.error for r in single]
    assert [r.event for r in many] == [r.event for r in single]


# --- fast-path edges (the hot path builds events with at most 15 keywords, then sets the rest) --


@pytest.mark.parametrize("kind", ["identify", "track", "page", "screen", "group", "alias"])
def test_rare_fields_are_kept_on_every_call(kind: str) -> None:
    payload = {
        "type": kind,
        "userId": "u",
        "event": "e",
        "name": "n",
        "category": "c",
        "groupId": "g",
        "previousId": "p",
    }
    event = ok(payload)
    assert (event.event, event.name, event.category) == ("e", "n", "c")
    assert (event.group_id, event.previous_id) == ("g", "p")
    assert (event.user_id, event.anonymous_id) == ("u", None)


def test_null_and_absent_rare_fields_stay_none() -> None:
    event = ok({"type": "page", "userId": "u", "name": None, "category": None, "groupId": None})
    assert (event.name, event.category, event.group_id, event.previous_id) == (None,) * 4


def test_strict_decode_failures_fall_back_with_the_same_result() -> None:
    # Each of these fails the strict decode (number ids and times, naive ISO, raw bytes with a
    # wrong-typed field) and is normalised or rejected by the lenient decode.
    received = ts("2024-03-01T12:00:00Z")
    event = ok(
        {
            "type": "track",
            "userId": 42,
            "event": "e",
            "timestamp": 1709294390000,
            "sentAt": "2024-03-01T11:59:55",
        },
        received_at=received,
    )
    assert event.user_id == "42"
    assert event.original_timestamp == ts("2024-03-01T11:59:50Z")
    assert event.sent_at == ts("2024-03-01T11:59:55Z")
    assert event.timestamp == received - timedelta(seconds=5)
    code, _ = err({"type": "track", "userId": "u", "event": 1})
    assert code == "wrong_type"


def test_received_at_time_zone_is_kept_by_skew_correction() -> None:
    received = datetime(2024, 3, 1, 14, 0, tzinfo=timezone(timedelta(hours=2)))
    event = ok(
        {
            "type": "track",
            "userId": "u",
            "event": "e",
            "timestamp": "2024-03-01T11:59:50Z",
            "sentAt": "2024-03-01T11:59:55Z",
        },
        received_at=received,
    )
    assert event.timestamp == received - timedelta(seconds=5)
    assert event.timestamp.utcoffset() == timedelta(hours=2)


def test_timestamp_overflow_keeps_the_original_time() -> None:
    event = ok(
        {
            "type": "track",
            "userId": "u",
            "event": "e",
            "timestamp": "0001-01-01T00:00:01Z",
            "sentAt": "9999-12-31T00:00:00Z",
        },
        received_at=ts("2024-03-01T12:00:00Z"),
    )
    assert event.timestamp == ts("0001-01-01T00:00:01Z")


@pytest.mark.parametrize(
    ("context", "expected"),
    [
        (b"{}", b'{"ip":"1.2.3.4","userAgent":"UA"}'),
        (b"{ }", b'{"ip":"1.2.3.4","userAgent":"UA"}'),
        (b'{"a":{"b":"{"}}', b'{"ip":"1.2.3.4","userAgent":"UA","a":{"b":"{"}}'),
        (b'{"userAgent":"mine"}', b'{"ip":"1.2.3.4","userAgent":"mine"}'),
        (b'{"ip":"9"}', b'{"userAgent":"UA","ip":"9"}'),
        (b'{"ip":"9","userAgent":"mine"}', b'{"ip":"9","userAgent":"mine"}'),
        (b'{"page":{"ip":"x","userAgent":"y"}}', None),
    ],
)
def test_request_context_splice_bytes(context: bytes, expected: bytes | None) -> None:
    body = b'{"type":"identify","userId":"u","context":' + context + b"}"
    for adapter in (ADAPTER, SegmentSchemaAdapter()):
        event = adapter.adapt(
            RawEvent(payload=msgspec.Raw(body), ip="1.2.3.4", user_agent="UA")
        ).event
        assert event is not None
        assert event.context is not None
        if expected is not None:
            assert bytes(event.context) == expected
        assert event.to_dict()["context"] == {
            "ip": "1.2.3.4",
            "userAgent": "UA",
            **msgspec.json.decode(context),
        }


def test_adapt_many_over_a_mixed_batch_matches_adapt() -> None:
    sent_at = "2024-03-01T11:59:55Z"
    payloads: list[Any] = [
        {"type": "track", "userId": "u", "event": "e", "timestamp": "2024-03-01T11:59:50Z"},
        {"type": "track", "userId": "u"},
        {"type": "page", "anonymousId": "a", "name": "Home", "timestamp": 1709294390},
        {"type": "group", "userId": "u", "groupId": 7, "traits": None},
        {"type": "alias", "userId": "u", "previousId": "p", "context": [1]},
        {"type": "identify", "userId": "u", "traits": {"a": 1}, "messageId": "m" * 101},
        "not an object",
    ]
    raws = [
        RawEvent(
            payload=msgspec.Raw(msgspec.json.encode(p)),
            source="batch",
            ip="1.2.3.4",
            user_agent="UA",
            message_id=f"m{i}",
            batch_sent_at=sent_at,
            received_at=ts("2024-03-01T12:00:00Z"),
        )
        for i, p in enumerate(payloads)
    ]
    many = SegmentSchemaAdapter().adapt_many(raws)
    single = [SegmentSchemaAdapter().adapt(raw) for raw in raws]
    assert many == single
    assert [r.ok for r in many] == [True, False, True, True, False, False, False]
    assert [r.error.code for r in many if r.error is not None] == [
        "missing_field",
        "wrong_type",
        "invalid_message_id",
        "not_an_object",
    ]
