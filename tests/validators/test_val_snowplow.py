"""SnowplowAdapter: each tp2 parameter lands where the module's mapping table says."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec
import pytest
from eventkit_core import PageEvent, RawEvent, TrackEvent, TypedEvent
from eventkit_validators import (
    INVALID_SNOWPLOW,
    SNOWPLOW,
    EndpointAdapter,
    SnowplowAdapter,
    codes,
    default_stream,
    endpoint_of,
)
from eventkit_validators.snowplow import EVENT_TYPES, call_type
from hypothesis import given, settings
from hypothesis import strategies as st

RECEIVED = datetime(2024, 5, 1, 12, 0, 0, tzinfo=UTC)
PLAN = {"schema": "iglu:com.acme/plan/jsonschema/1-0-0", "data": {"plan": "pro"}}
CONTEXTS = {
    "schema": "iglu:com.snowplowanalytics.snowplow/contexts/jsonschema/1-0-1",
    "data": [PLAN],
}
CHECKOUT = {"schema": "iglu:com.acme/checkout_started/jsonschema/1-0-0", "data": {"total": 9.5}}
UNSTRUCT = {"schema": "iglu:com.snowplowanalytics.snowplow/unstruct_event/jsonschema/1-0-0"}


def b64url(value: Any, *, pad: bool = False) -> str:
    text = base64.urlsafe_b64encode(json.dumps(value).encode()).decode()
    return text if pad else text.rstrip("=")


def adapt(event: Any, **raw: Any) -> TypedEvent:
    payload = msgspec.Raw(json.dumps(event).encode())
    result = SnowplowAdapter().adapt(
        RawEvent(payload=payload, source=SNOWPLOW, received_at=RECEIVED, **raw)
    )
    assert result.event is not None, result.error
    return result.event


def refused(event: Any) -> tuple[str, str]:
    payload = msgspec.Raw(json.dumps(event).encode())
    result = SnowplowAdapter().adapt(RawEvent(payload=payload, source=SNOWPLOW))
    assert result.error is not None, result.event
    assert result.error.message.startswith("snowplow: ")
    return result.error.code, result.error.message


def obj(raw: Any) -> Any:
    return json.loads(bytes(raw))


def test_page_view() -> None:
    event = adapt(
        {
            "e": "pv",
            "eid": "e-1",
            "url": "https://shop.example/cart?step=2",
            "page": "Cart",
            "refr": "https://search.example/",
            "duid": "d-1",
        }
    )
    assert isinstance(event, PageEvent)
    assert (event.type, event.name, event.message_id, event.anonymous_id) == (
        "page",
        "Cart",
        "e-1",
        "d-1",
    )
    page = {
        "url": "https://shop.example/cart?step=2",
        "title": "Cart",
        "referrer": "https://search.example/",
        "path": "/cart",
        "search": "?step=2",
    }
    assert obj(event.properties) == page
    assert obj(event.context)["page"] == page


def test_structured_event() -> None:
    event = adapt(
        {
            "e": "se",
            "se_ca": "shop",
            "se_ac": "add",
            "se_la": "sku",
            "se_pr": "red",
            "se_va": "2.5",
            "uid": "u",
        }
    )
    assert isinstance(event, TrackEvent)
    assert (event.event, event.user_id) == ("add", "u")
    assert obj(event.properties) == {
        "category": "shop",
        "label": "sku",
        "property": "red",
        "value": 2.5,
    }
    assert obj(adapt({"e": "se", "se_ac": "a", "se_va": "3"}).properties) == {"value": 3}


@pytest.mark.parametrize(
    "fields",
    [
        {"ue_px": b64url({**UNSTRUCT, "data": CHECKOUT})},
        {"ue_px": b64url({**UNSTRUCT, "data": CHECKOUT}, pad=True)},
        {"ue_pr": json.dumps({**UNSTRUCT, "data": CHECKOUT})},
        {"ue_pr": json.dumps(CHECKOUT)},  # without the unstruct_event envelope
    ],
)
def test_self_describing_event(fields: dict[str, str]) -> None:
    event = adapt({"e": "ue", **fields})
    assert event.event == "checkout_started"
    assert obj(event.properties) == {"total": 9.5}
    snowplow = obj(event.context)["snowplow"]
    assert snowplow["event_schema"] == "iglu:com.acme/checkout_started/jsonschema/1-0-0"


@pytest.mark.parametrize(
    "fields",
    [
        {"cx": b64url(CONTEXTS)},
        {"cx": base64.b64encode(json.dumps(CONTEXTS).encode()).decode()},  # standard alphabet
        {"co": json.dumps(CONTEXTS)},
    ],
)
def test_contexts(fields: dict[str, str]) -> None:
    event = adapt({"e": "pv", **fields})
    assert obj(event.context)["snowplow"]["contexts"] == [PLAN]


def test_page_ping_and_transactions() -> None:
    ping = adapt({"e": "pp", "pp_mix": "0", "pp_max": "10", "pp_miy": "5", "pp_may": "900"})
    assert ping.event == "Page Ping"
    assert obj(ping.properties) == {"min_x": 0, "max_x": 10, "min_y": 5, "max_y": 900}
    tr = adapt({"e": "tr", "tr_id": "o1", "tr_tt": "12.5", "tr_cu": "EUR"})
    assert (tr.event, obj(tr.properties)) == (
        "Transaction",
        {"order_id": "o1", "total": 12.5, "currency": "EUR"},
    )
    ti = adapt({"e": "ti", "ti_id": "o1", "ti_sk": "s", "ti_qu": "2"})
    assert (ti.event, obj(ti.properties)) == (
        "Transaction Item",
        {"order_id": "o1", "sku": "s", "quantity": 2},
    )


@pytest.mark.parametrize(
    ("ids", "anonymous"),
    [
        ({"duid": "d", "nuid": "n", "tnuid": "t"}, "d"),
        ({"nuid": "n", "tnuid": "t"}, "n"),
        ({"tnuid": "t"}, "t"),
        ({}, None),  # no id at all: accepted (server-side trackers send none)
    ],
)
def test_anonymous_id_precedence(ids: dict[str, str], anonymous: str | None) -> None:
    event = adapt({"e": "pv", **ids})
    assert event.anonymous_id == anonymous
    assert event.user_id is None
    snowplow = obj(event.context)["snowplow"]
    names = {"duid": "domain_userid", "nuid": "network_userid", "tnuid": "tracker_network_userid"}
    assert {names[k]: v for k, v in ids.items()} == {
        k: snowplow[k] for k in names.values() if k in snowplow
    }


def test_timestamps() -> None:
    created = datetime(2024, 5, 1, 11, 0, 0, tzinfo=UTC)
    ms = int(created.timestamp() * 1000)
    event = adapt({"e": "pv", "dtm": str(ms), "stm": str(ms + 60_000)})
    assert event.original_timestamp == created
    assert event.sent_at == created + timedelta(minutes=1)
    assert event.timestamp == RECEIVED - timedelta(minutes=1)  # the skew correction
    # A true timestamp wins and is taken as it is.
    true = adapt({"e": "pv", "dtm": str(ms), "stm": str(ms), "ttm": "1700000000123"})
    expected = datetime(2023, 11, 14, 22, 13, 20, 123000, tzinfo=UTC)
    assert (true.original_timestamp, true.timestamp, true.sent_at) == (expected, expected, None)
    assert obj(true.context)["snowplow"]["dvce_created_tstamp"] == str(ms)


def test_other_fields_are_kept_in_context() -> None:
    event = adapt(
        {
            "e": "pv",
            "aid": "shop",
            "p": "web",
            "tv": "js-4.10.1",
            "tna": "sp",
            "res": "800x600",
            "vp": "780x437",
            "sid": "s-1",
            "vid": "3",
            "lang": "en-GB",
            "tz": "Europe/Paris",
            "ua": "UA/1",
            "ip": "203.0.113.9",
            "zz_new": "kept",
        },
        ip="198.51.100.1",
        user_agent="Header/1",
    )
    context = obj(event.context)
    assert context["snowplow"] == {
        "app_id": "shop",
        "platform": "web",
        "v_tracker": "js-4.10.1",
        "name_tracker": "sp",
        "screen_resolution": "800x600",
        "viewport_size": "780x437",
        "domain_sessionid": "s-1",
        "domain_sessionidx": "3",
        "params": {"zz_new": "kept"},
    }
    assert context["library"] == {"name": "snowplow", "version": "js-4.10.1"}
    # The tracker's own ua / ip win over the request's.
    assert (context["userAgent"], context["ip"]) == ("UA/1", "203.0.113.9")
    assert (context["locale"], context["timezone"]) == ("en-GB", "Europe/Paris")
    # Without them, the request's fill in.
    assert obj(adapt({"e": "pv"}, ip="198.51.100.1").context)["ip"] == "198.51.100.1"
    # The payload is the original map.
    assert obj(event.payload)["zz_new"] == "kept"


@pytest.mark.parametrize(
    ("event", "code", "says"),
    [
        ({"url": "x"}, "missing_field", "e (the event type) is missing"),
        ({"e": "zz"}, "invalid_type", "e='zz' is not mapped"),
        ({"e": "se", "se_ca": "c"}, "missing_field", "se_ac is required"),
        ({"e": "se", "se_ac": "a", "se_va": "lots"}, "wrong_type", "se_va 'lots' is not a number"),
        ({"e": "se", "se_ac": "a", "se_va": "nan"}, "wrong_type", "not a finite number"),
        ({"e": "ue"}, "missing_field", "ue_px or ue_pr is required"),
        ({"e": "ue", "ue_px": "%%%"}, "invalid_json", "ue_px is not base64url-encoded JSON"),
        ({"e": "ue", "ue_pr": "{"}, "invalid_json", "ue_pr is not JSON"),
        ({"e": "ue", "ue_pr": '{"data": {}}'}, "missing_field", "has no schema"),
        ({"e": "ue", "ue_pr": '{"schema": "s", "data": [1]}'}, "wrong_type", "must be a JSON"),
        ({"e": "pv", "cx": b64url({"data": {}})}, "wrong_type", "array of entities"),
        ({"e": "pv", "co": "nope"}, "invalid_json", "co is not JSON"),
        ({"e": "pv", "dtm": "yesterday"}, "invalid_timestamp", "send milliseconds"),
        ({"e": "pv", "uid": {"id": 1}}, "wrong_type", "uid must be a string, got object"),
        ([{"e": "pv"}], "not_an_object", "got array"),
    ],
)
def test_unmappable_events_say_why(event: Any, code: str, says: str) -> None:
    got_code, message = refused(event)
    assert got_code == code
    assert says in message


def test_shared_rules_apply() -> None:
    adapter = SnowplowAdapter(max_event_bytes=64, max_message_id_length=5)
    big = RawEvent(payload=msgspec.Raw(json.dumps({"e": "pv", "x": "y" * 80}).encode()))
    assert adapter.adapt(big).error.code == "event_too_large"  # type: ignore[union-attr]
    long_id = RawEvent(payload=msgspec.Raw(b'{"e":"pv","eid":"123456"}'))
    assert adapter.adapt(long_id).error.code == "invalid_message_id"  # type: ignore[union-attr]
    derived = RawEvent(payload=msgspec.Raw(b'{"e":"pv"}'), message_id="m-1")
    assert adapter.adapt(derived).event.message_id == "m-1"  # type: ignore[union-attr]


def test_endpoint_table() -> None:
    adapter = EndpointAdapter()
    raw = RawEvent(payload={"e": "se", "se_ac": "a", "duid": "d"}, source=SNOWPLOW)
    assert adapter.adapter_for(raw) is adapter.snowplow
    assert adapter.adapt(raw).event.event == "a"  # type: ignore[union-attr]
    unfit = adapter.adapt(RawEvent(payload={"schema": "s"}, source=INVALID_SNOWPLOW))
    assert unfit.error is not None
    assert unfit.error.code == INVALID_SNOWPLOW
    assert unfit.error.message.startswith("snowplow: ")
    assert endpoint_of(SNOWPLOW).stream is None
    assert default_stream(SNOWPLOW, call_type("pv")) == "pages"
    assert default_stream(SNOWPLOW, call_type("ue")) == "events"
    assert default_stream(SNOWPLOW, call_type("zz")) == "default"
    assert set(EVENT_TYPES) == {"pv", "se", "ue", "pp", "tr", "ti"}


def test_adapt_many_matches_adapt() -> None:
    raws = [
        RawEvent(payload=msgspec.Raw(b'{"e":"pv","eid":"a"}'), source=SNOWPLOW),
        RawEvent(payload=msgspec.Raw(b'{"e":"zz"}'), source=SNOWPLOW),
    ]
    many = SnowplowAdapter().adapt_many(raws)
    assert [r.ok for r in many] == [True, False]


def test_duid_and_uid_reach_identity_resolution() -> None:
    from eventkit_storage.identity import event_ids_from_typed, extract

    event = adapt({"e": "pv", "eid": "m-1", "uid": "user-1", "duid": "device-1"})
    edges = extract(event_ids_from_typed(event)).edges
    assert [(e.one, e.two, e.kind, e.message_id) for e in edges] == [
        (("anonymous_id", "device-1"), ("user_id", "user-1"), "same_event", "m-1")
    ]


tp2_names = st.sampled_from(
    [
        "e", "eid", "uid", "duid", "nuid", "tnuid", "dtm", "stm", "ttm", "url", "page", "refr",
        "se_ca", "se_ac", "se_la", "se_pr", "se_va", "ue_px", "ue_pr", "cx", "co", "pp_mix",
        "tr_tt", "ti_qu", "aid", "tv", "ua", "ip", "lang", "zz",
    ]
)  # fmt: skip
tp2_values = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**63), max_value=2**63),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=12),
    st.sampled_from([*EVENT_TYPES, "1700000000000", "1e999", "nan", "-1", "{}", "[1]"]),
    st.sampled_from([b64url(CONTEXTS), b64url({**UNSTRUCT, "data": CHECKOUT}), "e30", "%%"]),
    st.lists(st.integers(), max_size=2),
    st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
)
tp2_events = st.dictionaries(tp2_names, tp2_values, max_size=10)


@settings(max_examples=200, deadline=None)
@given(event=tp2_events)
def test_never_raises(event: dict[str, Any]) -> None:
    """Whatever the map holds: a typed event with JSON-object maps, or a known error code."""
    raw = RawEvent(payload=msgspec.Raw(msgspec.json.encode(event)), source=SNOWPLOW)
    result = SnowplowAdapter().adapt(raw)
    if result.error is not None:
        assert result.error.code in codes.ALL_CODES, result.error
        assert result.error.message.startswith("snowplow: ")
        return
    assert result.event is not None
    for column in (result.event.properties, result.event.context):
        assert isinstance(msgspec.json.decode(column), dict)  # type: ignore[arg-type]


def test_dead_letters_replay_through_the_snowplow_adapter() -> None:
    from eventkit_core import DeadLetter

    adapter = EndpointAdapter()
    raw = RawEvent(payload=msgspec.Raw(b'{"e":"se","eid":"x"}'), source=SNOWPLOW, stream="events")
    first = adapter.adapt(raw)
    assert first.error is not None
    letter = DeadLetter.from_raw(raw, first.error, "x")
    again = adapter.adapt(letter.to_raw())  # as eventkit-loader replay-dead-letters does
    assert again.error == first.error
    assert again.error.message.startswith("snowplow: se_ac is required")
