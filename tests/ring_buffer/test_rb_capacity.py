"""Bounded capacity: a full buffer fails fast with a 503-ready error and never drops."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import pytest
from eventkit_core import BackpressureError
from eventkit_ring_buffer import EntryTooLargeError, RingBuffer, RingBufferFullError

from tests.ring_buffer._rb_helpers import wait_until


def raises_without_suspending(coro: object) -> BaseException:
    """Run a coroutine's first step: it must raise at once, before any await suspends it."""
    try:
        coro.send(None)  # type: ignore[attr-defined]
    except BaseException as exc:
        return exc
    coro.close()  # type: ignore[attr-defined]
    raise AssertionError("the coroutine suspended instead of failing fast")


async def test_full_by_entries_fails_fast_until_released(tmp_path: Path) -> None:
    async with RingBuffer(tmp_path / "rb", max_entries=3, retry_after=2.5) as rb:
        ids = await rb.append_many([b"a", b"b"])
        await rb.append(b"c")
        exc = raises_without_suspending(rb.append(b"d"))
        assert isinstance(exc, RingBufferFullError)
        assert isinstance(exc, BackpressureError)
        assert exc.code == "ring_buffer_full"
        assert exc.retry_after == 2.5
        assert "3 of 3 entries" in str(exc)
        assert isinstance(raises_without_suspending(rb.append_many([b"d"])), RingBufferFullError)
        # Nothing was written by the failed calls.
        assert [e.payload for e in await rb.read_unpublished()] == [b"a", b"b", b"c"]
        assert await rb.mark_published([ids[0]]) == 1
        assert await rb.append(b"d") == ids[1] + 2
        # append_many is all or nothing.
        with pytest.raises(RingBufferFullError):
            await rb.append_many([b"e", b"f"])
        assert len(await rb.read_unpublished()) == 3


async def test_full_by_bytes(tmp_path: Path) -> None:
    async with RingBuffer(tmp_path / "rb", max_bytes=10) as rb:
        await rb.append(b"123456")
        with pytest.raises(RingBufferFullError, match="6 of 10 bytes"):
            await rb.append(b"12345")
        await rb.append(b"1234")
        with pytest.raises(EntryTooLargeError) as info:
            await rb.append(b"x" * 11)
        assert info.value.code == "payload_too_large"
        assert isinstance(info.value, ValueError)


async def test_concurrent_burst_over_capacity_is_exact(tmp_path: Path) -> None:
    async with RingBuffer(tmp_path / "rb", max_entries=10) as rb:
        results = await asyncio.gather(
            *(rb.append(b"%d" % i) for i in range(25)), return_exceptions=True
        )
        ok = [r for r in results if isinstance(r, int)]
        full = [r for r in results if isinstance(r, RingBufferFullError)]
        assert len(ok) == 10
        assert len(full) == 15
        assert sorted(e.id for e in await rb.read_unpublished()) == sorted(ok)


async def test_capacity_is_restored_from_the_file_on_reopen(tmp_path: Path) -> None:
    path = tmp_path / "rb"
    async with RingBuffer(path, max_entries=2) as rb:
        await rb.append_many([b"a", b"b"])
    async with RingBuffer(path, max_entries=2) as rb:
        with pytest.raises(RingBufferFullError):
            await rb.append(b"c")


async def test_capacity_counts_other_instances_on_the_same_file(tmp_path: Path) -> None:
    """A second writer (another process in real life) filled the file: checked in the writer."""
    path = tmp_path / "rb"
    async with RingBuffer(path, max_entries=3) as one, RingBuffer(path, max_entries=3) as two:
        await one.append(b"a")
        await two.append_many([b"b", b"c"])
        # `one` still believes there is room: its writer finds out inside the transaction.
        with pytest.raises(RingBufferFullError):
            await one.append(b"d")
        assert len(await one.read_unpublished()) == 3


async def test_a_write_lock_held_too_long_is_backpressure(tmp_path: Path) -> None:
    path = tmp_path / "rb"
    async with RingBuffer(path, busy_timeout=0.05, retry_after=3) as rb:
        other = sqlite3.connect(path, isolation_level=None)
        other.execute("BEGIN IMMEDIATE")  # another process holding the write lock
        with pytest.raises(BackpressureError) as info:
            await rb.append(b"x")
        assert info.value.code == "ring_buffer_busy"
        assert info.value.retry_after == 3
        other.execute("COMMIT")
        other.close()
        assert await rb.append(b"x") == 1
        assert (await rb.stats()).unpublished == 1  # the failed call left no trace


async def test_a_full_buffer_learns_of_releases_by_another_process(tmp_path: Path) -> None:
    """Without the periodic refresh, `two` would fail fast forever: it never writes again."""
    path = tmp_path / "rb"
    async with (
        RingBuffer(path, max_entries=2) as one,
        RingBuffer(path, max_entries=2, checkpoint_interval=0.02) as two,
    ):
        ids = await one.append_many([b"a", b"b"])
        with pytest.raises(RingBufferFullError):
            await two.append(b"c")  # refused by its writer, which now knows the file is full
        with pytest.raises(RingBufferFullError):
            await two.append(b"c")  # refused at once, from memory
        await one.mark_published(ids)
        await wait_until(lambda: two._unpublished == 0, what="two's periodic refresh")
        assert await two.append(b"c") == ids[1] + 1
