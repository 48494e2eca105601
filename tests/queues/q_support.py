"""Helpers shared by the eventkit-queues tests."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable
from typing import Any

import msgspec
from eventkit_core import RawEvent
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader


async def wait_for(
    condition: Callable[[], bool],
    within: float = 10.0,
    what: str = "",
    state: Callable[[], str] | None = None,
) -> None:
    """Poll ``condition`` (every 5 ms) until it holds; fail the test after ``within`` seconds.

    ``state`` describes where things stand, for the failure message.
    """
    deadline = time.monotonic() + within
    while not condition():
        if time.monotonic() > deadline:
            detail = f" ({state()})" if state is not None else ""
            raise AssertionError(
                f"timed out after {within} s waiting for {what or condition}{detail}"
            )
        await asyncio.sleep(0.005)


def event(user: str, seq: int, producer: int = 0, **extra: object) -> RawEvent:
    return RawEvent(
        payload={"type": "track", "userId": user, "seq": seq, "producer": producer, **extra},
        stream="events",
    )


def seqs_in_order(events: Iterable[RawEvent]) -> bool:
    """True when, per (producer, userId), ``seq`` only goes up."""
    last: dict[tuple[Any, Any], int] = {}
    for ev in events:
        payload = payload_of(ev)
        key = (payload["producer"], payload["userId"])
        if payload["seq"] <= last.get(key, -1):
            return False
        last[key] = payload["seq"]
    return True


def first_sightings(events: Iterable[RawEvent]) -> list[RawEvent]:
    """``events`` without redeliveries: the first sighting of each (producer, seq).

    Pub/Sub may redeliver (at-least-once), and a redelivery repeats a suffix of a key's
    messages: order is a property of first sightings, which :func:`seqs_in_order` then checks.
    """
    seen: set[tuple[Any, Any]] = set()
    out: list[RawEvent] = []
    for ev in events:
        payload = payload_of(ev)
        ident = (payload["producer"], payload["seq"])
        if ident not in seen:
            seen.add(ident)
            out.append(ev)
    return out


def payload_of(ev: RawEvent) -> dict[str, Any]:
    payload = ev.payload
    if isinstance(payload, msgspec.Raw):
        payload = msgspec.json.decode(payload)
    assert isinstance(payload, dict)
    return payload


class Metrics:
    """An SDK meter provider with an in-memory reader, and readers of its points."""

    def __init__(self) -> None:
        self.reader = InMemoryMetricReader()
        self.provider = MeterProvider(metric_readers=[self.reader])

    def points(self, name: str) -> dict[tuple[tuple[str, object], ...], float]:
        data = self.reader.get_metrics_data()
        out: dict[tuple[tuple[str, object], ...], float] = {}
        if data is None:
            return out
        for resource in data.resource_metrics:
            for scope in resource.scope_metrics:
                for metric in scope.metrics:
                    if metric.name != name:
                        continue
                    for point in metric.data.data_points:
                        labels = tuple(sorted((point.attributes or {}).items()))
                        out[labels] = point.value  # type: ignore[union-attr]
        return out
