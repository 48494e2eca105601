"""Fixtures for the eventkit-storage tests: factories of typed events and dead letters."""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

import msgspec
import pytest
from eventkit_core import DeadLetter, SourceId, TrackEvent, TypedEvent

HOUR = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
_ENC = msgspec.json.Encoder()


MakeEvent = Callable[..., TypedEvent]
MakeDeadLetter = Callable[..., DeadLetter]
Eventually = Callable[[Callable[[], bool]], Awaitable[None]]


@pytest.fixture
def make_event() -> MakeEvent:
    """A track event with nested JSON; ids and message ids count up from 1 per test."""
    counter = itertools.count(1)

    def make(
        stream: str = "events",
        *,
        received_at: datetime = HOUR,
        source_id: SourceId | None = None,
        **fields: Any,
    ) -> TypedEvent:
        n = next(counter)
        props = {"n": n, "label": f"item {n}", "tags": ["a", "b"]}
        payload = {"type": "track", "event": "Clicked", "messageId": f"m-{n}", "properties": props}
        values: dict[str, Any] = {
            "message_id": f"m-{n}",
            "stream": stream,
            "received_at": received_at,
            "timestamp": received_at,
            "payload": msgspec.Raw(_ENC.encode(payload)),
            "event": "Clicked",
            "user_id": f"u{n % 3}",
            "properties": msgspec.Raw(_ENC.encode(props)),
            "context": msgspec.Raw(b'{"library":{"name":"test"}}'),
            "source_id": n if source_id is None else source_id,
        }
        values.update(fields)
        return TrackEvent(**values)

    return make


@pytest.fixture
def make_dead_letter() -> MakeDeadLetter:
    """A dead letter with every field set; source ids count up from 1 per test."""
    counter = itertools.count(1)

    def make(
        stream: str = "events",
        *,
        received_at: datetime = HOUR,
        source_id: SourceId | None = None,
        **fields: Any,
    ) -> DeadLetter:
        n = next(counter)
        values: dict[str, Any] = {
            "stream": stream,
            "reason_code": "invalid_type",
            "reason": f"type must be a string (item {n})",
            "payload": _ENC.encode({"type": n, "text": "héllo ✓"}).decode(),
            "received_at": received_at,
            "message_id": f"d-{n}",
            "source": "batch",
            "ip": "203.0.113.9",
            "user_agent": "curl/8",
            "batch_context": '{"library":{"name":"x"}}',
            "batch_integrations": "{}",
            "batch_sent_at": '"2024-05-01T12:00:00Z"',
            "source_id": n if source_id is None else source_id,
        }
        values.update(fields)
        return DeadLetter(**values)

    return make


@pytest.fixture
def eventually() -> Eventually:
    """``await eventually(condition)``: poll until it holds (fail after 10 s)."""

    async def wait(condition: Callable[[], bool], within: float = 10.0) -> None:
        deadline = time.monotonic() + within
        while not condition():
            if time.monotonic() > deadline:
                pytest.fail(f"condition not met within {within} s")
            await asyncio.sleep(0.005)

    return wait
