"""parse_timestamp and Segment's clock-skew rule."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from eventkit_core import corrected_timestamp, parse_timestamp, utcnow
from hypothesis import given
from hypothesis import strategies as st

T0 = datetime(2024, 1, 31, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2024-01-31T12:00:00Z", T0),
        ("2024-01-31T12:00:00z", T0),
        ("2024-01-31T12:00:00+00:00", T0),
        ("2024-01-31T14:00:00+02:00", T0),
        ("2024-01-31T12:00:00.250Z", T0 + timedelta(milliseconds=250)),
        ("2024-01-31T12:00:00.123456Z", T0 + timedelta(microseconds=123456)),
        ("2024-01-31T12:00:00", T0),  # naive is UTC
        ("  2024-01-31T12:00:00Z ", T0),
        (1706702400, T0),
        (1706702400.5, T0 + timedelta(milliseconds=500)),
        (1706702400000, T0),  # milliseconds
        (1706702400250, T0 + timedelta(milliseconds=250)),
        (0, datetime(1970, 1, 1, tzinfo=UTC)),
    ],
)
def test_parse(value: object, expected: datetime) -> None:
    parsed = parse_timestamp(value)
    assert parsed == expected
    assert parsed is not None
    assert parsed.tzinfo is UTC


@pytest.mark.parametrize(
    "value",
    ["", " ", "noon", "2024-13-01T00:00:00Z", True, False, None, [], {}, float("nan"),
     float("inf"), 10**30, "2024-01-31T12:00:00ZZ"],
)  # fmt: skip
def test_not_a_timestamp(value: object) -> None:
    assert parse_timestamp(value) is None


@given(st.one_of(st.text(), st.integers(), st.floats(), st.none(), st.booleans()))
def test_parse_never_raises(value: object) -> None:
    parsed = parse_timestamp(value)
    assert parsed is None or parsed.tzinfo is not None


@given(
    st.datetimes(
        timezones=st.just(UTC), min_value=datetime(1971, 1, 1), max_value=datetime(4000, 1, 1)
    )
)
def test_iso_round_trip(value: datetime) -> None:
    assert parse_timestamp(value.isoformat()) == value
    assert parse_timestamp(value.isoformat().replace("+00:00", "Z")) == value


def test_skew_rule_spec_example() -> None:
    # Segment's track spec: receivedAt 01.266, sentAt 01.169, originalTimestamp 01.152 -> 01.249
    def t(ms: int) -> datetime:
        return datetime(2015, 12, 12, 19, 11, 1, ms * 1000, tzinfo=UTC)

    assert corrected_timestamp(t(266), t(169), t(152)) == t(249)


def test_skew_rule_cases() -> None:
    received = T0
    original = T0 - timedelta(hours=3)  # device clock 3 h behind
    sent = original + timedelta(seconds=2)  # sent 2 s after the event, by the device's clock
    assert corrected_timestamp(received, sent, original) == T0 - timedelta(seconds=2)
    assert corrected_timestamp(received, None, original) == original
    assert corrected_timestamp(received, sent, None) == received
    assert corrected_timestamp(received, None, None) == received


@given(
    received=st.datetimes(timezones=st.just(UTC)),
    sent=st.datetimes(timezones=st.just(UTC)),
    original=st.datetimes(timezones=st.just(UTC)),
)
def test_skew_rule_property(received: datetime, sent: datetime, original: datetime) -> None:
    result = corrected_timestamp(received, sent, original)
    try:
        expected = received - (sent - original)
    except OverflowError:
        expected = original
    assert result == expected


def test_skew_rule_is_offset_invariant() -> None:
    east = timezone(timedelta(hours=5))
    original = datetime(2024, 1, 1, 17, 0, tzinfo=east)
    sent = datetime(2024, 1, 1, 17, 0, 3, tzinfo=east)
    assert corrected_timestamp(T0, sent, original) == T0 - timedelta(seconds=3)


def test_utcnow_is_aware() -> None:
    assert utcnow().tzinfo is UTC
