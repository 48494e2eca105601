"""A small HTTP load generator for the collector (127.0.0.1 only, bounded in count and time).

    uv run python benchmarks/loadgen.py --url http://127.0.0.1:8000 --mode batch --duration 10
    uv run python benchmarks/loadgen.py --mode track --connections 64 --max-requests 100000

Modes: ``batch`` sends gzipped ``/v1/batch`` bodies of ``--batch-size`` events; ``track`` sends
one event per ``/v1/track`` request. Keep-alive connections on raw asyncio streams (an HTTP client
library would be the bottleneck); bodies are built before the clock starts. Prints one JSON
object: requests, events accepted, statuses, requests/s, events/s and latency percentiles.
"""

from __future__ import annotations

import argparse
import asyncio
import gzip
import json
import sys
import time
import uuid
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

LOOPBACK = ("127.0.0.1", "localhost", "::1")


def make_event(i: int, kind: str = "track") -> dict[str, Any]:
    event: dict[str, Any] = {
        "type": kind,
        "messageId": str(uuid.uuid4()),
        "userId": f"user-{i % 5000}",
        "timestamp": "2026-01-01T00:00:00.000Z",
        "context": {
            "library": {"name": "loadgen", "version": "1.0"},
            "page": {"path": "/pricing", "url": "https://example.com/pricing"},
        },
    }
    if kind == "track":
        event["event"] = "Button Clicked"
        event["properties"] = {"button_id": "cta-signup", "value": i % 100, "plan": "pro"}
    return event


def build_requests(
    mode: str, host: str, port: int, batch_size: int, variants: int
) -> list[tuple[bytes, int]]:
    """Pre-built HTTP requests (bytes) and the number of events each carries."""
    out: list[tuple[bytes, int]] = []
    n = 0
    for _ in range(variants):
        if mode == "batch":
            items = [make_event(n + j) for j in range(batch_size)]
            n += batch_size
            body = gzip.compress(
                json.dumps(
                    {"batch": items, "sentAt": "2026-01-01T00:00:01.000Z"},
                    separators=(",", ":"),
                ).encode(),
                compresslevel=6,
            )
            head = (
                f"POST /v1/batch HTTP/1.1\r\nHost: {host}:{port}\r\n"
                f"Content-Type: application/json\r\nContent-Encoding: gzip\r\n"
                f"Content-Length: {len(body)}\r\n\r\n"
            )
            out.append((head.encode() + body, batch_size))
        else:
            body = json.dumps(make_event(n), separators=(",", ":")).encode()
            n += 1
            head = (
                f"POST /v1/track HTTP/1.1\r\nHost: {host}:{port}\r\n"
                f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
            )
            out.append((head.encode() + body, 1))
    return out


@dataclass
class Result:
    requests: int = 0
    events: int = 0
    statuses: dict[int, int] = field(default_factory=dict)
    latencies: list[float] = field(default_factory=list)
    errors: int = 0


async def _read_response(reader: asyncio.StreamReader) -> int:
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    status = int(lines[0].split(b" ", 2)[1])
    length = 0
    for line in lines[1:]:
        if line[:15].lower() == b"content-length:":
            length = int(line[15:].strip())
            break
    if length:
        await reader.readexactly(length)
    return status


async def _connection(
    host: str,
    port: int,
    requests: list[tuple[bytes, int]],
    offset: int,
    deadline: float,
    budget: list[int],
    result: Result,
) -> None:
    reader, writer = await asyncio.open_connection(host, port)
    i = offset
    try:
        while time.monotonic() < deadline and budget[0] > 0:
            budget[0] -= 1
            data, events = requests[i % len(requests)]
            i += 1
            start = time.perf_counter()
            writer.write(data)
            try:
                status = await _read_response(reader)
            except (asyncio.IncompleteReadError, ConnectionError):
                result.errors += 1
                writer.close()
                reader, writer = await asyncio.open_connection(host, port)
                continue
            result.latencies.append(time.perf_counter() - start)
            result.requests += 1
            result.statuses[status] = result.statuses.get(status, 0) + 1
            if status == 200:
                result.events += events
    finally:
        writer.close()


async def run_load(
    url: str,
    *,
    mode: str = "batch",
    connections: int = 32,
    duration: float = 10.0,
    max_requests: int = 1_000_000,
    batch_size: int = 100,
    variants: int = 200,
) -> dict[str, Any]:
    parts = urlsplit(url)
    host = parts.hostname or "127.0.0.1"
    if host not in LOOPBACK:
        raise SystemExit(f"loadgen only targets this machine (127.0.0.1), not {host}")
    port = parts.port or 80
    duration = min(duration, 120.0)
    requests = build_requests(mode, host, port, batch_size, variants)
    result = Result()
    budget = [max_requests]
    start = time.monotonic()
    deadline = start + duration
    await asyncio.gather(
        *(
            _connection(host, port, requests, k * 7, deadline, budget, result)
            for k in range(connections)
        )
    )
    elapsed = time.monotonic() - start
    lat = sorted(result.latencies) or [0.0]

    def pct(p: float) -> float:
        return round(lat[min(len(lat) - 1, int(p * len(lat)))] * 1000, 2)

    return {
        "mode": mode,
        "url": url,
        "connections": connections,
        "batch_size": batch_size if mode == "batch" else 1,
        "elapsed_s": round(elapsed, 3),
        "requests": result.requests,
        "events_accepted": result.events,
        "statuses": {str(k): v for k, v in sorted(result.statuses.items())},
        "connection_errors": result.errors,
        "requests_per_s": round(result.requests / elapsed, 1),
        "events_per_s": round(result.events / elapsed, 1),
        "latency_ms": {"p50": pct(0.5), "p99": pct(0.99), "max": pct(1.0)},
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--url", default="http://127.0.0.1:8000")
    p.add_argument("--mode", choices=["batch", "track"], default="batch")
    p.add_argument("--connections", type=int, default=32)
    p.add_argument("--duration", type=float, default=10.0, help="seconds (at most 120)")
    p.add_argument("--max-requests", type=int, default=1_000_000)
    p.add_argument("--batch-size", type=int, default=100)
    args = p.parse_args(argv)
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    report = asyncio.run(
        run_load(
            args.url,
            mode=args.mode,
            connections=args.connections,
            duration=args.duration,
            max_requests=args.max_requests,
            batch_size=args.batch_size,
        )
    )
    json.dump(report, sys.stdout, indent=2)
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
