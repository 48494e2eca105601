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


def _utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0, sec: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, sec, tzinfo=UTC)


@pytest.mark.parametrize(
    ("received", "sent", "original", "expected"),
    [
        # device clock 1 day ahead, event 90 s before sending: 90 s before receipt
        (_utc(2024, 3, 1), _utc(2024, 3, 2, 0, 1, 30), _utc(2024, 3, 2), _utc(2024, 2, 29, 23, 58, 30)),
        # device clock right, sent at once: the receipt time
        (_utc(2024, 3, 1), _utc(2024, 3, 1), _utc(2024, 3, 1), _utc(2024, 3, 1)),
        # a queued offline event sent 2 days later by a clock 10 years behind
        (_utc(2024, 6, 15, 8), _utc(2014, 6, 17, 8), _utc(2014, 6, 15, 8), _utc(2024, 6, 13, 8)),
        # originalTimestamp after sentAt (a clock that jumped): the event lands after receipt
        (_utc(2024, 1, 1), _utc(2024, 1, 1), _utc(2024, 1, 1, 0, 0, 5), _utc(2024, 1, 1, 0, 0, 5)),
        # the result would pass datetime.max / datetime.min: the original time is kept
        (_utc(9999, 12, 1), _utc(2000, 1, 1), _utc(2020, 1, 1), _utc(2020, 1, 1)),
        (_utc(1, 2, 1), _utc(2020, 1, 1), _utc(2000, 1, 1), _utc(2000, 1, 1)),
    ],
)  # fmt: skip
def test_skew_rule_examples(
    received: datetime, sent: datetime, original: datetime, expected: datetime
) -> None:
    assert corrected_timestamp(received, sent, original) == expected


@given(
    received=st.datetimes(timezones=st.just(UTC)),
    sent=st.datetimes(timezones=st.just(UTC)),
    original=st.datetimes(timezones=st.just(UTC)),
)
def test_skew_rule_keeps_the_delay_before_sending(
    received: datetime, sent: datetime, original: datetime
) -> None:
    """What the rule means: the event happened as long before its receipt as the device says
    it happened before sending (the clock offset cancels); past the datetime range, the
    original time is kept. Never raises."""
    result = corrected_timestamp(received, sent, original)
    assert result.tzinfo is not None
    if received - result != sent - original:
        # kept the original, and only because the corrected time was out of range
        assert result == original
        assert (received - datetime.min.replace(tzinfo=UTC)) < (sent - original) or (
            datetime.max.replace(tzinfo=UTC) - received
        ) < (original - sent)


def test_skew_rule_is_offset_invariant() -> None:
    east = timezone(timedelta(hours=5))
    original = datetime(2024, 1, 1, 17, 0, tzinfo=east)
    sent = datetime(2024, 1, 1, 17, 0, 3, tzinfo=east)
    assert corrected_timestamp(T0, sent, original) == T0 - timedelta(seconds=3)


def test_utcnow_is_aware() -> None:
    assert utcnow().tzinfo is UTC
