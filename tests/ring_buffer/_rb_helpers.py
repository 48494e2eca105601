"""Helpers shared by the ring-buffer tests."""

from __future__ import annotations

import asyncio
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from eventkit_ring_buffer import Entry, RingBuffer

CHILD = Path(__file__).with_name("rb_child.py")


async def wait_until(condition: Callable[[], bool], within: float = 30.0, what: str = "") -> None:
    """Poll ``condition`` until it holds; fail after ``within`` seconds (a deadline, never a
    count of tries: on a busy machine the writer thread may get no CPU for a while).
    """
    deadline = time.monotonic() + within
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {within} s waiting for {what or condition}")
        await asyncio.sleep(0.005)


async def read_all(rb: RingBuffer) -> list[Entry]:
    """Every unreleased entry, paging with ``after_id``."""
    entries: list[Entry] = []
    while True:
        page = await rb.read_unpublished(after_id=entries[-1].id if entries else 0, limit=500)
        if not page:
            return entries
        entries.extend(page)


def integrity(path: Path) -> str:
    conn = sqlite3.connect(path)
    try:
        return "\n".join(str(row[0]) for row in conn.execute("PRAGMA integrity_check"))
    finally:
        conn.close()


def start_child(
    path: Path, durability: str, tasks: int, count: int, tag: str, stderr: Path
) -> subprocess.Popen[bytes]:
    with stderr.open("wb") as err:
        return subprocess.Popen(
            [sys.executable, str(CHILD), str(path), durability, str(tasks), str(count), tag],
            stdout=subprocess.PIPE,
            stderr=err,
        )


def parse_lines(data: bytes) -> list[tuple[int, int, int]]:
    """(id, task, seq) of every complete line (a kill can cut the last one)."""
    lines = data.split(b"\n")[:-1]
    out = []
    for line in lines:
        i, task, seq = line.split()
        out.append((int(i), int(task), int(seq)))
    return out
