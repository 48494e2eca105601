"""Suppressed people's events are dropped before they are stored (``eventkit-loader forget``).

The event and dead-letter stores are wrapped: each batch is checked against the suppression
list (:mod:`eventkit_storage.suppression`, beside the data) just before it is written. The list
is reloaded at most every ``reload_seconds`` (``EVENTKIT_SUPPRESSION_RELOAD_SECONDS``, default
60), on the next write after that; with an empty list a batch costs one truth test. Dropped
events are counted in ``eventkit_events_suppressed_total`` by stream and never dead-lettered;
their ring-buffer entries are still reported as flushed (a file of zero rows with their source
ids), so that they are released like stored ones.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any, Final

from eventkit_core import DeadLetter, StoredFile, TypedEvent
from eventkit_storage.suppression import Suppressed, SuppressionList, candidate_ids, payload_ids
from opentelemetry import metrics
from opentelemetry.metrics import MeterProvider

from eventkit_collector import __version__

SUPPRESSED_METRIC: Final = "eventkit_events_suppressed"
DEFAULT_RELOAD_SECONDS: Final = 60.0


class _Suppression:
    """The list as this process last loaded it, and the counter."""

    def __init__(
        self, backend: Any, reload_seconds: float, meter_provider: MeterProvider | None = None
    ) -> None:
        self._list = SuppressionList(backend)
        self._reload = reload_seconds
        self._loaded_at = float("-inf")
        self.current = Suppressed()
        meter = metrics.get_meter("eventkit_collector", __version__, meter_provider=meter_provider)
        self._counter = meter.create_counter(
            SUPPRESSED_METRIC, unit="", description="Events of suppressed people, dropped"
        )

    async def refresh(self) -> Suppressed:
        now = time.monotonic()
        if now - self._loaded_at >= self._reload:
            self._loaded_at = now
            self.current = await self._list.load()
        return self.current

    def dropped(self, stream: str, count: int) -> None:
        self._counter.add(count, {"stream": stream})


def _event_ids(event: TypedEvent) -> list[tuple[str, str]]:
    return candidate_ids(
        user_id=event.user_id,
        anonymous_id=event.anonymous_id,
        previous_id=event.previous_id,
        traits=None if event.traits is None else bytes(event.traits),
        context=None if event.context is None else bytes(event.context),
    )


def _released(dropped: Sequence[TypedEvent | DeadLetter]) -> StoredFile:
    """A file of no rows naming the dropped items' entries, so that they are released."""
    ids = tuple(i.source_id for i in dropped if i.source_id is not None)
    return StoredFile(path="", uri="", rows=0, bytes=0, source_ids=ids, created=False)


class _Wrapper:
    def __init__(self, inner: Any, suppression: _Suppression) -> None:
        self._inner = inner
        self._suppression = suppression

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    def _split(
        self, items: Sequence[Any], ids_of: Any, snapshot: Suppressed
    ) -> tuple[list[Any], list[Any]]:
        kept: list[Any] = []
        dropped: list[Any] = []
        for item in items:
            (dropped if snapshot.matches(ids_of(item)) else kept).append(item)
        for item in dropped:
            self._suppression.dropped(item.stream, 1)
        return kept, dropped


class SuppressingEventStore(_Wrapper):
    """An EventStore that drops the events of suppressed people."""

    async def store_batch(self, events: Sequence[TypedEvent]) -> list[StoredFile]:
        snapshot = await self._suppression.refresh()
        if not snapshot:
            return list(await self._inner.store_batch(events))
        kept, dropped = self._split(events, _event_ids, snapshot)
        written = list(await self._inner.store_batch(kept)) if kept else []
        return [*written, _released(dropped)] if dropped else written

    async def store(self, event: TypedEvent) -> None:
        await self.store_batch([event])


class SuppressingErrorStore(_Wrapper):
    """An ErrorStore that drops (never dead-letters) the events of suppressed people."""

    async def store_errors(self, dead_letters: Sequence[DeadLetter]) -> list[StoredFile]:
        snapshot = await self._suppression.refresh()
        if not snapshot:
            return list(await self._inner.store_errors(dead_letters))
        kept, dropped = self._split(dead_letters, lambda d: payload_ids(d.payload), snapshot)
        written = list(await self._inner.store_errors(kept)) if kept else []
        return [*written, _released(dropped)] if dropped else written

    async def store_error(self, dead_letter: DeadLetter) -> None:
        await self.store_errors([dead_letter])


def wrap(
    event_store: Any,
    error_store: Any,
    reload_seconds: float = DEFAULT_RELOAD_SECONDS,
    meter_provider: MeterProvider | None = None,
) -> tuple[Any, Any]:
    """The two stores, checking the suppression list kept in the event store's place."""
    backend = getattr(event_store, "backend", None)
    if backend is None:  # a store without a file backend (tests' recorders): nothing to read
        return event_store, error_store
    suppression = _Suppression(backend, reload_seconds, meter_provider)
    return (
        SuppressingEventStore(event_store, suppression),
        SuppressingErrorStore(error_store, suppression),
    )
