"""Timestamps: parsing what SDKs send, and Segment's clock-skew correction."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
# Unix numbers above this are taken as milliseconds (1e11 s is the year 5138).
_MS_THRESHOLD = 100_000_000_000


def utcnow() -> datetime:
    """The current time, timezone-aware UTC."""
    return datetime.now(UTC)


def parse_timestamp(value: object) -> datetime | None:
    """Parse an ISO 8601 string or a Unix time (seconds or milliseconds) into aware UTC.

    Returns ``None`` for anything that is not a timestamp (wrong type, bad text, out of range);
    callers decide whether that is an error. Naive ISO strings are taken as UTC.
    """
    if isinstance(value, str):
        text = value.strip()
        if not text:
            return None
        if text[-1] in "zZ":
            text = text[:-1] + "+00:00"
        try:
            parsed = datetime.fromisoformat(text)
        except ValueError:
            return None
        if parsed.tzinfo is None:
            return parsed.replace(tzinfo=UTC)
        return parsed.astimezone(UTC)
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    if isinstance(value, float) and not math.isfinite(value):
        return None
    seconds = value / 1000 if abs(value) >= _MS_THRESHOLD else value
    try:
        return _EPOCH + timedelta(seconds=seconds)
    except OverflowError:
        return None


def corrected_timestamp(
    received_at: datetime,
    sent_at: datetime | None,
    original_timestamp: datetime | None,
) -> datetime:
    """Segment's clock-skew rule.

    With ``sent_at`` and an original time: ``received_at - (sent_at - original_timestamp)``
    (the device clock's offset cancels out). Without ``sent_at``: the original time. Without
    either: ``received_at``.
    """
    if original_timestamp is None:
        return received_at
    if sent_at is None:
        return original_timestamp
    try:
        return received_at - (sent_at - original_timestamp)
    except OverflowError:
        return original_timestamp
