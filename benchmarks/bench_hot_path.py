"""Micro-benchmark of the collector's hot path, in one process, without HTTP or a load generator.

    uv run python benchmarks/bench_hot_path.py                 # writes results/hot_path.json
    uv run python benchmarks/bench_hot_path.py --label before --out /tmp/before.json

A shared machine makes wrk figures noisy; CPU time spent per event on a fixed corpus is much
less so. Two measurements, on the side-by-side benchmark's events (``side_by_side.make_event``:
~700-byte track events, uuid ids, varied values):

* ``end_to_end``: a real collector (in-process queue, local Parquet files, metrics on) fed
  through its ASGI ingest front (``FastIngest``) with in-memory ``receive`` / ``send``: each
  request is answered (ring-buffer COMMIT included), then the pipeline is stopped so that every
  event is in Parquet. Reported: process CPU microseconds per event (all threads: the ring
  buffer's writer thread too) and per request, for ``/v1/batch`` of 100 and ``/v1/track``.
* ``stages``: the per-batch steps alone, ``timeit`` best of ``--repeat`` on the same bodies:
  ``parse_body`` (edge checks + split), its number-shape scan (``_suspicious_numbers``),
  envelope -> RawEvents, the adapter, Arrow conversion and Parquet encoding.

Compare runs of one machine, at the same load; the figures are CPU time, not throughput.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import random
import sys
import tempfile
import time
import timeit
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from eventkit_collector.app import Collector, create_app  # noqa: E402
from eventkit_collector.edge import Kind, Limits, _suspicious_numbers, parse_body  # noqa: E402
from eventkit_collector.envelope import Envelope, to_raw_events  # noqa: E402
from eventkit_collector.fastpath import FastIngest  # noqa: E402
from eventkit_collector.settings import Settings  # noqa: E402

from benchmarks.side_by_side import make_event  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results" / "hot_path.json"
BATCH = 100


def corpus(batches: int, singles: int, seed: int = 7) -> tuple[list[bytes], list[bytes]]:
    rng = random.Random(seed)
    dumps = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode
    batch = [
        dumps({"batch": [make_event(rng) for _ in range(BATCH)], "sentAt": "2026-11-30T12:00:00Z"})
        .encode()
        for _ in range(batches)
    ]  # fmt: skip
    single = [dumps(make_event(rng)).encode() for _ in range(singles)]
    return batch, single


async def _feed(app: FastIngest, path: str, bodies: list[bytes]) -> None:
    for body in bodies:
        sent: list[dict[str, Any]] = []

        async def receive(body: bytes = body) -> dict[str, Any]:
            return {"type": "http.request", "body": body, "more_body": False}

        async def send(message: Any, sent: list[dict[str, Any]] = sent) -> None:
            sent.append(message)

        scope = {
            "type": "http",
            "method": "POST",
            "path": path,
            "query_string": b"",
            "client": ("127.0.0.1", 40000),
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"user-agent", b"bench"),
            ],
        }
        await app(scope, receive, send)
        status = sent[0]["status"]
        if status != 200:
            raise RuntimeError(f"{path} answered {status}: {sent[1]['body']!r}")


def end_to_end(path: str, bodies: list[bytes], events: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory(prefix="eventkit-hot-") as tmp:
        settings = Settings(eventkit_data_dir=Path(tmp))
        collector = Collector(settings, metrics_port=0)
        app = FastIngest(create_app(collector=collector), collector)

        async def run() -> tuple[float, float, float]:
            await collector.start()
            try:
                await _feed(app, path, bodies[:20])  # warm up
                wall0, cpu0 = time.perf_counter(), time.process_time()
                await _feed(app, path, bodies)
                answered = time.process_time() - cpu0
            finally:
                await collector.stop()
            return answered, time.process_time() - cpu0, time.perf_counter() - wall0

        answered, cpu, wall = asyncio.run(run())
    return {
        "requests": len(bodies),
        "events": events,
        "cpu_us_per_event": round(cpu / events * 1e6, 2),
        "cpu_us_per_request": round(cpu / len(bodies) * 1e6, 2),
        "cpu_us_per_event_until_answered": round(answered / events * 1e6, 2),
        "wall_s": round(wall, 2),
    }


def _best_us(fn: Callable[[], object], per: int, repeat: int, number: int = 1) -> float:
    best = min(timeit.repeat(fn, number=number, repeat=repeat)) / number
    return round(best / per * 1e6, 3)


def stages(batch: list[bytes], repeat: int) -> dict[str, float]:
    """Microseconds per event of each step, over ``batch`` (bodies of BATCH events)."""
    from eventkit_collector.adapter import CollectorAdapter
    from eventkit_collector.sinks import CountingAdapter
    from eventkit_storage.parquet import events_to_table, table_to_parquet_bytes

    limits = Limits()
    n = len(batch) * BATCH
    parsed = [parse_body(Kind.BATCH, b, limits) for b in batch]
    now = datetime.now(UTC)
    envs = [Envelope(source="batch", stream=None, received_at=now, body=b) for b in batch]

    def raws_of() -> list[Any]:
        out: list[Any] = []
        for i, (env, p) in enumerate(zip(envs, parsed, strict=True)):
            out += to_raw_events(i + 1, env, p, namespace="bench", type_streams={})
        return out

    raws = raws_of()
    adapter = CountingAdapter(CollectorAdapter(), None)
    typed = adapter.adapt_batch(raws)
    table = events_to_table(typed)  # type: ignore[arg-type]  # every event is valid here
    return {
        "parse_body": _best_us(lambda: [parse_body(Kind.BATCH, b, limits) for b in batch], n, repeat),
        "suspicious_numbers": _best_us(lambda: [_suspicious_numbers(b) for b in batch], n, repeat),
        "to_raw_events": _best_us(raws_of, n, repeat),
        "adapt": _best_us(lambda: adapter.adapt_batch(raws), n, repeat),
        "arrow": _best_us(lambda: events_to_table(typed), n, repeat),  # type: ignore[arg-type]
        "parquet": _best_us(lambda: table_to_parquet_bytes(table), n, repeat),
    }  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    ap.add_argument("--batches", type=int, default=200, help="/v1/batch bodies of 100 events")
    ap.add_argument("--singles", type=int, default=4000, help="/v1/track bodies")
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--label", default="")
    ap.add_argument("--out", type=Path, default=RESULTS)
    args = ap.parse_args(argv)
    batch, single = corpus(args.batches, args.singles)
    result: dict[str, Any] = {
        "benchmark": "hot_path",
        "command": "uv run python benchmarks/bench_hot_path.py " + " ".join(argv or sys.argv[1:]),
        "label": args.label,
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
        },
        "event_bytes": round(sum(map(len, single)) / len(single), 1),
        "stages_us_per_event": stages(batch[:50], args.repeat),
        "end_to_end": {
            "batch": end_to_end("/v1/batch", batch, len(batch) * BATCH),
            "single": end_to_end("/v1/track", single, len(single)),
        },
    }
    result["machine"]["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
