"""The retention policy: parsing per-stream overrides and computing each stream's cutoff."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from eventkit_core import ConfigurationError
from eventkit_storage.retention import RetentionPolicy, parse_stream_days

NOW = datetime(2026, 12, 2, 8, 0, tzinfo=UTC)


def test_overrides_parse_and_win_over_the_default() -> None:
    policy = RetentionPolicy(30, parse_stream_days(" web:7, server:90,keep:0 "))
    assert policy.enabled
    assert policy.cutoff("web", NOW) == NOW - timedelta(days=7)
    assert policy.cutoff("server", NOW) == NOW - timedelta(days=90)
    assert policy.cutoff("other", NOW) == NOW - timedelta(days=30)
    assert policy.cutoff("keep", NOW) is None


def test_off_by_default() -> None:
    policy = RetentionPolicy()
    assert not policy.enabled
    assert policy.cutoff("web", NOW) is None
    assert parse_stream_days("") == {}


@pytest.mark.parametrize("text", ["web", "web:x", "web:-1", "../x:3"])
def test_bad_overrides_say_how_to_fix_them(text: str) -> None:
    with pytest.raises(ConfigurationError):
        parse_stream_days(text)


def test_bad_days_are_refused() -> None:
    with pytest.raises(ConfigurationError):
        RetentionPolicy(0)
    with pytest.raises(ConfigurationError):
        RetentionPolicy(None, {"web": -1})
