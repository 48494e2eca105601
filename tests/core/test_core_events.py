"""Event model: typed events, dead letters, RawEvent wire encoding, message ids, streams."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

import msgspec
import pytest
from eventkit_core import (
    DEFAULT_STREAM,
    DEFAULT_TYPE_STREAMS,
    EVENT_CLASSES,
    AdaptError,
    AdaptResult,
    BackpressureError,
    ConfigurationError,
    CustomEvent,
    DeadLetter,
    EventkitError,
    InvalidStreamError,
    RawEvent,
    StorageError,
    TrackEvent,
    decode_raw_event,
    encode_raw_event,
    is_valid_stream,
    json_text,
    new_message_id,
    stable_message_id,
    validate_stream,
)
from hypothesis import given
from hypothesis import strategies as st

T0 = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=10),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=10,
)
opt_text = st.none() | st.text(max_size=12)
raw_events = st.builds(
    RawEvent,
    payload=json_values,
    stream=st.from_regex(r"[A-Za-z0-9_-]{1,64}", fullmatch=True),
    received_at=st.datetimes(timezones=st.just(UTC)),
    source=st.sampled_from(["collect", "batch", "track"]),
    write_key_id=opt_text,
    ip=opt_text,
    user_agent=opt_text,
    request_id=opt_text,
    message_id=opt_text,
    key=opt_text,
    batch_context=st.none() | st.dictionaries(st.text(max_size=5), json_values, max_size=3),
    batch_integrations=st.none() | st.dictionaries(st.text(max_size=5), st.booleans(), max_size=3),
    batch_sent_at=st.none() | st.text(max_size=25),
    source_id=st.none() | st.integers(min_value=0, max_value=2**62) | st.text(max_size=10),
)


def _plain(value: Any) -> Any:
    return msgspec.json.decode(value) if isinstance(value, msgspec.Raw) else value


@given(raw_events)
def test_raw_event_wire_round_trip(raw: RawEvent) -> None:
    back = decode_raw_event(encode_raw_event(raw))
    assert isinstance(back.payload, msgspec.Raw)
    for field in raw.__struct_fields__:
        assert _plain(getattr(back, field)) == getattr(raw, field), field


@given(raw_events, st.sampled_from(["not_an_object", "missing_field"]), st.text(max_size=30))
def test_dead_letter_round_trip(raw: RawEvent, code: str, reason: str) -> None:
    letter = DeadLetter.from_raw(raw, AdaptError(code=code, message=reason))
    assert (letter.reason_code, letter.reason, letter.stream) == (code, reason, raw.stream)
    assert msgspec.json.decode(letter.payload) == raw.payload
    back = letter.to_raw()
    for field in ("stream", "received_at", "source", "ip", "user_agent", "message_id", "source_id"):
        assert getattr(back, field) == getattr(raw, field), field
    assert _plain(back.payload) == raw.payload
    assert _plain(back.batch_context) == raw.batch_context
    assert _plain(back.batch_integrations) == raw.batch_integrations
    assert back.batch_sent_at == raw.batch_sent_at
    # and a dead letter survives its own JSON encoding (what the error store writes)
    again = msgspec.json.decode(msgspec.json.encode(letter), type=DeadLetter)
    assert again == letter


def test_dead_letter_keeps_raw_bytes_and_message_id() -> None:
    raw = RawEvent(payload=msgspec.Raw(b'{"a": 1}'), received_at=T0, message_id="producer")
    letter = DeadLetter.from_raw(raw, AdaptError(code="c", message="m"), message_id="mine")
    assert letter.payload == '{"a": 1}'
    assert letter.message_id == "mine"
    assert DeadLetter.from_raw(raw, AdaptError(code="c", message="m")).message_id == "producer"


def test_typed_events() -> None:
    assert set(EVENT_CLASSES) == {"identify", "track", "page", "screen", "group", "alias"}
    for kind, cls in EVENT_CLASSES.items():
        event = cls(
            message_id="m", stream=DEFAULT_TYPE_STREAMS[kind], received_at=T0, timestamp=T0,
            payload=msgspec.Raw(b"{}"),
        )  # fmt: skip
        assert event.type == kind == cls.TYPE
    event = TrackEvent(
        message_id="m",
        stream="events",
        received_at=T0,
        timestamp=T0,
        payload=msgspec.Raw(b'{"type":"track"}'),
        properties=msgspec.Raw(b'{"a":[1,2]}'),
    )
    d = event.to_dict()
    assert d["payload"] == {"type": "track"}
    assert d["properties"] == {"a": [1, 2]}
    assert d["traits"] is None
    assert (
        CustomEvent(
            message_id="m", stream="s", received_at=T0, timestamp=T0, payload=msgspec.Raw(b"{}")
        ).type
        == "custom"
    )


def test_adapt_result_ok() -> None:
    event = CustomEvent(
        message_id="m", stream="s", received_at=T0, timestamp=T0, payload=msgspec.Raw(b"{}")
    )
    assert AdaptResult(event=event).ok
    assert not AdaptResult(error=AdaptError(code="c", message="m")).ok
    assert not AdaptResult().ok


def test_message_ids() -> None:
    a, b = new_message_id(), new_message_id()
    assert a != b
    assert uuid.UUID(a).version == 4
    stable = stable_message_id("ring", 1, 0)
    assert stable == "d01057e1-79db-41a4-b1d2-5e267c211069"  # pinned: ids must survive restarts
    assert stable == stable_message_id("ring", 1, 0)
    assert stable != stable_message_id("ring", 1, 1)
    assert stable != stable_message_id("ring", 2, 0)
    parsed = uuid.UUID(stable)
    assert parsed.version == 4
    assert parsed.variant == uuid.RFC_4122


def test_json_text() -> None:
    assert json_text({"a": 1}) == '{"a":1}'
    assert json_text(msgspec.Raw(b'{"a": 1}')) == '{"a": 1}'
    assert json_text(b"\xff") == "\ufffd"
    assert json_text(object()).startswith("<object")


# --- streams ------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["default", "users", "a", "A-b_9", "x" * 64])
def test_valid_streams(name: str) -> None:
    assert is_valid_stream(name)
    assert validate_stream(name) == name


@pytest.mark.parametrize("name", ["", "x" * 65, "../x", "a b", "a/b", "é", "a.b", None, 3])
def test_invalid_streams(name: object) -> None:
    assert not is_valid_stream(name)
    with pytest.raises(InvalidStreamError, match="use 1-64 of A-Z") as info:
        validate_stream(name)
    assert info.value.code == "invalid_stream"
    assert isinstance(info.value, ValueError)


def test_stream_names_are_not_normalised() -> None:
    assert validate_stream("Users") == "Users"
    assert not is_valid_stream(" users")
    assert not is_valid_stream("users\n")


@given(st.text(max_size=70))
def test_stream_rule_property(name: str) -> None:
    expected = 1 <= len(name) <= 64 and all(
        c.isascii() and (c.isalnum() or c in "_-") for c in name
    )
    assert is_valid_stream(name) is expected


def test_long_invalid_name_is_shortened_in_message() -> None:
    with pytest.raises(InvalidStreamError) as info:
        validate_stream("/" * 500)
    assert len(str(info.value)) < 200


def test_default_streams() -> None:
    assert DEFAULT_STREAM == "default"
    assert dict(DEFAULT_TYPE_STREAMS) == {
        "identify": "users", "track": "events", "page": "pages", "screen": "screens",
        "group": "groups", "alias": "aliases",
    }  # fmt: skip


def test_errors_subclass_builtins_and_carry_codes() -> None:
    assert issubclass(ConfigurationError, ValueError)
    assert issubclass(StorageError, OSError)
    err = BackpressureError("slow down: retry", retry_after=2.5)
    assert isinstance(err, EventkitError)
    assert isinstance(err, RuntimeError)
    assert (err.code, err.retry_after, str(err)) == ("overloaded", 2.5, "slow down: retry")
    assert EventkitError("x", code="custom").code == "custom"


@pytest.mark.parametrize(
    ("namespace", "entry_id", "index"),
    [("ring", 1, 0), ("shard-3", 123_456, 99), ("x" * 80, 0, 2_499), ("ünï", 2**40, 1)],
)
def test_stable_message_id_is_uuid5_with_uuid4_bits(
    namespace: str, entry_id: int, index: int
) -> None:
    # The hand-rolled hot-path form must give exactly the ids of the uuid5 definition: stored files
    # and warehouses written by earlier versions hold these ids.
    digest = uuid.uuid5(uuid.NAMESPACE_URL, f"{namespace}/{entry_id}/{index}").bytes
    assert stable_message_id(namespace, entry_id, index) == str(uuid.UUID(bytes=digest, version=4))
