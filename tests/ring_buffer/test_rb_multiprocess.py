"""Two processes append to the same (new) file at the same time: every id unique and present."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from eventkit_ring_buffer import RingBuffer

from tests.ring_buffer._rb_helpers import integrity, parse_lines, read_all, start_child
from tests.ring_buffer.rb_child import payload

COUNT = 150


# One task per process: mostly inline commits, each process's cached counters invalidated by
# the other's commits (PRAGMA data_version). Eight: mostly group commits by the writers.
@pytest.mark.parametrize("TASKS", [1, 8])
def test_two_processes_append_to_one_file(tmp_path: Path, TASKS: int) -> None:
    path = tmp_path / "shared.sqlite"
    children = [
        start_child(path, "normal", TASKS, COUNT, tag, tmp_path / f"{tag}.log") for tag in "ab"
    ]
    outputs = [child.communicate()[0] for child in children]
    for tag, child in zip("ab", children, strict=True):
        assert child.returncode == 0, (tmp_path / f"{tag}.log").read_text()
    expected: dict[int, bytes] = {}
    for tag, out in zip("ab", outputs, strict=True):
        lines = parse_lines(out)
        assert len(lines) == TASKS * COUNT
        for id_, task, seq in lines:
            assert id_ not in expected, f"id {id_} given twice"
            expected[id_] = payload(tag, task, seq)
        # Within a task (sequential appends), ids grow with seq.
        for task in range(TASKS):
            ids = [i for i, t, _ in sorted(lines, key=lambda x: x[2]) if t == task]
            assert ids == sorted(ids)

    async def check() -> None:
        async with RingBuffer(path) as rb:
            found = {e.id: e.payload for e in await read_all(rb)}
            assert found == expected
            stats = await rb.stats()
            assert stats.unpublished == len(expected) == 2 * TASKS * COUNT
            assert stats.bytes == sum(map(len, expected.values()))

    asyncio.run(check())
    assert integrity(path) == "ok"
