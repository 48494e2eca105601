"""Property tests: adapters never raise, whatever they are given."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import msgspec
from eventkit_core import AdaptResult, RawEvent
from eventkit_validators import GenericAdapter, SegmentSchemaAdapter, codes
from hypothesis import given, settings
from hypothesis import strategies as st

SEGMENT = SegmentSchemaAdapter()
GENERIC = GenericAdapter()
KNOWN = set(codes.ALL_CODES)
RECEIVED = datetime(2024, 1, 1, tzinfo=UTC)

scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**64 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20)
)
json_values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=20,
)
field_names = st.sampled_from(
    [
        "type", "userId", "anonymousId", "messageId", "event", "name", "category", "groupId",
        "previousId", "timestamp", "originalTimestamp", "sentAt", "properties", "traits",
        "context", "integrations", "ip", "userAgent",
    ]
)  # fmt: skip
field_values = st.one_of(
    json_values,
    st.sampled_from(["identify", "track", "page", "screen", "group", "alias", "batch"]),
    st.sampled_from(["2024-01-01T00:00:00Z", "2024-01-01T00:00:00.5+02:00", "1704067200", ""]),
    st.integers(min_value=0, max_value=2 * 10**12),
)
# Objects that look like Segment events, so the adapters get past the first checks.
segmentish = st.dictionaries(field_names, field_values, max_size=12)
nested_context = st.dictionaries(field_names, field_values, max_size=4)
anything = st.one_of(
    json_values,
    segmentish,
    st.builds(
        lambda c: {"type": "track", "userId": "u", "event": "e", "context": c}, nested_context
    ),
)
raw_kwargs = st.fixed_dictionaries(
    {},
    optional={
        "ip": st.none() | st.text(max_size=10),
        "user_agent": st.none() | st.text(max_size=10),
        "message_id": st.none() | st.text(max_size=10),
        "source": st.sampled_from(["collect", "batch", "track", "identify"]),
        "batch_context": st.none() | json_values,
        "batch_integrations": st.none() | json_values,
        "batch_sent_at": st.none() | field_values,
    },
)


def check(result: AdaptResult) -> None:
    assert isinstance(result, AdaptResult)
    if result.error is None:
        assert result.ok
        assert result.event is not None
        # nested columns are JSON objects (or absent) and payload is valid JSON
        for column in ("properties", "traits", "context", "integrations"):
            value = getattr(result.event, column)
            assert value is None or isinstance(msgspec.json.decode(value), dict)
        msgspec.json.decode(result.event.payload)
        assert result.event.timestamp.tzinfo is not None
    else:
        assert not result.ok
        assert result.error.code in KNOWN, result.error  # never the "adapt_failed" safety net
        assert result.error.message


@settings(max_examples=400, deadline=None)
@given(payload=anything, kwargs=raw_kwargs)
def test_adapters_never_raise_for_python_values(payload: Any, kwargs: dict[str, Any]) -> None:
    raw = RawEvent(payload=payload, received_at=RECEIVED, **kwargs)
    check(SEGMENT.adapt(raw))
    check(GENERIC.adapt(raw))


@settings(max_examples=400, deadline=None)
@given(payload=anything, kwargs=raw_kwargs)
def test_adapters_never_raise_for_raw_json(payload: Any, kwargs: dict[str, Any]) -> None:
    raw = RawEvent(
        payload=msgspec.Raw(msgspec.json.encode(payload)), received_at=RECEIVED, **kwargs
    )
    segment = SEGMENT.adapt(raw)
    check(segment)
    generic = GENERIC.adapt(raw)
    check(generic)
    if isinstance(payload, dict):
        assert generic.ok or (
            generic.error is not None
            and generic.error.code
            in {
                "invalid_message_id",
                "event_too_large",
            }
        )
        # Python values and their JSON bytes are adapted alike
        same = SEGMENT.adapt(msgspec.structs.replace(raw, payload=payload))
        assert (same.error is None) == (segment.error is None)
        assert same.error == segment.error or segment.error is None
    else:
        assert segment.error is not None
        assert segment.error.code == "not_an_object"


@settings(max_examples=300, deadline=None)
@given(data=st.binary(max_size=200) | st.text(max_size=100).map(str.encode))
def test_adapters_never_raise_for_arbitrary_bytes(data: bytes) -> None:
    raw = RawEvent(payload=msgspec.Raw(data), received_at=RECEIVED, ip="1.2.3.4")
    check(SEGMENT.adapt(raw))
    check(GENERIC.adapt(raw))


@settings(max_examples=200, deadline=None)
@given(context=nested_context, ip=st.text(max_size=8), ua=st.text(max_size=8))
def test_context_fill_matches_a_dict_merge(context: dict[str, Any], ip: str, ua: str) -> None:
    payload = {"type": "identify", "userId": "u", "context": context}
    result = SEGMENT.adapt(
        RawEvent(payload=msgspec.Raw(msgspec.json.encode(payload)), ip=ip, user_agent=ua)
    )
    assert result.event is not None, result.error
    expected = dict(context)
    if expected.get("ip") is None:
        expected["ip"] = ip
    if expected.get("userAgent") is None:
        expected["userAgent"] = ua
    assert result.event.to_dict()["context"] == expected
