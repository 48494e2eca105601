"""Collector benchmark: the real server (1 and 2 worker processes), loopback load, Parquet out.

    uv run python benchmarks/bench_collector.py                 # both scenarios, 1 and 2 workers
    uv run python benchmarks/bench_collector.py --workers 2 --duration 5

For each worker count: start ``eventkit-collector serve`` on a fresh data dir, send gzipped
``/v1/batch`` requests of 100 events (``benchmarks/loadgen.py``) for ``--duration`` seconds, wait
until every accepted event is a row in a Parquet file, then do the same with single-event
``/v1/track`` requests. Reports events/s accepted (HTTP 200 = durable in the ring buffer) and
end to end (first request to last row in Parquet). Figures are noisy on a shared machine; the load
generator runs on the same cores as the server. Writes ``benchmarks/results/collector.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import pyarrow.parquet as pq

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from benchmarks.loadgen import run_load

RESULTS = Path(__file__).parent / "results" / "collector.json"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def count_rows(root: Path) -> int:
    base = root / "events"
    if not base.exists():
        return 0
    total = 0
    for f in base.rglob("*.parquet"):
        try:
            total += pq.read_metadata(f).num_rows
        except OSError:  # being written (create-only: appears whole, but be safe)
            pass
    return total


def cpu_seconds(pid: int) -> float:
    """CPU time (user + system) of a process and its children that are still running."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0.0
    pids = {pid}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:  # ppid
            pids.add(int(stat.parent.name))
    for p in pids:
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / tick
    return total


def wait_rows(root: Path, expected: int, timeout: float = 180.0) -> float:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if count_rows(root) >= expected:
            return time.monotonic()
        time.sleep(0.1)
    raise RuntimeError(f"only {count_rows(root)} of {expected} rows after {timeout} s")


def start_server(
    data: Path, workers: int, extra_env: dict[str, str] | None = None
) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("EVENTKIT_")}
    env.update({"EVENTKIT_FLUSH_MAX_AGE": "1.0", "EVENTKIT_LOG_LEVEL": "warning"})
    env.update(extra_env or {})
    args = [
        sys.executable,
        "-m",
        "eventkit_collector.cli",
        "serve",
        "--port",
        str(port),
        "--data-dir",
        str(data),
        "--metrics-port",
        str(free_port()),
        "--workers",
        str(workers),
    ]
    proc = subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=sys.stderr)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/ready", timeout=1).status_code == 200:
                time.sleep(1.0 if workers > 1 else 0.2)  # let every worker finish starting
                return proc, port
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    proc.kill()
    raise RuntimeError("server did not become ready")


def scenario(
    url: str, data: Path, mode: str, duration: float, connections: int, before: int, pid: int
) -> dict[str, Any]:
    cpu0 = cpu_seconds(pid)
    start = time.monotonic()
    report = asyncio.run(run_load(url, mode=mode, duration=duration, connections=connections))
    stored_at = wait_rows(data, before + report["events_accepted"])
    report = dict(report)
    e2e = report["events_accepted"] / (stored_at - start)
    report["end_to_end_events_per_s"] = round(e2e, 1)
    report["drain_after_load_s"] = round(stored_at - start - report["elapsed_s"], 2)
    cpu = cpu_seconds(pid) - cpu0
    report["server_cpu_s"] = round(cpu, 2)
    # Throughput per server CPU-second (HTTP to Parquet): steadier than events/s on a busy host.
    report["events_per_server_cpu_s"] = round(report["events_accepted"] / cpu, 1) if cpu else None
    return report


def run(
    workers: int,
    duration: float,
    connections: int,
    modes: list[str],
    extra_env: dict[str, str] | None = None,
) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="eventkit-bench-") as tmp:
        data = Path(tmp) / "data"
        proc, port = start_server(data, workers, extra_env)
        url = f"http://127.0.0.1:{port}"
        out: dict[str, Any] = {"workers": workers}
        try:
            for mode in modes:
                out[mode] = scenario(
                    url, data, mode, duration, connections, count_rows(data), proc.pid
                )
                r = out[mode]
                print(
                    f"workers={workers} {mode:5s}: {r['events_per_s']:>10,.0f} events/s accepted "
                    f"({r['requests_per_s']:,.0f} req/s, p50 {r['latency_ms']['p50']} ms, "
                    f"p99 {r['latency_ms']['p99']} ms), {r['end_to_end_events_per_s']:,.0f} "
                    f"events/s into Parquet, {r['events_per_server_cpu_s']:,.0f} events per server "
                    f"CPU-second; statuses {r['statuses']}",
                    flush=True,
                )
        finally:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(120)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--workers", type=int, nargs="*", default=[1, 2])
    p.add_argument("--duration", type=float, default=10.0, help="seconds per scenario (max 120)")
    p.add_argument("--connections", type=int, default=32)
    p.add_argument("--modes", nargs="*", default=["batch", "track"], choices=["batch", "track"])
    p.add_argument("--no-write", action="store_true", help="do not write the results file")
    p.add_argument(
        "--litestar-only",
        action="store_true",
        help="serve ingest through the Litestar app (EVENTKIT_INGEST_FRONT=false); "
        "results go to collector_litestar_only.json",
    )
    args = p.parse_args(argv)
    extra_env = {"EVENTKIT_INGEST_FRONT": "false"} if args.litestar_only else {}
    results_path = (
        RESULTS.with_name("collector_litestar_only.json") if args.litestar_only else RESULTS
    )
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    results = {
        "benchmark": "collector",
        "command": "uv run python benchmarks/bench_collector.py " + " ".join(argv or sys.argv[1:]),
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
        },
        "ingest_front": not args.litestar_only,
        "runs": [
            run(w, args.duration, args.connections, args.modes, extra_env) for w in args.workers
        ],
    }
    if not args.no_write:
        results_path.parent.mkdir(parents=True, exist_ok=True)
        results_path.write_text(json.dumps(results, indent=2) + "\n")
        print(f"wrote {results_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
