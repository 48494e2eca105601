"""Normal clients' latency while 500 connections trickle bytes (slowloris).

    uv run python benchmarks/bench_slow_clients.py
    uv run python benchmarks/bench_slow_clients.py --slow 500 --seconds 10

Starts a real collector with its default timeouts (header 10 s, body 30 s), measures single
``/v1/track`` requests from ``--normal`` keep-alive clients for ``--seconds`` alone (baseline),
then again while ``--slow`` connections each send one byte every 0.2 s (half of them headers,
half a body). Reports p50 / p99 / max and the requests that failed. Goal: p99 under 50 ms
during the trickle. Reported, not asserted. Writes ``benchmarks/results/slow_clients.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from tests.collector.hostile_support import start_server
from tests.collector.slow_clients import Outcome, run_slow_clients

RESULTS = Path(__file__).parent / "results" / "slow_clients.json"
GOAL_P99_MS = 50.0


def summary(out: Outcome) -> dict[str, Any]:
    return {
        "requests": len(out.latencies),
        "statuses": {str(k): v for k, v in sorted(out.statuses.items())},
        "p50_ms": round(out.p(0.50) * 1000, 2),
        "p99_ms": round(out.p(0.99) * 1000, 2),
        "max_ms": round(max(out.latencies, default=0) * 1000, 2),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--slow", type=int, default=500, help="trickling connections")
    parser.add_argument("--normal", type=int, default=4, help="normal clients")
    parser.add_argument("--seconds", type=float, default=8.0, help="length of each phase")
    parser.add_argument("--out", type=Path, default=RESULTS, help="result file")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        server = start_server(Path(tmp), EVENTKIT_WRITE_KEYS="")
        try:
            base = asyncio.run(
                run_slow_clients(server.port, slow=0, normal=args.normal, seconds=args.seconds)
            )
            during = asyncio.run(
                run_slow_clients(
                    server.port, slow=args.slow, normal=args.normal, seconds=args.seconds
                )
            )
        finally:
            server.stop()
    result = {
        "benchmark": "normal single-event requests while connections trickle bytes",
        "command": "uv run python benchmarks/bench_slow_clients.py " + " ".join(sys.argv[1:]),
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "timeouts": {"header_s": 10, "body_s": 30, "keep_alive_s": 5},
        "slow_connections": args.slow,
        "normal_clients": args.normal,
        "seconds_per_phase": args.seconds,
        "goal_p99_ms": GOAL_P99_MS,
        "baseline": summary(base),
        "during_trickle": summary(during),
        "slow_connections_opened": during.slow_opened,
    }
    result["within_goal"] = result["during_trickle"]["p99_ms"] < GOAL_P99_MS
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({k: result[k] for k in ("baseline", "during_trickle", "within_goal")}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
