"""Benchmark: RingBuffer appends per second (entries of 700 bytes), NORMAL and FULL durability.

Run from the repository root::

    uv run python benchmarks/bench_ring_buffer.py [--seconds 1.5] [--repeat 3] [--dir DIR]

Scenarios, per durability: N asyncio tasks each looping ``await rb.append(payload)`` (N = 1, 8,
64); tasks looping ``append_many`` of 100 entries; and ``sync_baseline_tx_per_entry``, a plain
synchronous sqlite3 loop of ``BEGIN IMMEDIATE; INSERT; COMMIT`` per entry on the same file. The
baseline is not a ring buffer: it blocks its thread (an event loop could serve nothing else),
keeps no ``counters`` row (no exact counts, ids reusable) and never yields. The single-appender
``append`` figure is printed as a ratio of it. The median of the repeats is printed and written to ``benchmarks/results/ring_buffer.json``.
The files live in a temporary directory under ``--dir`` (default: the system temp dir; it
must be a real disk for FULL figures to mean anything).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import shutil
import sqlite3
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Literal

from eventkit_ring_buffer import RingBuffer

RESULTS = Path(__file__).parent / "results" / "ring_buffer.json"
PAYLOAD = b"e" * 700
Durability = Literal["normal", "full"]


async def appenders(rb: RingBuffer, tasks: int, batch: int, seconds: float) -> float:
    """Entries per second committed by ``tasks`` tasks looping append (or append_many)."""
    deadline = time.perf_counter() + seconds
    payloads = [PAYLOAD] * batch
    counts = [0] * tasks

    async def loop(k: int) -> None:
        while time.perf_counter() < deadline:
            if batch == 1:
                await rb.append(PAYLOAD)
            else:
                await rb.append_many(payloads)
            counts[k] += batch

    start = time.perf_counter()
    await asyncio.gather(*(loop(k) for k in range(tasks)))
    rate = sum(counts) / (time.perf_counter() - start)
    # Release everything so the next run starts from an empty buffer.
    stats = await rb.stats()
    await rb.mark_published_range(0, stats.last_id)
    return rate


def one_transaction_per_entry(path: Path, durability: Durability, seconds: float) -> float:
    """The baseline: a synchronous loop of one transaction per entry, same file layout."""
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute(f"PRAGMA synchronous = {durability.upper()}")
    n, now = 0, time.time()
    start = time.perf_counter()
    deadline = start + seconds
    while time.perf_counter() < deadline:
        conn.execute("BEGIN IMMEDIATE")
        conn.execute("INSERT INTO entries (payload, created_at) VALUES (?, ?)", (PAYLOAD, now))
        conn.execute("COMMIT")
        n += 1
    rate = n / (time.perf_counter() - start)
    conn.execute("DELETE FROM entries")
    conn.close()
    return rate


SCENARIOS: list[tuple[str, int, int]] = [  # name, tasks, entries per call
    ("append", 1, 1),
    ("append", 8, 1),
    ("append", 64, 1),
    ("append_many_100", 1, 100),
    ("append_many_100", 8, 100),
]


async def bench(durability: Durability, args: argparse.Namespace) -> list[dict[str, Any]]:
    workdir = Path(tempfile.mkdtemp(prefix="bench-rb-", dir=args.dir))
    path = workdir / "ring.sqlite"
    rows: list[dict[str, Any]] = []
    try:
        async with RingBuffer(path, durability=durability, max_entries=1 << 40) as rb:
            for name, tasks, batch in SCENARIOS:
                runs = [await appenders(rb, tasks, batch, args.seconds) for _ in range(args.repeat)]
                rows.append(row(durability, name, tasks, runs))
        runs = [
            one_transaction_per_entry(path, durability, args.seconds) for _ in range(args.repeat)
        ]
        rows.append(row(durability, "sync_baseline_tx_per_entry", 1, runs))
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return rows


def row(durability: str, scenario: str, tasks: int, runs: list[float]) -> dict[str, Any]:
    return {
        "durability": durability,
        "scenario": scenario,
        "concurrency": tasks,
        "entries_per_s": round(statistics.median(runs)),
        "runs": [round(r) for r in runs],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=1.5, help="length of one run")
    parser.add_argument("--repeat", type=int, default=3, help="runs per scenario (median kept)")
    parser.add_argument("--dir", default=None, help="where the temporary files go")
    args = parser.parse_args()
    rows = [r for d in ("normal", "full") for r in asyncio.run(bench(d, args))]  # type: ignore[arg-type]
    print(f"{'durability':<11}{'scenario':<24}{'tasks':>6}{'entries/s':>12}   runs")
    for r in rows:
        print(
            f"{r['durability']:<11}{r['scenario']:<24}{r['concurrency']:>6}"
            f"{r['entries_per_s']:>12,}   {r['runs']}"
        )
    by_key = {(r["durability"], r["scenario"], r["concurrency"]): r for r in rows}
    for d in ("normal", "full"):
        single = by_key[(d, "append", 1)]["entries_per_s"]
        baseline = by_key[(d, "sync_baseline_tx_per_entry", 1)]["entries_per_s"]
        print(f"{d}: one appender / synchronous baseline = {single / baseline:.2f}")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(
        json.dumps(
            {
                "benchmark": "ring_buffer",
                "command": "uv run python benchmarks/bench_ring_buffer.py "
                + " ".join(sys.argv[1:]),
                "payload_bytes": len(PAYLOAD),
                "seconds_per_run": args.seconds,
                "repeat": args.repeat,
                "python": platform.python_version(),
                "sqlite": sqlite3.sqlite_version,
                "platform": platform.platform(),
                "cpus": os.cpu_count(),
                "results": rows,
            },
            indent=2,
        )
        + "\n"
    )
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
