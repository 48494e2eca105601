"""Under sustained appends and releases the WAL and the database file stay bounded."""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path

import pytest
from eventkit_ring_buffer import RingBuffer

MB = 1 << 20
_MAX_RETAINED = 5000  # released rows (3.5 MB of payload) the producer runs ahead of


def size(path: Path) -> int:
    try:
        return os.stat(path).st_size
    except FileNotFoundError:
        return 0


async def retention_caught_up(rb: RingBuffer, within: float = 30.0) -> None:
    """Wait (with a deadline) while more than _MAX_RETAINED released rows await deletion.

    Deletion runs on the writer's 20 ms timer; on a busy machine that timer may starve while
    this producer still gets CPU, and the file would then grow with rows the buffer has not
    had a chance to delete. Pausing the producer keeps what the test measures (released rows
    get deleted and their pages reused) independent of the scheduler; a buffer that never
    deleted would fail here.
    """
    deadline = time.monotonic() + within
    while (stats := await rb.stats()).size - stats.unpublished > _MAX_RETAINED:
        assert time.monotonic() < deadline, f"released rows not deleted within {within} s"
        await asyncio.sleep(0.005)


@pytest.mark.parametrize("retention", [0.0, 0.05])
async def test_wal_and_file_stay_bounded(tmp_path: Path, retention: float) -> None:
    path = tmp_path / "wal.sqlite"
    wal = Path(f"{path}-wal")
    payload = b"p" * 700
    written = peak_wal = peak_db = 0
    async with RingBuffer(
        path, wal_size_limit=MB, checkpoint_interval=0.02, retention_seconds=retention
    ) as rb:
        after = 0
        for round_ in range(600):
            await rb.append_many([payload] * 100)
            written += 100 * len(payload)
            if round_ % 3 == 2:  # a consumer a little behind the producers
                entries = await rb.read_unpublished(after_id=after, limit=1000)
                after = entries[-1].id
                assert await rb.mark_published_range(entries[0].id, after) == len(entries)
                await retention_caught_up(rb)
            peak_wal = max(peak_wal, size(wal))
            peak_db = max(peak_db, size(path))
        stats = await rb.stats()
    assert written > 40 * MB
    # Auto-checkpoint at half of wal_size_limit, plus one batch; journal_size_limit trims it.
    assert peak_wal < 2 * MB, peak_wal
    assert peak_db < 12 * MB, peak_db
    assert stats.unpublished <= 300
    assert size(wal) == 0  # a clean close checkpoints and removes the WAL
