"""Retention policy: how many days each stream's files and warehouse rows are kept.

Only the policy lives here so far (parsing and per-stream cutoffs); deleting and rewriting the
files past a cutoff is not built yet. A policy has a default number of days (``None``: keep
forever) and per-stream overrides; an override of ``0`` keeps that stream forever even when a
default is set. Data whose ``received_at`` is before :meth:`RetentionPolicy.cutoff` is past
retention.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from eventkit_core import ConfigurationError, InvalidStreamError, validate_stream


@dataclass(frozen=True)
class RetentionPolicy:
    """Days to keep per stream: ``default_days`` for streams without an override."""

    default_days: int | None = None
    streams: Mapping[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.default_days is not None and self.default_days < 1:
            raise ConfigurationError(
                f"retention of {self.default_days} days is invalid: use 1 or more (or leave unset)"
            )
        for stream, days in self.streams.items():
            validate_stream(stream)
            if days < 0:
                raise ConfigurationError(
                    f"retention of {days} days for stream {stream!r} is invalid: use 0 (keep "
                    "forever) or more"
                )

    @property
    def enabled(self) -> bool:
        """True when some stream's data can be past retention."""
        return self.default_days is not None or any(self.streams.values())

    def days_for(self, stream: str) -> int | None:
        """Days ``stream`` is kept, or None (forever)."""
        days = self.streams.get(stream, self.default_days)
        return None if days == 0 else days

    def cutoff(self, stream: str, now: datetime | None = None) -> datetime | None:
        """Data of ``stream`` received before this moment (UTC) is past retention; None: never."""
        days = self.days_for(stream)
        if days is None:
            return None
        moment = datetime.now(UTC) if now is None else now
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)
        return moment.astimezone(UTC) - timedelta(days=days)


def parse_stream_days(text: str) -> dict[str, int]:
    """``"web:7,server:90"`` -> ``{"web": 7, "server": 90}`` (blank: no overrides)."""
    out: dict[str, int] = {}
    for part in text.split(","):
        item = part.strip()
        if not item:
            continue
        stream, sep, days = item.partition(":")
        if not sep or not days.strip().isdigit():
            raise ConfigurationError(
                f"retention override {item!r} is invalid: use STREAM:DAYS, e.g. web:7,server:90"
            )
        try:
            name = validate_stream(stream.strip())
        except InvalidStreamError as exc:
            raise ConfigurationError(f"retention override {item!r}: {exc}") from None
        out[name] = int(days.strip())
    return out
