"""eventkit beside the original design (the baseline) and the ceilings, in one run, one core each.

    uv run python benchmarks/side_by_side.py                 # 10 s per scenario (about 8 minutes)
    uv run python benchmarks/side_by_side.py --quick         # 3 s per scenario, a smoke run
    uv run python benchmarks/side_by_side.py --duration 5 --only eventkit baseline

Needs ``wrk`` and ``taskset`` (Debian: ``apt-get install wrk util-linux``); benchmarks are not
tests, so CI does not install wrk. The baseline (``benchmarks/baseline/app.py``: FastAPI +
Pydantic v2 + uvicorn, SQLite WAL, Parquet) runs from a cached venv built on first use
(``benchmarks/baseline/venv.py``).

Every server runs pinned to core 0 (``taskset -c 0`` on the whole process: all its threads),
wrk (one thread) and the constant-rate generator (``benchmarks/fixed_rate.py``) on core 1;
32 connections; plain JSON; realistic ~700-byte track events with varied ids and values,
pre-generated and posted round-robin (``benchmarks/post_bodies.lua``). Per server:

* ``batch``: ``/v1/batch`` of 100 events at full speed: events/s acknowledged (HTTP 200) and in
  Parquet (the rows counted once the flush wrote them), share of 503s.
* ``single``: ``/v1/track`` at full speed: requests/s.
* ``batch_at_half`` / ``single_at_half``: constant rate at 50% of the maximum just measured:
  p50 / p99 from the time each request was due.
* ``overload``: ``/v1/batch`` with 2x the connections: accepted events/s and RSS over time.
* Parquet bytes per event: the bytes of the files the run wrote over their rows.

Then the ceilings on the same core (``benchmarks/ceilings.py``: hello world for single
requests, decode-only for batch events), eventkit with 2 workers (both cores, wrk still on
core 1), event -> queryable latency (collector + ``eventkit-loader run`` until the event is
visible in DuckDB) and Pub/Sub mode end to end against the emulator. Prints a table with
ratios; writes ``benchmarks/results/side_by_side.json``. On a shared machine absolute figures
are noisy: compare the ratios of one run.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import platform
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pyarrow.parquet as pq

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from benchmarks.baseline.venv import baseline_python  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results" / "side_by_side.json"
LUA = ROOT / "benchmarks" / "post_bodies.lua"
SERVER_CORE = "0"
LOAD_CORE = "1"
BATCH_SIZE = 100

# --------------------------------------------------------------------------------- the events

_NAMES = [
    "Product Viewed", "Product Added", "Checkout Started", "Order Completed", "Signed Up",
    "Button Clicked", "Video Played", "Search Performed", "Coupon Applied", "Plan Upgraded",
]  # fmt: skip
_PAGES = ["/", "/pricing", "/docs/getting-started", "/blog/launch", "/checkout", "/account"]
_CATEGORIES = ["books", "garden", "electronics", "toys", "kitchen", "outdoor", "music"]
_UA = (
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/126.0.{}.{} Safari/537.36"
)


def make_event(rng: random.Random) -> dict[str, Any]:
    """One realistic Segment track event, about 700 bytes of JSON, ids and values varied."""
    page = rng.choice(_PAGES)
    ms = rng.randrange(86_400_000)
    ts = f"2026-11-{rng.randrange(1, 29):02d}T{ms // 3_600_000:02d}:{ms // 60_000 % 60:02d}:"
    ts += f"{ms // 1000 % 60:02d}.{ms % 1000:03d}Z"
    event: dict[str, Any] = {
        "type": "track",
        "event": rng.choice(_NAMES),
        "messageId": str(uuid.UUID(int=rng.getrandbits(128), version=4)),
        "anonymousId": str(uuid.UUID(int=rng.getrandbits(128), version=4)),
        "timestamp": ts,
        "properties": {
            "product_id": f"sku-{rng.randrange(1_000_000):07d}",
            "category": rng.choice(_CATEGORIES),
            "price": round(rng.uniform(1, 500), 2),
            "quantity": rng.randrange(1, 10),
            "currency": rng.choice(["USD", "EUR", "GBP"]),
            "coupon": rng.choice([None, "WINTER10", "FREESHIP"]),
            "position": rng.randrange(50),
        },
        "context": {
            "library": {"name": "analytics.js", "version": "5.2.1"},
            "page": {
                "path": page,
                "url": f"https://shop.example.com{page}?utm_source=news&v={rng.randrange(999)}",
                "referrer": rng.choice(["https://www.example.org/", "", "https://news.example/"]),
                "title": f"Example shop - {page.strip('/') or 'home'}",
            },
            "userAgent": _UA.format(rng.randrange(9999), rng.randrange(999)),
            "ip": f"203.0.{rng.randrange(256)}.{rng.randrange(256)}",
            "locale": rng.choice(["en-US", "de-DE", "fr-FR"]),
            "timezone": rng.choice(["Europe/Berlin", "America/New_York", "Asia/Tokyo"]),
        },
    }
    if rng.random() < 0.7:
        event["userId"] = f"user-{rng.randrange(200_000)}"
    return event


def write_bodies(directory: Path, seed: int = 7) -> dict[str, Path]:
    """Bodies files (one JSON per line): 200 batches of 100 events, 4000 single events."""
    rng = random.Random(seed)
    dumps = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode
    batch = directory / "batch.txt"
    single = directory / "single.txt"
    with batch.open("w") as f:
        for _ in range(200):
            items = [make_event(rng) for _ in range(BATCH_SIZE)]
            f.write(dumps({"batch": items, "sentAt": "2026-11-30T12:00:00.000Z"}) + "\n")
    with single.open("w") as f:
        for _ in range(4000):
            f.write(dumps(make_event(rng)) + "\n")
    return {"batch": batch, "single": single}


# ------------------------------------------------------------------------------- processes


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def rss_mb(pid: int) -> float:
    """RSS of a process and its children (a supervisor's workers), in MB."""
    pids = [pid]
    try:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
        pids += [int(c) for c in children]
    except OSError:
        pass
    total = 0
    for p in pids:
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except OSError:
            pass
    return round(total / 1024, 1)


class Server:
    """A server process on a free port, pinned with taskset, stopped with SIGTERM."""

    def __init__(
        self, name: str, argv: list[str], port: int, env: dict[str, str], data: Path, cores: str
    ) -> None:
        self.name, self.port, self.data = name, port, data
        self.metrics_url: str | None = None
        pinned = ["taskset", "-c", cores, *argv] if cores else argv
        self.proc = subprocess.Popen(
            pinned, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, cwd=ROOT
        )
        self._stderr: list[bytes] = []
        threading.Thread(target=self._drain, daemon=True).start()
        self._wait_ready()

    def _drain(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self._stderr = ([*self._stderr, line])[-30:]

    def _wait_ready(self, timeout: float = 90.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited: {b''.join(self._stderr).decode()}")
            try:
                r = httpx.get(f"http://127.0.0.1:{self.port}/health", timeout=1)
                if r.status_code < 500:
                    time.sleep(0.5)
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"{self.name} did not become ready")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(120)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def eventkit_server(
    data: Path, workers: int = 1, cores: str = SERVER_CORE, env: dict[str, str] | None = None
) -> Server:
    port = free_port()
    full = {k: v for k, v in os.environ.items() if not k.startswith("EVENTKIT_")}
    full.update({"EVENTKIT_FLUSH_MAX_AGE": "1.0", "EVENTKIT_LOG_LEVEL": "warning"})
    full.update(env or {})
    argv = [sys.executable, "-m", "eventkit_collector.cli", "serve", "--port", str(port)]
    metrics = free_port()
    argv += ["--data-dir", str(data), "--metrics-port", str(metrics)]
    argv += ["--workers", str(workers)]
    server = Server(f"eventkit ({workers} worker)", argv, port, full, data, cores)
    server.metrics_url = f"http://127.0.0.1:{metrics}/metrics"
    return server


def uvicorn_argv(python: str, app: str, port: int, app_dir: Path | None = None) -> list[str]:
    argv = [python, "-m", "uvicorn", app, "--port", str(port), "--loop", "uvloop"]
    argv += ["--http", "httptools", "--log-level", "warning", "--no-access-log"]
    argv += ["--backlog", "2048"]
    if app_dir is not None:
        argv += ["--app-dir", str(app_dir)]
    return argv


def baseline_server(data: Path) -> Server:
    port = free_port()
    env = {**os.environ, "BASELINE_DATA_DIR": str(data)}
    argv = uvicorn_argv(str(baseline_python()), "app:app", port, ROOT / "benchmarks" / "baseline")
    return Server("baseline", argv, port, env, data, SERVER_CORE)


def ceiling_server(app: str) -> Server:
    port = free_port()
    argv = [*uvicorn_argv(sys.executable, f"benchmarks.ceilings:{app}", port), "--lifespan", "off"]
    return Server(f"ceiling {app}", argv, port, dict(os.environ), Path("."), SERVER_CORE)


# ------------------------------------------------------------------------------------ load

_RESULT = re.compile(rb"RESULT (\d+) (\d+) (\d+) (\d+) (\d+) (\d+) (\d+) (\d+)")


def wrk(port: int, path: str, bodies: Path, duration: float, connections: int) -> dict[str, Any]:
    """Closed-loop load at full speed: one wrk thread on the load core."""
    argv = ["taskset", "-c", LOAD_CORE, "wrk", "-t1", f"-c{connections}", f"-d{duration:.0f}s"]
    argv += ["--timeout", "10s", "-s", str(LUA), f"http://127.0.0.1:{port}", "--", str(bodies)]
    argv += [path]
    out = subprocess.run(argv, capture_output=True, check=True, timeout=duration + 60).stdout
    m = _RESULT.search(out)
    if m is None:
        raise RuntimeError(f"wrk printed no result: {out.decode()}")
    ok, busy, other, requests, micros, p50, p99, errors = (int(x) for x in m.groups())
    seconds = micros / 1e6
    return {
        "connections": connections,
        "seconds": round(seconds, 2),
        "requests": requests,
        "statuses": {"200": ok, "503": busy, "other": other},
        "socket_errors": errors,
        "requests_per_s": round(requests / seconds, 1),
        "ok_per_s": round(ok / seconds, 1),
        "share_503": round(busy / requests, 3) if requests else 0.0,
        "latency_ms": {"p50": round(p50 / 1000, 2), "p99": round(p99 / 1000, 2)},
    }


def fixed_rate(
    port: int, path: str, bodies: Path, rate: float, duration: float, connections: int = 32
) -> dict[str, Any]:
    argv = ["taskset", "-c", LOAD_CORE, sys.executable, str(ROOT / "benchmarks" / "fixed_rate.py")]
    argv += ["--port", str(port), "--path", path, "--bodies", str(bodies), "--rate", f"{rate:.1f}"]
    argv += ["--duration", str(duration), "--connections", str(connections)]
    out = subprocess.run(argv, capture_output=True, check=True, timeout=duration + 60).stdout
    report: dict[str, Any] = json.loads(out)
    return report


# -------------------------------------------------------------------------------- storage


def parquet_files(data: Path) -> list[Path]:
    base = data / "events"
    return sorted(base.rglob("*.parquet")) if base.exists() else []


def count_rows(data: Path) -> int:
    total = 0
    for f in parquet_files(data):
        if f.name.startswith("."):
            continue
        try:
            total += pq.read_metadata(f).num_rows
        except OSError:
            pass
    return total


def parquet_bytes_per_event(data: Path) -> float | None:
    files = [f for f in parquet_files(data) if not f.name.startswith(".")]
    rows = count_rows(data)
    return round(sum(f.stat().st_size for f in files) / rows, 1) if rows else None


def settle_rows(data: Path, at_least: int, timeout: float = 180.0) -> tuple[int, float]:
    """Rows once at least ``at_least`` are stored and the count stopped moving; (rows, when)."""
    deadline = time.monotonic() + timeout
    last, last_change = -1, time.monotonic()
    reached: float | None = None
    while time.monotonic() < deadline:
        rows = count_rows(data)
        now = time.monotonic()
        if rows != last:
            last, last_change = rows, now
        if rows >= at_least and reached is None:
            reached = now
        if reached is not None and now - last_change > 2.5:
            return rows, reached
        time.sleep(0.1)
    return last, reached or time.monotonic()


@contextmanager
def sampling(fn: Callable[[], Any], interval: float = 0.5) -> Iterator[list[Any]]:
    """Call ``fn`` every ``interval`` seconds in a thread while the block runs."""
    samples: list[Any] = []
    stop = threading.Event()

    def loop() -> None:
        t0 = time.monotonic()
        while not stop.wait(interval):
            samples.append([round(time.monotonic() - t0, 1), fn()])

    thread = threading.Thread(target=loop, daemon=True)
    thread.start()
    try:
        yield samples
    finally:
        stop.set()
        thread.join()


def received_total(metrics_url: str | None) -> float | None:
    if metrics_url is None:
        return None
    try:
        text = httpx.get(metrics_url, timeout=1).text
    except httpx.HTTPError:
        return None
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("eventkit_events_received") and not line.startswith("#")
    )


# ------------------------------------------------------------------------------- scenarios


def batch_max(server: Server, bodies: Path, duration: float, connections: int) -> dict[str, Any]:
    before = count_rows(server.data)
    start = time.monotonic()
    r = wrk(server.port, "/v1/batch", bodies, duration, connections)
    acked = r["statuses"]["200"] * BATCH_SIZE
    rows, stored_at = settle_rows(server.data, before + acked)
    r["events_acked_per_s"] = round(acked / r["seconds"], 1)
    r["events_in_parquet"] = rows - before
    r["events_in_parquet_per_s"] = round((rows - before) / (stored_at - start), 1)
    r["parquet_rows_match_acked"] = rows - before >= acked
    return r


def single_max(server: Server, bodies: Path, duration: float, connections: int) -> dict[str, Any]:
    return wrk(server.port, "/v1/track", bodies, duration, connections)


def overload(server: Server, bodies: Path, duration: float, connections: int) -> dict[str, Any]:
    pid = server.proc.pid
    with (
        sampling(lambda: rss_mb(pid)) as rss,
        sampling(lambda: received_total(server.metrics_url), 1.0) as received,
    ):
        r = wrk(server.port, "/v1/batch", bodies, duration, connections)
    r["events_acked_per_s"] = round(r["statuses"]["200"] * BATCH_SIZE / r["seconds"], 1)
    r["rss_mb_over_time"] = rss
    r["rss_mb_max"] = max((v for _t, v in rss), default=None)
    if received and received[0][1] is not None:
        r["accepted_events_per_s_over_time"] = [
            [t1, round(b - a)] for (_t0, a), (t1, b) in itertools.pairwise(received)
        ]
    settle_rows(server.data, 0, timeout=120)
    return r


def run_server(
    make: Callable[[], Server], bodies: dict[str, Path], duration: float, connections: int
) -> dict[str, Any]:
    server = make()
    out: dict[str, Any] = {"server": server.name}
    try:
        out["rss_mb_idle"] = rss_mb(server.proc.pid)
        out["batch"] = b = batch_max(server, bodies["batch"], duration, connections)
        say(server.name, "batch", f"{b['events_acked_per_s']:,.0f} events/s acked, "
            f"{b['events_in_parquet_per_s']:,.0f} in Parquet, 503s {b['share_503']:.0%}")  # fmt: skip
        out["single"] = s = single_max(server, bodies["single"], duration, connections)
        say(server.name, "single", f"{s['ok_per_s']:,.0f} req/s ok, 503s {s['share_503']:.0%}")
        half_batch = max(1.0, b["ok_per_s"] / 2)
        out["batch_at_half"] = h = fixed_rate(
            server.port, "/v1/batch", bodies["batch"], half_batch, duration
        )
        say(server.name, "batch@50%", f"{h['achieved_rate']} req/s p50 {h['latency_ms']}")
        half_single = max(1.0, s["ok_per_s"] / 2)
        out["single_at_half"] = h = fixed_rate(
            server.port, "/v1/track", bodies["single"], half_single, duration
        )
        say(server.name, "single@50%", f"{h['achieved_rate']} req/s {h['latency_ms']}")
        out["overload"] = o = overload(server, bodies["batch"], duration, 2 * connections)
        say(server.name, "overload", f"{o['events_acked_per_s']:,.0f} events/s acked, "
            f"503s {o['share_503']:.0%}, RSS max {o['rss_mb_max']} MB")  # fmt: skip
        out["rss_mb_after"] = rss_mb(server.proc.pid)
    finally:
        server.stop()
    out["parquet_bytes_per_event"] = parquet_bytes_per_event(server.data)
    return out


def run_ceilings(bodies: dict[str, Path], duration: float, connections: int) -> dict[str, Any]:
    out: dict[str, Any] = {}
    server = ceiling_server("hello")
    try:
        out["hello_single"] = r = single_max(server, bodies["single"], duration, connections)
        say("ceiling", "hello world", f"{r['ok_per_s']:,.0f} req/s")
    finally:
        server.stop()
    server = ceiling_server("decode_batch")
    try:
        r = wrk(server.port, "/v1/batch", bodies["batch"], duration, connections)
        r["events_per_s"] = round(r["ok_per_s"] * BATCH_SIZE, 1)
        out["decode_batch"] = r
        say("ceiling", "decode batch", f"{r['events_per_s']:,.0f} events/s")
    finally:
        server.stop()
    return out


def run_two_workers(
    tmp: Path, bodies: dict[str, Path], duration: float, connections: int
) -> dict[str, Any]:
    server = eventkit_server(tmp / "eventkit-2w", workers=2, cores="")
    try:
        b = batch_max(server, bodies["batch"], duration, connections)
        s = single_max(server, bodies["single"], duration, connections)
    finally:
        server.stop()
    say("eventkit 2 workers", "batch/single", f"{b['events_acked_per_s']:,.0f} events/s, "
        f"{s['ok_per_s']:,.0f} req/s")  # fmt: skip
    return {"cores": "both (wrk shares core 1)", "batch": b, "single": s}


def queryable_latency(tmp: Path, samples: int = 5) -> dict[str, Any]:
    """POST one event, poll DuckDB until its row is visible; collector + eventkit-loader run."""
    from eventkit_loader import backends
    from eventkit_loader.settings import LoaderSettings

    data = tmp / "eventkit-e2e"
    server = eventkit_server(data, cores="")
    env = {k: v for k, v in os.environ.items() if not k.startswith("EVENTKIT_")}
    env.update({"EVENTKIT_DATA_DIR": str(data), "EVENTKIT_LOG_LEVEL": "warning"})
    loader_argv = [sys.executable, "-m", "eventkit_loader.cli", "run", "--interval", "1"]
    loader = subprocess.Popen(
        [*loader_argv, "--no-metrics"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    warehouse = backends.warehouse(LoaderSettings.model_validate({"EVENTKIT_DATA_DIR": str(data)}))
    found: list[float] = []
    try:
        for i in range(samples):
            mid = f"e2e-{uuid.uuid4()}"
            t0 = time.monotonic()
            event = {"userId": f"e2e-{i}", "event": "Latency Probe", "messageId": mid}
            httpx.post(f"http://127.0.0.1:{server.port}/v1/track", json=event).raise_for_status()
            deadline = t0 + 120
            while time.monotonic() < deadline:
                try:
                    _cols, rows = warehouse.query(
                        "SELECT count(*) FROM raw_events WHERE message_id = ?", [mid]
                    )
                    if rows and rows[0][0]:
                        found.append(round(time.monotonic() - t0, 2))
                        break
                except Exception:  # the table does not exist before the first pass
                    pass
                time.sleep(0.1)
    finally:
        loader.send_signal(signal.SIGTERM)
        loader.wait(60)
        server.stop()
    found.sort()
    return {
        "settings": "EVENTKIT_FLUSH_MAX_AGE=1.0, eventkit-loader run --interval 1",
        "seconds": found,
        "median_s": found[len(found) // 2] if found else None,
        "visible": f"{len(found)} of {samples}",
    }


def pubsub_mode(tmp: Path, bodies: dict[str, Path], duration: float) -> dict[str, Any]:
    from tests.emulators.pubsub import run_pubsub

    with run_pubsub(tmp / "pubsub-emulator") as emulator:
        env = {
            "EVENTKIT_QUEUE_MODE": "pubsub",
            "PUBSUB_EMULATOR_HOST": emulator.host,
            "GCP_PROJECT_ID": emulator.project,
        }
        server = eventkit_server(tmp / "eventkit-pubsub", env=env)
        try:
            b = batch_max(server, bodies["batch"], duration, 32)
        finally:
            server.stop()
    say("eventkit pubsub", "batch", f"{b['events_acked_per_s']:,.0f} events/s acked, "
        f"{b['events_in_parquet_per_s']:,.0f} in Parquet")  # fmt: skip
    return {"note": "collector on core 0; the emulator (Java) unpinned", "batch": b}


def say(who: str, what: str, text: str) -> None:
    print(f"  {who:22s} {what:12s} {text}", flush=True)


# --------------------------------------------------------------------------------- summary


def ratio(a: float | None, b: float | None) -> float | None:
    return round(a / b, 2) if a and b else None


def summarize(results: dict[str, Any]) -> dict[str, Any]:
    ek, bl, ce = results.get("eventkit"), results.get("baseline"), results.get("ceilings", {})
    if ek is None:
        return {}
    hello = ce.get("hello_single", {}).get("ok_per_s")
    decode = ce.get("decode_batch", {}).get("events_per_s")
    batch, single = ek["batch"]["events_acked_per_s"], ek["single"]["ok_per_s"]
    rss = [v for _t, v in ek["overload"]["rss_mb_over_time"]]
    half = [ek["batch_at_half"], ek["single_at_half"]]
    s: dict[str, Any] = {
        "batch_vs_baseline": ratio(batch, bl and bl["batch"]["events_acked_per_s"]),
        "batch_parquet_vs_baseline": ratio(
            ek["batch"]["events_in_parquet_per_s"], bl and bl["batch"]["events_in_parquet_per_s"]
        ),
        "single_vs_baseline": ratio(single, bl and bl["single"]["ok_per_s"]),
        "single_of_hello_ceiling": ratio(single, hello),
        "batch_of_decode_ceiling": ratio(batch, decode),
        "batch_503_share_at_max": ek["batch"]["share_503"],
        "p99_ms_at_half": max(h["latency_ms"]["p99"] for h in half),
        "503_at_half": sum(int(h["statuses"].get("503", 0)) for h in half),
        "overload_acked_vs_max": ratio(ek["overload"]["events_acked_per_s"], batch),
        "overload_rss_mb_max": max(rss, default=None),
        # Peak of the second half over the peak of the first: one sample caught between two
        # flushes (a dip) must not read as growth.
        "overload_rss_growth_mb": (
            round(max(rss[len(rss) // 2 :]) - max(rss[: len(rss) // 2]), 1)
            if len(rss) > 1
            else None
        ),
    }
    s["targets"] = {
        "batch >= 9x baseline": (s["batch_vs_baseline"] or 0) >= 9,
        "no 503 at the batch maximum": s["batch_503_share_at_max"] == 0,
        "single >= 4x baseline": (s["single_vs_baseline"] or 0) >= 4,
        "single >= 60% of hello world": (s["single_of_hello_ceiling"] or 0) >= 0.6,
        "p99 <= 20 ms at 50%": s["p99_ms_at_half"] <= 20,
        "RSS <= 300 MB under overload": (s["overload_rss_mb_max"] or 1e9) <= 300,
        "RSS flat under overload (< 30 MB growth)": abs(s["overload_rss_growth_mb"] or 1e9) < 30,
    }
    return s


def print_table(results: dict[str, Any]) -> None:
    ek, bl, ce = results.get("eventkit"), results.get("baseline"), results.get("ceilings", {})

    def get(r: dict[str, Any] | None, *path: str) -> Any:
        for p in path:
            if r is None:
                return None
            r = r.get(p)
        return r

    rows = [
        ("batch events/s acked", ("batch", "events_acked_per_s")),
        ("batch events/s in Parquet", ("batch", "events_in_parquet_per_s")),
        ("batch share of 503", ("batch", "share_503")),
        ("single requests/s", ("single", "ok_per_s")),
        ("batch p99 ms at 50%", ("batch_at_half", "latency_ms", "p99")),
        ("single p50 ms at 50%", ("single_at_half", "latency_ms", "p50")),
        ("single p99 ms at 50%", ("single_at_half", "latency_ms", "p99")),
        ("overload events/s acked", ("overload", "events_acked_per_s")),
        ("overload share of 503", ("overload", "share_503")),
        ("overload RSS max MB", ("overload", "rss_mb_max")),
        ("Parquet bytes/event", ("parquet_bytes_per_event",)),
    ]
    print(f"\n{'(one core)':28s} {'eventkit':>12s} {'baseline':>12s} {'ratio':>7s}")
    for label, path in rows:
        a, b = get(ek, *path), get(bl, *path)
        r = ratio(a, b) if isinstance(a, int | float) and isinstance(b, int | float) else None
        print(f"{label:28s} {a!s:>12s} {b!s:>12s} {r!s:>7s}")
    hello = get(ce, "hello_single", "ok_per_s")
    decode = get(ce, "decode_batch", "events_per_s")
    print(f"{'ceiling hello world req/s':28s} {hello!s:>12s}")
    print(f"{'ceiling decode events/s':28s} {decode!s:>12s}")
    two = results.get("eventkit_2_workers")
    if two:
        print(f"2 workers: {two['batch']['events_acked_per_s']:,.0f} batch events/s, "
              f"{two['single']['ok_per_s']:,.0f} single req/s")  # fmt: skip
    for key in ("queryable_latency", "pubsub"):
        if key in results:
            print(f"{key}: {json.dumps(results[key])[:300]}")
    for name, ok in results.get("summary", {}).get("targets", {}).items():
        print(f"  [{'met' if ok else 'MISSED'}] {name}")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--duration", type=float, default=10.0, help="seconds per scenario (max 60)")
    p.add_argument("--quick", action="store_true", help="3 s per scenario")
    p.add_argument("--connections", type=int, default=32)
    parts = ["eventkit", "baseline", "ceilings", "two_workers", "latency", "pubsub"]
    p.add_argument("--only", nargs="*", choices=parts, default=parts)
    p.add_argument("--no-write", action="store_true")
    args = p.parse_args(argv)
    for tool in ("wrk", "taskset"):
        if shutil.which(tool) is None:
            raise SystemExit(f"{tool} is needed: apt-get install -y {tool}")
    duration = 3.0 if args.quick else min(args.duration, 60.0)
    conns = args.connections
    results: dict[str, Any] = {
        "benchmark": "side_by_side",
        "command": "uv run python benchmarks/side_by_side.py " + " ".join(argv or sys.argv[1:]),
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": {
            "cpus": os.cpu_count(),
            "cpu": _cpu_model(),
            "python": platform.python_version(),
            "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
        },
        "setup": f"server on core {SERVER_CORE}, load on core {LOAD_CORE}, {conns} connections, "
        f"{duration:.0f} s per scenario, /v1/batch of {BATCH_SIZE}, plain JSON",
    }
    with tempfile.TemporaryDirectory(prefix="eventkit-sbs-") as name:
        tmp = Path(name)
        bodies = write_bodies(tmp)
        results["event_bytes"] = round(bodies["single"].stat().st_size / 4000, 1)
        if "eventkit" in args.only:
            results["eventkit"] = run_server(
                lambda: eventkit_server(tmp / "eventkit"), bodies, duration, conns
            )
        if "baseline" in args.only:
            results["baseline"] = run_server(
                lambda: baseline_server(tmp / "baseline"), bodies, duration, conns
            )
        if "ceilings" in args.only:
            results["ceilings"] = run_ceilings(bodies, duration, conns)
        if "two_workers" in args.only:
            results["eventkit_2_workers"] = run_two_workers(tmp, bodies, duration, conns)
        if "latency" in args.only:
            results["queryable_latency"] = queryable_latency(tmp)
        if "pubsub" in args.only:
            results["pubsub"] = pubsub_mode(tmp, bodies, duration)
    results["machine"]["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
    results["summary"] = summarize(results)
    print_table(results)
    if not args.no_write:
        RESULTS.parent.mkdir(parents=True, exist_ok=True)
        RESULTS.write_text(json.dumps(results, indent=2) + "\n")
        print(f"wrote {RESULTS}")
    return 0


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


if __name__ == "__main__":
    sys.exit(main())
