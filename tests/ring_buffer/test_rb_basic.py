"""Behaviour of one RingBuffer: ids, order, release, reopen, durability, stats, metrics."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from pathlib import Path

import pytest
from eventkit_core import ConfigurationError, EventkitError, StorageError
from eventkit_ring_buffer import Entry, RingBuffer, _writer
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader

from tests.ring_buffer._rb_helpers import read_all, wait_until


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "ring" / "buffer.sqlite"


@pytest.mark.parametrize("durability", ["normal", "full"])
async def test_append_read_release_reopen(path: Path, durability: str) -> None:
    async with RingBuffer(path, durability=durability) as rb:  # type: ignore[arg-type]
        assert rb._writer is not None
        assert rb._writer.pragmas["journal_mode"] == "wal"
        assert rb._writer.pragmas["wal_autocheckpoint"] == (64 << 20) // 2 // 4096
        assert rb._writer.pragmas["synchronous"] == (1 if durability == "normal" else 2)
        first = await rb.append(b"one")
        rest = await rb.append_many([b"two", b"three", b""])
        assert rest == [first + 1, first + 2, first + 3]
        entries = await rb.read_unpublished()
        assert [(e.id, e.payload) for e in entries] == [
            (first, b"one"),
            (first + 1, b"two"),
            (first + 2, b"three"),
            (first + 3, b""),
        ]
        assert all(isinstance(e, Entry) and e.created_at > 0 for e in entries)
        assert [e.id for e in await rb.read_unpublished(after_id=first, limit=2)] == rest[:2]
        assert await rb.mark_published([first, first + 2, first + 2, 999]) == 2
        assert await rb.mark_published([first]) == 0
        instance_id = rb.instance_id
    async with RingBuffer(path, durability=durability) as rb:  # type: ignore[arg-type]
        assert rb.instance_id == instance_id
        assert [e.payload for e in await rb.read_unpublished()] == [b"two", b""]
        assert await rb.mark_published_range(first, first + 3) == 2
        assert await rb.read_unpublished() == []
        # Deleted rows never give their ids back.
        assert await rb.append(b"four") == first + 4
        stats = await rb.stats()
        assert (stats.size, stats.unpublished, stats.bytes, stats.last_id) == (1, 1, 4, first + 4)


async def test_concurrent_appends_share_transactions(path: Path) -> None:
    async with RingBuffer(path) as rb:
        ids = await asyncio.gather(*(rb.append(b"%d" % i) for i in range(500)))
        assert sorted(ids) == list(range(1, 501))
        by_id = {e.id: e.payload for e in await read_all(rb)}
        assert [by_id[i] for i in ids] == [b"%d" % i for i in range(500)]
        # Group commit: far fewer commits (distinct created_at) than entries.
        commits = {e.created_at for e in await read_all(rb)}
        assert len(commits) < 100


async def test_retention_keeps_released_rows_then_deletes_them(path: Path) -> None:
    async with RingBuffer(path, retention_seconds=0.2, checkpoint_interval=0.02) as rb:
        ids = await rb.append_many([b"a", b"b", b"c"])
        assert await rb.mark_published_range(ids[0], ids[1]) == 2
        stats = await rb.stats()
        assert (stats.size, stats.unpublished, stats.bytes) == (3, 1, 1)
        assert [e.payload for e in await rb.read_unpublished()] == [b"c"]
        # Retention runs on the writer thread, and the gauges follow once its counts reach
        # the event loop (after COMMIT): wait for both, not for a number of tries.
        await wait_until(lambda: rb._gauge_values == (1, 1), what="the gauges to follow")
        stats = await rb.stats()
        assert (stats.size, stats.unpublished) == (1, 1)


async def test_metrics(path: Path) -> None:
    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader])
    async with RingBuffer(path, meter_provider=provider) as rb:
        ids = await rb.append_many([b"x"] * 5)
        await rb.append(b"y")
        await rb.mark_published(ids[:2])
        rb.record_published(4)
        rb.record_published(1, result="error")
        data = reader.get_metrics_data()
    assert data is not None
    points: dict[str, list[tuple[dict[str, object], float]]] = {}
    for resource in data.resource_metrics:
        for scope in resource.scope_metrics:
            for metric in scope.metrics:
                assert metric.unit == ""
                points[metric.name] = [
                    (dict(p.attributes or {}), p.value)  # type: ignore[union-attr]
                    for p in metric.data.data_points
                ]
    assert points["eventkit_ringbuffer_written"] == [({}, 6)]
    assert points["eventkit_ringbuffer_marked_published"] == [({}, 2)]
    assert sorted(points["eventkit_ringbuffer_published"], key=str) == [
        ({"result": "error"}, 1),
        ({"result": "ok"}, 4),
    ]
    assert points["eventkit_ringbuffer_size"] == [({}, 4)]
    assert points["eventkit_ringbuffer_unpublished"] == [({}, 4)]


async def test_not_open_and_closed_errors(path: Path) -> None:
    rb = RingBuffer(path)
    with pytest.raises(StorageError, match="not open"):
        await rb.append(b"x")
    with pytest.raises(StorageError, match="not open"):
        _ = rb.instance_id
    await rb.open()
    await rb.open()  # idempotent
    await rb.close()
    await rb.close()
    with pytest.raises(StorageError, match="not open"):
        await rb.read_unpublished()


async def test_cancelled_append_does_not_break_others(path: Path) -> None:
    async with RingBuffer(path) as rb:
        task = asyncio.ensure_future(rb.append(b"cancelled"))
        await asyncio.sleep(0)  # let it reach the queue
        task.cancel()
        assert await rb.append(b"kept") >= 1
        payloads = [e.payload for e in await rb.read_unpublished()]
        # The cancelled write may or may not have committed (at-least-once), the other must.
        assert payloads in ([b"kept"], [b"cancelled", b"kept"])


def test_bad_settings() -> None:
    with pytest.raises(ConfigurationError, match="durability"):
        RingBuffer("x", durability="off")  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="max_entries"):
        RingBuffer("x", max_entries=0)
    with pytest.raises(ValueError, match="checkpoint_interval"):
        RingBuffer("x", checkpoint_interval=0)


async def test_read_limit_must_be_positive(path: Path) -> None:
    async with RingBuffer(path) as rb:
        await rb.append(b"x")
        with pytest.raises(ConfigurationError, match="limit"):
            await rb.read_unpublished(limit=-1)


async def test_not_a_ring_buffer_file(tmp_path: Path) -> None:
    bad = tmp_path / "bad.sqlite"
    bad.write_bytes(b"this is not a database" * 100)
    with pytest.raises(StorageError, match="cannot open") as info:
        await RingBuffer(bad).open()
    assert isinstance(info.value, EventkitError)


async def test_unusable_directory(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("")
    with pytest.raises(StorageError, match="cannot create its directory"):
        await RingBuffer(tmp_path / "file" / "rb.sqlite").open()


async def test_newer_schema_is_refused(path: Path) -> None:
    async with RingBuffer(path):
        pass
    conn = sqlite3.connect(path)
    conn.execute("UPDATE meta SET value = '99' WHERE key = 'schema_version'")
    conn.commit()
    conn.close()
    with pytest.raises(ConfigurationError, match="upgrade"):
        await RingBuffer(path).open()


async def test_a_bad_release_fails_alone(path: Path) -> None:
    async with RingBuffer(path) as rb:
        append = asyncio.ensure_future(rb.append(b"fine"))
        with pytest.raises(TypeError):
            await rb.mark_published([object()])  # type: ignore[list-item]
        assert await append == 1
        assert await rb.mark_published(iter([1])) == 1


async def test_an_unexpected_writer_error_fails_calls_instead_of_hanging(
    path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(self: object) -> None:
        raise RuntimeError("boom")

    monkeypatch.setattr(_writer.Writer, "_maintain", broken)
    async with RingBuffer(path, checkpoint_interval=0.001) as rb:
        # In `normal` durability appends commit inline, so the broken maintenance shows only
        # once the writer's own 1 ms timer got CPU: keep appending until it did (or fail
        # after a deadline), however busy the machine is.
        deadline = time.monotonic() + 30
        result: object = None
        while not isinstance(result, StorageError):
            assert time.monotonic() < deadline, "the broken maintenance never surfaced"
            [result] = await asyncio.gather(rb.append(b"x"), return_exceptions=True)
            if isinstance(result, int):
                await asyncio.sleep(0.001)  # give the writer thread a turn
        assert "writer thread failed: RuntimeError('boom')" in str(result)
        with pytest.raises(StorageError, match="writer thread failed"):
            await rb.append(b"y")
