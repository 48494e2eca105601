"""kill -9 at random moments: every id the child printed (after its append returned) survives."""

from __future__ import annotations

import asyncio
import os
import random
import signal
import time
from pathlib import Path

import pytest
from eventkit_ring_buffer import RingBuffer

from tests.ring_buffer._rb_helpers import integrity, parse_lines, read_all, start_child
from tests.ring_buffer.rb_child import payload

KILLS = 20


def run_and_kill(path: Path, durability: str, tag: str, target: int, log: Path) -> bytes:
    """Start an appending child, kill it once ``target`` ids were printed; all its output."""
    child = start_child(path, durability, tasks=16, count=0, tag=tag, stderr=log)
    assert child.stdout is not None
    out = bytearray()
    try:
        if target == 0:
            # A kill during start-up or open (maybe while the file is being created).
            time.sleep(random.uniform(0.0, 0.4))
        while out.count(b"\n") < target:
            chunk = os.read(child.stdout.fileno(), 65536)
            if not chunk:
                pytest.fail(f"child exited early ({child.wait()}): {log.read_text()}")
            out += chunk
        child.send_signal(signal.SIGKILL)
        # Lines already in the pipe were printed after their append returned: they count too.
        out += child.stdout.read()
    finally:
        child.kill()
        child.wait()
        child.stdout.close()
    assert child.returncode == -signal.SIGKILL
    return bytes(out)


async def check_then_release(
    path: Path, kept: dict[int, bytes], released: set[int], release: bool, kill: int
) -> int:
    """Every kept id present with its payload, no released id back; the last id given."""
    async with RingBuffer(path) as rb:
        found = {e.id: e.payload for e in await read_all(rb)}
        missing = sorted(kept.keys() - found.keys())
        assert not missing, f"acknowledged ids lost after kill {kill}: {missing[:10]}"
        assert all(found[id_] == p for id_, p in kept.items()), "payload changed"
        assert not found.keys() & released, "a released id came back"
        if release:  # every other round: release all, so releases meet crashes too
            await rb.mark_published(found)
            released.update(found)
            kept.clear()
        return (await rb.stats()).last_id


@pytest.mark.slow
def test_sigkill_at_random_moments_loses_nothing_acknowledged(tmp_path: Path) -> None:
    seed = random.randrange(1 << 30)
    rng = random.Random(seed)
    path = tmp_path / "ring" / "crash.sqlite"
    kept: dict[int, bytes] = {}  # printed and not released
    released: set[int] = set()
    highest = 0
    for i in range(KILLS):
        durability = "full" if i % 2 else "normal"
        target = 0 if i % 7 == 3 else rng.randint(1, 1500)
        lines = parse_lines(
            run_and_kill(path, durability, f"k{i}", target, tmp_path / f"child{i}.log")
        )
        assert len(lines) >= target
        printed = {id_: payload(f"k{i}", task, seq) for id_, task, seq in lines}
        assert len(printed) == len(lines), "an id was printed twice"
        assert not printed.keys() & (kept.keys() | released), f"an id was reused (seed {seed})"
        assert all(id_ > highest for id_ in printed), f"ids went backwards (seed {seed})"
        kept.update(printed)

        assert integrity(path) == "ok"

        highest = asyncio.run(check_then_release(path, kept, released, i % 2 == 0, i))
        assert integrity(path) == "ok"
    assert highest > 0
