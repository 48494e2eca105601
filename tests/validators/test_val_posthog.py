"""PostHogAdapter: the mapping table of eventkit_validators.posthog, identities, errors."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec
import pytest
from eventkit_core import AdaptResult, RawEvent, TypedEvent
from eventkit_validators import (
    VENDOR_PEEKS,
    EndpointAdapter,
    PostHogAdapter,
    RequiredFieldsValidator,
    RuleSet,
)
from eventkit_validators.posthog import peek

ADAPTER = PostHogAdapter()
T = datetime(2024, 5, 6, 7, 8, 9, tzinfo=UTC)


def adapt(payload: Any, **kwargs: Any) -> AdaptResult:
    """Adapt as msgspec.Raw (the collector's form) and as a dict (a replay's): both agree."""
    raw = RawEvent(payload=msgspec.Raw(msgspec.json.encode(payload)), source="posthog", **kwargs)
    result = ADAPTER.adapt(raw)
    if isinstance(payload, dict):
        again = ADAPTER.adapt(msgspec.structs.replace(raw, payload=payload))
        assert again.error == result.error
    return result


def ok(payload: Any, **kwargs: Any) -> TypedEvent:
    result = adapt(payload, **kwargs)
    assert result.error is None, result.error
    assert result.event is not None
    return result.event


def js(value: msgspec.Raw | None) -> Any:
    return None if value is None else json.loads(bytes(value))


def test_track_with_every_mapped_field() -> None:
    e = ok(
        {
            "event": "Order Completed",
            "distinct_id": "user-1",
            "uuid": "u-1",
            "timestamp": "2024-05-06T07:08:09Z",
            "properties": {"total": 42.5, "$lib": "posthog-python", "$lib_version": "7.91.1"},
        }
    )
    assert (e.type, e.event, e.message_id, e.user_id, e.anonymous_id) == (
        "track",
        "Order Completed",
        "u-1",
        "user-1",
        None,
    )
    assert e.original_timestamp == T
    assert e.timestamp == T
    assert js(e.properties)["total"] == 42.5
    assert js(e.context) == {"library": {"name": "posthog-python", "version": "7.91.1"}}
    assert js(e.payload)["uuid"] == "u-1"


@pytest.mark.parametrize(
    ("name", "call"),
    [
        ("$identify", "identify"),
        ("$set", "identify"),
        ("$set_once", "identify"),
        ("$pageview", "page"),
        ("$screen", "screen"),
        ("$autocapture", "track"),
        ("anything", "track"),
    ],
)
def test_event_names_pick_the_call(name: str, call: str) -> None:
    assert ok({"event": name, "distinct_id": "u"}).type == call
    assert peek(msgspec.json.encode({"event": name}))[0] == call


def test_identify_from_posthog_js() -> None:
    e = ok(
        {
            "event": "$identify",
            "uuid": "u-2",
            "properties": {
                "distinct_id": "user-1",
                "$anon_distinct_id": "dev-1",
                "$device_id": "dev-1",
            },
            "$set": {"plan": "pro", "a": 1},
            "$set_once": {"a": 0, "first_seen": "2024"},
        }
    )
    assert (e.type, e.user_id, e.anonymous_id) == ("identify", "user-1", "dev-1")
    assert js(e.traits) == {"plan": "pro", "a": 1, "first_seen": "2024"}  # $set wins


def test_set_in_properties_become_traits_of_any_call() -> None:
    e = ok({"event": "signup", "distinct_id": "u", "properties": {"$set": {"source": "ad"}}})
    assert (e.type, js(e.traits)) == ("track", {"source": "ad"})


@pytest.mark.parametrize(
    ("properties", "user_id", "anonymous_id"),
    [
        ({"$device_id": "d"}, None, "d"),  # distinct_id is the device id: not identified yet
        ({"$device_id": "other"}, "d", "other"),
        ({"$user_state": "anonymous"}, None, "d"),
        ({"$user_state": "identified", "$device_id": "dev"}, "d", "dev"),
        ({"$process_person_profile": False}, None, "d"),  # personless (Python client)
        ({}, "d", None),
    ],
)
def test_distinct_id_follows_posthogs_rules(
    properties: dict[str, Any], user_id: str | None, anonymous_id: str | None
) -> None:
    e = ok({"event": "x", "distinct_id": "d", "properties": properties})
    assert (e.user_id, e.anonymous_id) == (user_id, anonymous_id)


def test_page_screen_alias_group() -> None:
    page = ok({"event": "$pageview", "distinct_id": "u", "properties": {"title": "Home"}})
    assert (page.type, page.name) == ("page", "Home")
    screen = ok({"event": "$screen", "distinct_id": "u", "properties": {"$screen_name": "S"}})
    assert (screen.type, screen.name) == ("screen", "S")
    alias = ok({"event": "$create_alias", "distinct_id": "old", "properties": {"alias": "new"}})
    assert (alias.type, alias.user_id, alias.previous_id) == ("alias", "new", "old")
    group = ok(
        {
            "event": "$groupidentify",
            "distinct_id": "u",
            "properties": {"$group_type": "company", "$group_key": "acme", "$group_set": {"n": 1}},
        }
    )
    assert (group.type, group.group_id, js(group.traits)) == ("group", "acme", {"n": 1})


def test_batch_sent_at_corrects_the_clock() -> None:
    received = T + timedelta(hours=1)
    e = ok(
        {"event": "x", "distinct_id": "u", "timestamp": "2024-05-06T07:08:09Z"},
        received_at=received,
        batch_sent_at="2024-05-06T07:08:19Z",  # sent 10 s after the event, by the client's clock
    )
    assert e.timestamp == received - timedelta(seconds=10)
    assert e.sent_at == T + timedelta(seconds=10)


@pytest.mark.parametrize(
    ("payload", "code", "words"),
    [
        ({"distinct_id": "u"}, "missing_field", "event is missing"),
        ({"event": "x"}, "missing_field", "distinct_id is required"),
        ({"event": "$create_alias", "distinct_id": "u"}, "missing_field", "properties.alias"),
        ({"event": "$groupidentify", "distinct_id": "u"}, "missing_field", "$group_key"),
        ({"event": "x", "distinct_id": "u", "properties": [1]}, "wrong_type", "properties"),
        ({"event": "x", "distinct_id": {"a": 1}}, "wrong_type", "distinct_id"),
        ({"event": 5, "distinct_id": "u"}, "wrong_type", "event"),
        ({"event": "x", "distinct_id": "u", "timestamp": "soon"}, "invalid_timestamp", "soon"),
        ({"event": "x", "distinct_id": "u", "$set": "a"}, "wrong_type", "$set"),
        (5, "not_an_object", "integer"),
        ({"event": "x", "distinct_id": "u", "uuid": "x" * 101}, "invalid_message_id", "101"),
    ],
)
def test_unmappable_events_say_why_and_name_posthog(payload: Any, code: str, words: str) -> None:
    result = adapt(payload)
    assert result.error is not None
    assert result.error.code == code
    assert result.error.message.startswith("PostHog event: ")
    assert words in result.error.message


def test_peek_reads_type_id_and_key() -> None:
    item = {"event": "$pageview", "uuid": "u-1", "properties": {"distinct_id": 7}}
    assert peek(msgspec.json.encode(item)) == ("page", "u-1", "7")
    assert peek(b"[1]") == (None, None, None)
    assert VENDOR_PEEKS["posthog"] is peek


def test_endpoint_adapter_routes_posthog_and_applies_rules() -> None:
    rules = RuleSet(streams={"events": [RequiredFieldsValidator(["properties.total"])]})
    adapter = EndpointAdapter(rules=rules)
    raw = RawEvent(
        payload=msgspec.Raw(b'{"event":"x","distinct_id":"u"}'), source="posthog", stream="events"
    )
    result = adapter.adapt(raw)
    assert result.error is not None
    assert result.error.code == "rule_failed"
    good = msgspec.structs.replace(
        raw, payload={"event": "x", "distinct_id": "u", "properties": {"total": 1}}
    )
    assert adapter.adapt(good).ok


def test_identities_reach_identity_resolution() -> None:
    """$anon_distinct_id / $device_id become edges through the identity pass's one function."""
    from eventkit_storage.identity import EventIds, extract

    def edges(e: TypedEvent) -> set[tuple[str, str, str, str, str]]:
        ids = EventIds(e.message_id, e.type, e.timestamp, e.user_id, e.anonymous_id, e.previous_id)
        return {edge[:5] for edge in extract(ids).edges}

    identify = ok(
        {"event": "$identify", "distinct_id": "user-1", "properties": {"$anon_distinct_id": "dev"}}
    )
    assert edges(identify) == {("anonymous_id", "dev", "user_id", "user-1", "same_event")}
    alias = ok({"event": "$create_alias", "distinct_id": "user-1", "properties": {"alias": "a-1"}})
    assert edges(alias) == {("user_id", "a-1", "user_id", "user-1", "alias")}


def test_a_dead_letter_replays_through_the_posthog_adapter() -> None:
    """The loader's replay adapts dead letters with EndpointAdapter, by their stored source."""
    from eventkit_core import DeadLetter

    raw = RawEvent(
        payload=msgspec.Raw(b'{"event":"x","distinct_id":"u","uuid":"dl-1"}'),
        source="posthog",
        stream="events",
    )
    rules = RuleSet(streams={"events": [RequiredFieldsValidator(["properties.plan"])]})
    failed = EndpointAdapter(rules=rules).adapt(raw)
    assert failed.error is not None
    letter = DeadLetter.from_raw(raw, failed.error)
    replayed = EndpointAdapter().adapt(letter.to_raw())  # the rule was relaxed
    assert replayed.event is not None
    assert (replayed.event.type, replayed.event.message_id, replayed.event.user_id) == (
        "track",
        "dl-1",
        "u",
    )
