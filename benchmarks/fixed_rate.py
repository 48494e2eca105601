"""A constant-rate HTTP load generator (open loop), for latency at a fixed fraction of the maximum.

    python benchmarks/fixed_rate.py --port 8000 --path /v1/track --bodies bodies.txt \
        --rate 4000 --duration 10 --connections 32

wrk2 is not packaged by Debian; this sends ``--rate`` requests/s spread over ``--connections``
keep-alive connections on a fixed schedule, and measures each latency from the time the request
was *due* (not sent), so a server that falls behind shows it (no coordinated omission). Bodies:
one JSON per line, posted round-robin. Prints one JSON object: requests sent, statuses, achieved
rate, p50 / p99 / max in ms. 127.0.0.1 only.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from pathlib import Path
from typing import Any


async def _read_status(reader: asyncio.StreamReader) -> int:
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    status = int(lines[0].split(b" ", 2)[1])
    for line in lines[1:]:
        if line[:15].lower() == b"content-length:":
            length = int(line[15:].strip())
            if length:
                await reader.readexactly(length)
            break
    return status


async def _connection(
    port: int,
    requests: list[bytes],
    k: int,
    interval: float,
    start: float,
    end: float,
    latencies: list[float],
    statuses: dict[int, int],
) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    n = 0
    try:
        while True:
            due = start + n * interval
            if due >= end:
                return
            delay = due - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            writer.write(requests[(k + n * 31) % len(requests)])
            status = await _read_status(reader)
            latencies.append(time.perf_counter() - due)
            statuses[status] = statuses.get(status, 0) + 1
            n += 1
    finally:
        writer.close()


async def run(
    port: int, path: str, bodies: list[bytes], rate: float, duration: float, connections: int
) -> dict[str, Any]:
    requests = [
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(b)}\r\n\r\n".encode()
        + b
        for b in bodies
    ]
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    interval = connections / rate
    start = time.perf_counter() + 0.2
    end = start + duration
    await asyncio.gather(
        *(
            _connection(
                port,
                requests,
                k,
                interval,
                start + k * interval / connections,
                end,
                latencies,
                statuses,
            )
            for k in range(connections)
        )
    )
    elapsed = time.perf_counter() - start
    lat = sorted(latencies) or [0.0]

    def pct(p: float) -> float:
        return round(lat[min(len(lat) - 1, int(p * len(lat)))] * 1000, 2)

    return {
        "target_rate": rate,
        "achieved_rate": round(len(latencies) / elapsed, 1),
        "requests": len(latencies),
        "statuses": {str(k): v for k, v in sorted(statuses.items())},
        "latency_ms": {"p50": pct(0.5), "p99": pct(0.99), "max": pct(1.0)},
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--path", required=True)
    p.add_argument("--bodies", type=Path, required=True)
    p.add_argument("--rate", type=float, required=True, help="requests per second")
    p.add_argument("--duration", type=float, default=10.0)
    p.add_argument("--connections", type=int, default=32)
    args = p.parse_args(argv)
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    bodies = [line for line in args.bodies.read_bytes().split(b"\n") if line]
    report = asyncio.run(
        run(args.port, args.path, bodies, args.rate, min(args.duration, 120.0), args.connections)
    )
    print(json.dumps(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
