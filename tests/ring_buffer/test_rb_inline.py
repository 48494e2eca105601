"""The inline path: in NORMAL, a lone append commits on the event-loop thread."""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
from pathlib import Path

import pytest
from eventkit_ring_buffer import RingBuffer, RingBufferFullError

from tests.ring_buffer._rb_helpers import (
    integrity,
    parse_lines,
    read_all,
    start_child,
    wait_until,
)
from tests.ring_buffer.rb_child import payload


async def test_a_lone_appender_commits_inline_and_concurrent_ones_still_share(
    tmp_path: Path,
) -> None:
    async with RingBuffer(tmp_path / "rb") as rb:
        writer = rb._writer
        assert writer is not None
        inline = rb._commit_inline
        taken: list[bool] = []

        def spy(*args: object) -> bool:
            taken.append(inline(*args))  # type: ignore[arg-type]
            return taken[-1]

        rb._commit_inline = spy  # type: ignore[method-assign,assignment]
        ids = [await rb.append(b"%d" % i) for i in range(50)]
        assert ids == list(range(1, 51))
        assert all(taken), "a lone append went to the writer thread"
        taken.clear()
        ids = await asyncio.gather(*(rb.append(b"c%d" % i) for i in range(200)))
        assert sorted(ids) == list(range(51, 251))
        assert taken.count(True) <= 2, "concurrent appends committed inline one by one"
        stats = await rb.stats()
        assert (stats.unpublished, stats.last_id) == (250, 250)
        assert rb._gauge_values == (250, 250)


async def test_full_durability_never_commits_inline(tmp_path: Path) -> None:
    async with RingBuffer(tmp_path / "rb", durability="full") as rb:
        assert rb._inline is None
        assert await rb.append(b"x") == 1


async def test_a_held_write_lock_sends_the_append_to_the_writer(tmp_path: Path) -> None:
    path = tmp_path / "rb"
    async with RingBuffer(path, busy_timeout=5) as rb:
        assert await rb.append(b"a") == 1
        other = sqlite3.connect(path, isolation_level=None)
        other.execute("BEGIN IMMEDIATE")  # another process: the loop must not wait for it
        task = asyncio.ensure_future(rb.append(b"b"))
        # Waiting in the writer thread (the loop went on): poll for it, then hold the lock a
        # little longer to see that the append really waits for it.
        await wait_until(lambda: rb._queued == 1, what="the append to reach the writer")
        await asyncio.sleep(0.05)
        assert not task.done()
        assert rb._queued == 1
        other.execute("COMMIT")
        other.close()
        assert await task == 2
        assert [e.payload for e in await read_all(rb)] == [b"a", b"b"]


async def test_cached_counters_see_another_connections_commits(tmp_path: Path) -> None:
    path = tmp_path / "rb"
    async with RingBuffer(path, max_entries=4) as one, RingBuffer(path, max_entries=4) as two:
        assert await one.append(b"a") == 1
        assert await two.append(b"b") == 2  # two's cache is stale: data_version tells it
        assert await one.append(b"c") == 3
        assert await two.append(b"d") == 4  # the file is full now; `one` believes 3 of 4
        with pytest.raises(RingBufferFullError):
            await one.append(b"e")  # refused inside its inline transaction
        await two.mark_published([1])
        with pytest.raises(RingBufferFullError):
            await one.append(b"e")  # refused from memory until its next refresh
        stats = await one.stats()
        assert (stats.unpublished, stats.last_id) == (3, 4)


async def test_inline_commits_keep_the_wal_bounded(tmp_path: Path) -> None:
    path = tmp_path / "rb"
    wal = Path(f"{path}-wal")
    peak = 0
    # A long checkpoint_interval: only the auto-checkpoint (run by the writer) bounds the WAL.
    async with RingBuffer(path, wal_size_limit=1 << 20, checkpoint_interval=60) as rb:
        for i in range(3000):
            await rb.append(b"p" * 700)
            if i % 50 == 0:
                peak = max(peak, _size(wal))
    assert peak < 2 << 20, peak
    assert integrity(path) == "ok"


def _size(path: Path) -> int:
    return path.stat().st_size if path.exists() else 0


def test_sigkill_of_a_lone_inline_appender_loses_nothing(tmp_path: Path) -> None:
    path = tmp_path / "crash.sqlite"
    child = start_child(path, "normal", 1, 0, "s", tmp_path / "child.log")
    assert child.stdout is not None
    out = bytearray()
    try:
        while out.count(b"\n") < 300:
            chunk = os.read(child.stdout.fileno(), 65536)
            assert chunk, (tmp_path / "child.log").read_text()
            out += chunk
        child.send_signal(signal.SIGKILL)
        out += child.stdout.read()
    finally:
        child.kill()
        child.wait()
        child.stdout.close()
    printed = {id_: payload("s", task, seq) for id_, task, seq in parse_lines(bytes(out))}
    assert integrity(path) == "ok"

    async def check() -> None:
        async with RingBuffer(path) as rb:
            found = {e.id: e.payload for e in await read_all(rb)}
            assert all(found.get(id_) == p for id_, p in printed.items())

    asyncio.run(check())
