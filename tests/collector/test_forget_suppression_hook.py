"""The collector's suppression hook: suppressed people's events are dropped before storing."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import msgspec
from eventkit_collector.suppression import wrap
from eventkit_core import DeadLetter, TrackEvent
from eventkit_storage.local import LocalErrorStore, LocalEventStore
from eventkit_storage.parquet import read_events
from eventkit_storage.suppression import SuppressionList
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader

WHEN = datetime(2024, 5, 1, 12, tzinfo=UTC)


def _event(n: int, user: str) -> TrackEvent:
    return TrackEvent(
        message_id=f"m-{n}",
        stream="events",
        received_at=WHEN,
        timestamp=WHEN,
        user_id=user,
        event="Clicked",
        payload=msgspec.Raw(b"{}"),
        source_id=n,
    )


async def test_dropped_before_storing_and_entries_released(tmp_path: Path) -> None:
    reader = InMemoryMetricReader()
    events, errors = wrap(
        LocalEventStore(tmp_path),
        LocalErrorStore(tmp_path),
        0.0001,
        MeterProvider(metric_readers=[reader]),
    )
    await SuppressionList(events.backend).add([("user_id", "gone-user")], "r1")

    files = await events.store_batch([_event(1, "gone-user"), _event(2, "kept-user")])
    stored = [f for f in files if f.path]
    assert len(stored) == 1
    assert stored[0].rows == 1
    # The dropped event's entry is reported, so the ring buffer releases it.
    assert sorted(sid for f in files for sid in f.source_ids) == [1, 2]
    raw = (tmp_path / stored[0].path).read_bytes()
    assert read_events(raw).column("user_id").to_pylist() == ["kept-user"]

    letter = DeadLetter(
        message_id="m-3",
        stream="events",
        reason_code="validation_failed",
        reason="no event name",
        payload='{"type": "track", "userId": "gone-user"}',
        received_at=WHEN,
    )
    assert await errors.store_errors([letter]) == [
        files[-1].__class__(path="", uri="", rows=0, bytes=0, source_ids=(), created=False)
    ]
    assert not (tmp_path / "dead-letters").exists()
    data = reader.get_metrics_data()
    assert data is not None
    points = [
        (dict(p.attributes or {}), getattr(p, "value", None))
        for rm in data.resource_metrics
        for sm in rm.scope_metrics
        for m in sm.metrics
        if m.name == "eventkit_events_suppressed"
        for p in m.data.data_points  # type: ignore[union-attr]
    ]
    assert points == [({"stream": "events"}, 2)]


async def test_empty_list_stores_everything(tmp_path: Path) -> None:
    events, _ = wrap(LocalEventStore(tmp_path), LocalErrorStore(tmp_path))
    files = await events.store_batch([_event(1, "u")])
    assert [f.rows for f in files] == [1]
