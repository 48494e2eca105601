"""Identity resolution without a warehouse: edge extraction, the rules, canonical resolution."""

from __future__ import annotations

import datetime as dt

import msgspec
import pytest
from eventkit_core import IdentifyEvent
from eventkit_storage.identity import (
    EventIds,
    IdentityConfig,
    IdentityError,
    event_ids_from_typed,
    extract,
    parse_identity,
    profile_id_of,
    resolve,
)

T0 = dt.datetime(2024, 5, 1, tzinfo=dt.UTC)


def at(seconds: int) -> dt.datetime:
    return T0 + dt.timedelta(seconds=seconds)


@pytest.mark.parametrize(
    "value",
    ["", " ", "null", "NULL", "undefined", "Anonymous", "unknown", "guest", "None", "nan", "0",
     "-1", "[object Object]", "true", "FALSE", '"null"', "'undefined'", "0000", "---",
     "00000000-0000-0000-0000-000000000000"],
)  # fmt: skip
def test_blocked_values_never_link(value: str) -> None:
    got = extract(EventIds("m1", "identify", T0, user_id="u1", anonymous_id=value))
    assert got.edges == ()
    assert got.ids == (("user_id", "u1"),)
    assert [r.rule for r in got.blocked] == ["blocked_value"]


def test_ordinary_values_are_not_blocked() -> None:
    config = IdentityConfig()
    for value in ("u1", "10", "0x1", "none-of-these", "guest42", "-"):
        assert config.clean("user_id", value) == (None if value == "-" else value)


def test_the_blocked_list_is_configurable() -> None:
    config = IdentityConfig(blocked_values=frozenset({"test-user"}))
    assert config.clean("user_id", "Test-User") is None
    assert config.clean("user_id", "null") == "null"


def test_edges_of_an_identify_with_email_and_external_ids() -> None:
    event = EventIds(
        "m1",
        "identify",
        T0,
        user_id="u1",
        anonymous_id="a1",
        traits='{"email": "  X@Example.COM ", "plan": "pro"}',
        external_ids=[{"id": "c-9", "type": "crm_id"}, {"id": "a1", "type": "anonymousId"}],
    )
    got = extract(event)
    assert got.ids == (
        ("user_id", "u1"),
        ("anonymous_id", "a1"),
        ("email", "x@example.com"),
        ("crm_id", "c-9"),
    )
    assert sorted((e.one, e.two, e.kind) for e in got.edges) == [
        (("anonymous_id", "a1"), ("user_id", "u1"), "same_event"),
        (("crm_id", "c-9"), ("user_id", "u1"), "external_id"),
        (("email", "x@example.com"), ("user_id", "u1"), "trait"),
    ]
    assert got.facts.id_type == "user_id"
    assert got.facts.traits is not None


def test_alias_previous_id_is_an_anonymous_id_only_when_it_is_the_events_own() -> None:
    older_user = extract(EventIds("m1", "alias", T0, user_id="u2", previous_id="u1"))
    assert [(e.one, e.two, e.kind) for e in older_user.edges] == [
        (("user_id", "u1"), ("user_id", "u2"), "alias")
    ]
    from_anon = extract(
        EventIds("m2", "alias", T0, user_id="u2", anonymous_id="a1", previous_id="a1")
    )
    assert [e.kind for e in from_anon.edges] == ["same_event"]  # one edge a1 <-> u2


def test_group_traits_are_not_the_persons() -> None:
    got = extract(EventIds("m1", "group", T0, user_id="u1", traits='{"email": "co@x.com"}'))
    assert got.edges == ()
    assert got.facts.traits is None


def test_typed_events_map_to_event_ids() -> None:
    event = IdentifyEvent(
        message_id="m1",
        stream="users",
        received_at=T0,
        timestamp=T0,
        payload=msgspec.Raw(b"{}"),
        user_id="u1",
        traits=msgspec.Raw(b'{"email":"a@b.c"}'),
        context=msgspec.Raw(b'{"externalIds":[{"id":"7","type":"crm_id"}]}'),
    )
    ids = event_ids_from_typed(event)
    assert extract(ids).ids == (("user_id", "u1"), ("email", "a@b.c"), ("crm_id", "7"))


def test_a_second_user_id_is_refused_outside_alias_and_the_earlier_edge_wins() -> None:
    first = extract(EventIds("m1", "track", at(1), user_id="u1", anonymous_id="a1")).edges
    second = extract(EventIds("m2", "track", at(2), user_id="u2", anonymous_id="a1")).edges
    for edges in (first + second, second + first):  # arrival order does not matter
        roots, rejected = resolve([], edges)
        assert roots[("anonymous_id", "a1")] == roots[("user_id", "u1")]
        assert roots[("user_id", "u2")] != roots[("user_id", "u1")]
        assert [(r.rule, r.message_id) for r in rejected] == [("limit:user_id", "m2")]


def test_alias_may_join_two_user_ids_and_limits_are_configurable() -> None:
    alias = extract(EventIds("m1", "alias", T0, user_id="u2", previous_id="u1")).edges
    roots, rejected = resolve([], alias)
    assert roots[("user_id", "u1")] == roots[("user_id", "u2")]
    assert rejected == []
    shared = (
        extract(EventIds("m2", "track", T0, user_id="u3", anonymous_id="a1")).edges
        + extract(EventIds("m3", "track", T0, user_id="u4", anonymous_id="a1")).edges
    )
    roots, rejected = resolve([], shared, IdentityConfig(limits={"user_id": 2}))
    assert roots[("user_id", "u3")] == roots[("user_id", "u4")]
    assert rejected == []


def test_profile_ids_are_stable_and_ids_parse_on_the_first_colon() -> None:
    assert profile_id_of(("user_id", "u1")) == profile_id_of(("user_id", "u1"))
    assert profile_id_of(("user_id", "u1")).startswith("use_")
    assert profile_id_of(("user_id", "u1")) != profile_id_of(("anonymous_id", "u1"))
    assert parse_identity("email:a:b@x.com") == ("email", "a:b@x.com")
    with pytest.raises(IdentityError, match="TYPE:VALUE"):
        parse_identity("u1")
