"""Soak: the collector (GCS mode, against a fake-gcs-server of its own) for a long time under
steady load, SIGKILLed and its storage emulator restarted every few minutes.

Samples the collector's RSS, open files, ring-buffer WAL size and the acknowledged throughput;
at the end checks that every acknowledged event is in the bucket, and writes
``benchmarks/results/soak.json`` and ``benchmarks/results/soak.png`` (RSS, WAL size and
throughput over time). On demand, not in CI::

    uv run python -m benchmarks.soak                      # 1 hour
    uv run python -m benchmarks.soak --duration 300       # 5 minutes

The default load is half of the single-worker maximum end-to-end rate measured by
``benchmarks/bench_collector.py`` (``results/collector.json``), spread over ``--clients``
load-generator threads; what they reached is reported (one Python process may not reach it).
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import os
import platform
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx

from tests.e2e.faults import LoadGen, open_files, rss_bytes, stored_ids
from tests.emulators import GcsEmulator, run_gcs

RESULTS = Path(__file__).parent / "results"


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def default_events_per_s() -> float:
    """Half of the measured single-worker end-to-end maximum (batch mode), else 5,000."""
    try:
        runs = json.loads((RESULTS / "collector.json").read_text())["runs"]
        best = max(r["batch"]["end_to_end_events_per_s"] for r in runs if r["workers"] == 1)
        return float(best) / 2
    except (OSError, KeyError, ValueError):
        return 5000.0


class Collector:
    """One ``eventkit-collector serve`` process, restartable on the same port and data dir."""

    def __init__(self, work: Path, gcs: GcsEmulator, bucket: str) -> None:
        self.work = work
        self.port = _free_port()
        self.data = work / "data"
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("EVENTKIT_")}
        self.env.update(
            EVENTKIT_EVENT_STORE="gcs",
            GCP_GCS_BUCKET=bucket,
            GCP_PROJECT_ID=gcs.project,
            STORAGE_EMULATOR_HOST=gcs.endpoint,
            EVENTKIT_FLUSH_MAX_AGE="1",
            PYTHONUNBUFFERED="1",
        )
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        log = (self.work / f"collector-{self.starts}.log").open("wb")
        self.starts += 1
        argv = [sys.executable, "-m", "eventkit_collector.cli", "serve", "--port", str(self.port)]
        argv += ["--data-dir", str(self.data), "--metrics-port", str(_free_port())]
        self.proc = subprocess.Popen(argv, env=self.env, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"collector exited with {self.proc.returncode}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{self.url}/health", timeout=1).status_code == 200:
                    return
            time.sleep(0.1)
        raise RuntimeError("the collector did not start within 120 s")

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait(30)

    def stop(self) -> int:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(120)

    def wal_bytes(self) -> int:
        return sum(p.stat().st_size for p in (self.data / "ring").glob("*.db-wal") if p.exists())


def sample(collector: Collector, gens: list[LoadGen], t0: float) -> dict[str, float]:
    pid = collector.proc.pid if collector.proc is not None else 0
    try:
        rss, files = rss_bytes(pid), open_files(pid)
    except OSError:  # between a kill and the restart
        rss, files = 0, 0
    return {
        "t": round(time.monotonic() - t0, 2),
        "rss_mb": round(rss / 2**20, 1),
        "open_files": files,
        "wal_mb": round(collector.wal_bytes() / 2**20, 2),
        "acked": sum(g.acked_count() for g in gens),
    }


def soak(args: argparse.Namespace) -> dict[str, Any]:
    work = Path(tempfile.mkdtemp(prefix="eventkit-soak-"))
    with run_gcs(work / "gcs") as gcs:
        control = gcs.control
        assert control is not None
        bucket = gcs.create_bucket()
        collector = Collector(work, gcs, bucket)
        collector.start()
        per_client = args.events_per_s / args.clients / args.batch
        gens = [
            LoadGen(lambda: collector.url, batch=args.batch, rate=per_client)
            for _ in range(args.clients)
        ]
        samples: list[dict[str, float]] = []
        events: list[dict[str, float | str]] = []
        t0 = time.monotonic()
        done = threading.Event()

        def faults() -> None:
            """Kills and outages on their schedule, in a thread: sampling never pauses."""
            next_kill, next_outage = args.kill_every, args.outage_every
            while not done.wait(0.2):
                now = time.monotonic() - t0
                if now >= next_kill:
                    collector.kill()
                    collector.start()
                    events.append({"t": round(now, 1), "what": "collector SIGKILL + restart"})
                    next_kill += args.kill_every
                if now >= next_outage:
                    control.stop()
                    done.wait(args.outage_seconds)  # the outage's length
                    control.start()
                    events.append({"t": round(now, 1), "what": "GCS emulator stopped + started"})
                    next_outage += args.outage_every

        for g in gens:
            g.__enter__()
        chaos = threading.Thread(target=faults, name="soak-faults", daemon=True)
        chaos.start()
        try:
            while time.monotonic() - t0 < args.duration:
                samples.append(sample(collector, gens, t0))
                time.sleep(args.sample_every)
        finally:
            done.set()
            chaos.join(180)
            for g in gens:
                g.stop()
        books = [g.snapshot() for g in gens]
        acked = set().union(*(b.acked for b in books))
        root = gcs.root / bucket
        deadline = time.monotonic() + 300
        missing = acked
        while time.monotonic() < deadline:
            missing = acked - set(stored_ids(root))
            if not missing:
                break
            time.sleep(2)
        exit_code = collector.stop()
        stored = stored_ids(root)
    statuses: dict[str, int] = {}
    for b in books:
        for status, n in b.statuses.items():
            statuses[str(status)] = statuses.get(str(status), 0) + n
    elapsed = samples[-1]["t"] if samples else 0.0
    return {
        "benchmark": "soak",
        "command": " ".join(["python -m benchmarks.soak", *sys.argv[1:]]),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "duration_s": args.duration,
        "short_run": args.duration < 3600,
        "target_events_per_s": round(args.events_per_s, 1),
        "reached_events_per_s": round(len(acked) / elapsed, 1) if elapsed else 0.0,
        "acknowledged": len(acked),
        "missing_after_drain": len(missing),
        "stored_rows": sum(stored.values()),
        "duplicate_rows": sum(stored.values()) - len(stored),
        "unanswered_events": sum(b.unanswered_events for b in books),
        "statuses": statuses,
        "collector_exit_code": exit_code,
        "faults": events,
        "samples": samples,
    }


def plot(result: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    s = result["samples"]
    t = [x["t"] / 60 for x in s]
    rate = [0.0] + [
        max(0.0, (b["acked"] - a["acked"]) / max(b["t"] - a["t"], 1e-9))
        for a, b in itertools.pairwise(s)
    ]
    fig, axes = plt.subplots(3, 1, sharex=True, figsize=(9, 7))
    for ax, ys, label in (
        (axes[0], [x["rss_mb"] for x in s], "collector RSS (MB)"),
        (axes[1], [x["wal_mb"] for x in s], "ring-buffer WAL (MB)"),
        (axes[2], rate, "acknowledged events/s"),
    ):
        ax.plot(t, ys)
        ax.set_ylabel(label)
        for fault in result["faults"]:
            ax.axvline(float(fault["t"]) / 60, color="grey", alpha=0.3, linewidth=0.8)
    axes[2].set_xlabel("minutes (grey: collector kill or GCS emulator restart)")
    fig.suptitle(f"eventkit soak, {result['duration_s'] / 60:.0f} min")
    fig.tight_layout()
    fig.savefig(path, dpi=80)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--duration", type=float, default=3600.0, help="seconds (default 3600)")
    p.add_argument("--events-per-s", type=float, default=default_events_per_s())
    p.add_argument("--clients", type=int, default=4, help="load-generator threads")
    p.add_argument("--batch", type=int, default=100, help="events per request")
    p.add_argument("--kill-every", type=float, default=180.0, help="seconds between kills")
    p.add_argument("--outage-every", type=float, default=240.0, help="seconds between outages")
    p.add_argument("--outage-seconds", type=float, default=10.0)
    p.add_argument("--sample-every", type=float, default=2.0)
    p.add_argument("--out", type=Path, default=RESULTS / "soak.json")
    args = p.parse_args(argv)
    result = soak(args)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    plot(result, args.out.with_suffix(".png"))
    summary = {k: v for k, v in result.items() if k != "samples"}
    print(json.dumps(summary, indent=2))
    ok = result["missing_after_drain"] == 0 and result["collector_exit_code"] == 0
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
