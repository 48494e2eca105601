"""Benchmark: /v1/batch body -> items as msgspec.Raw -> SegmentSchemaAdapter -> typed events.

Run: uv run python benchmarks/bench_adapt.py [--events 60000] [--runs 5]

Prints events/s per core for (a) decoding batch bodies into RawEvents whose payloads stay
msgspec.Raw, (b) adapting each (validate + normalise), and the two together; also the adapter
fed decoded Python dicts. Figures are from wall-clock time (median of the runs); the
``cpu_*`` figures use the thread's CPU time instead, which other jobs on a shared machine
disturb less. Writes benchmarks/results/adapt.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import statistics
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import msgspec
from eventkit_core import DEFAULT_TYPE_STREAMS, RawEvent
from eventkit_validators import SegmentSchemaAdapter

RESULTS = Path(__file__).parent / "results" / "adapt.json"
BATCH_SIZE = 500  # ~350 KB bodies: under the 500 KB /v1/batch limit


class _Batch(msgspec.Struct):
    batch: list[msgspec.Raw] = []
    context: msgspec.Raw = msgspec.field(default_factory=msgspec.Raw)
    integrations: msgspec.Raw = msgspec.field(default_factory=msgspec.Raw)
    sentAt: Any = None


class _Type(msgspec.Struct):
    type: Any = None


_BATCH_DECODER = msgspec.json.Decoder(_Batch)
_TYPE_DECODER = msgspec.json.Decoder(_Type)

PAGES = ["/", "/pricing", "/docs/getting-started", "/blog/2024/launch", "/account/settings"]
EVENTS = ["Order Completed", "Product Viewed", "Signed Up", "Button Clicked", "Plan Upgraded"]
UAS = [
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) "
    "Version/17.4 Safari/605.1.15",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/124.0.0.0 Safari/537.36",
]


def _context(rng: random.Random, page: str) -> dict[str, Any]:
    return {
        "library": {"name": "analytics.js", "version": "next-1.64.0"},
        "locale": "en-US",
        "timezone": "Europe/Berlin",
        "page": {
            "path": page,
            "referrer": "https://www.google.com/",
            "search": "",
            "title": "Acme - " + page.strip("/").replace("/", " ").title(),
            "url": "https://acme.example.com" + page,
        },
        "userAgent": rng.choice(UAS),
    }


def make_event(rng: random.Random, i: int, sent_at: datetime) -> dict[str, Any]:
    ts = (sent_at - timedelta(milliseconds=rng.randint(5, 5000))).isoformat()
    ts = ts.replace("+00:00", "Z")
    page = rng.choice(PAGES)
    common: dict[str, Any] = {
        "messageId": f"ajs-next-{i:08d}-{rng.getrandbits(64):016x}",
        "anonymousId": f"{rng.getrandbits(128):032x}",
        "timestamp": ts,
        "context": _context(rng, page),
        "integrations": {"All": True, "Mixpanel": False},
    }
    if rng.random() < 0.7:
        common["userId"] = f"user_{rng.randint(1, 100_000)}"
    kind = rng.choices(["track", "identify", "page"], weights=[6, 2, 2])[0]
    if kind == "track":
        return {
            **common,
            "type": "track",
            "event": rng.choice(EVENTS),
            "properties": {
                "order_id": f"o-{rng.randint(1, 10**9)}",
                "revenue": round(rng.uniform(1, 500), 2),
                "currency": "EUR",
                "products": [
                    {"sku": f"SKU-{rng.randint(1, 9999)}", "price": 19.99, "quantity": 1},
                    {"sku": f"SKU-{rng.randint(1, 9999)}", "price": 5.0, "quantity": 2},
                ],
            },
        }
    if kind == "identify":
        return {
            **common,
            "type": "identify",
            "userId": f"user_{rng.randint(1, 100_000)}",
            "traits": {
                "email": f"person{rng.randint(1, 10**6)}@example.com",
                "name": "Ada Lovelace",
                "plan": rng.choice(["free", "team", "enterprise"]),
                "createdAt": "2023-04-01T10:00:00Z",
                "address": {"city": "Berlin", "country": "DE"},
            },
        }
    return {
        **common,
        "type": "page",
        "name": page.strip("/") or "home",
        "properties": {"path": page, "url": "https://acme.example.com" + page, "title": "Acme"},
    }


def make_bodies(n: int, seed: int = 7) -> tuple[list[bytes], list[int]]:
    rng = random.Random(seed)
    bodies: list[bytes] = []
    sizes: list[int] = []
    enc = msgspec.json.Encoder()
    sent_at = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
    for start in range(0, n, BATCH_SIZE):
        items = [make_event(rng, i, sent_at) for i in range(start, min(n, start + BATCH_SIZE))]
        sizes.extend(len(enc.encode(item)) for item in items)
        body = {"batch": items, "sentAt": sent_at.isoformat().replace("+00:00", "Z")}
        bodies.append(enc.encode(body))
    return bodies, sizes


def split(bodies: list[bytes]) -> list[RawEvent]:
    """What the collector does per /v1/batch body (no HTTP, no ring buffer)."""
    received_at = datetime.now(UTC)
    out: list[RawEvent] = []
    for body in bodies:
        batch = _BATCH_DECODER.decode(body)
        ctx = batch.context or None
        integrations = batch.integrations or None
        for item in batch.batch:
            kind = _TYPE_DECODER.decode(item).type
            out.append(
                RawEvent(
                    payload=item,
                    stream=DEFAULT_TYPE_STREAMS.get(kind, "default")
                    if isinstance(kind, str)
                    else "default",
                    received_at=received_at,
                    source="batch",
                    ip="203.0.113.7",
                    user_agent=UAS[0],
                    batch_context=ctx,
                    batch_integrations=integrations,
                    batch_sent_at=batch.sentAt,
                )
            )
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=60_000)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()

    bodies, sizes = make_bodies(args.events)
    adapter = SegmentSchemaAdapter()
    split_s, adapt_s, dict_s = [], [], []
    cpu_split_s, cpu_adapt_s = [], []
    for _ in range(args.runs):
        t0, c0 = time.perf_counter(), time.thread_time()
        raws = split(bodies)
        t1, c1 = time.perf_counter(), time.thread_time()
        results = adapter.adapt_many(raws)
        t2, c2 = time.perf_counter(), time.thread_time()
        split_s.append(t1 - t0)
        adapt_s.append(t2 - t1)
        cpu_split_s.append(c1 - c0)
        cpu_adapt_s.append(c2 - c1)
        assert all(r.ok for r in results), [r.error for r in results if not r.ok][:3]
        dict_raws = [
            msgspec.structs.replace(r, payload=msgspec.json.decode(r.payload))
            for r in raws[:20_000]
        ]
        t3 = time.perf_counter()
        adapter.adapt_many(dict_raws)
        dict_s.append((time.perf_counter() - t3) / len(dict_raws) * args.events)

    n = args.events
    total = [a + b for a, b in zip(split_s, adapt_s, strict=True)]
    cpu_total = [a + b for a, b in zip(cpu_split_s, cpu_adapt_s, strict=True)]
    figures = {
        "split_events_per_s": round(n / statistics.median(split_s)),
        "adapt_events_per_s": round(n / statistics.median(adapt_s)),
        "total_events_per_s": round(n / statistics.median(total)),
        "adapt_from_dicts_events_per_s": round(n / statistics.median(dict_s)),
        "cpu_adapt_events_per_s": round(n / statistics.median(cpu_adapt_s)),
        "cpu_total_events_per_s": round(n / statistics.median(cpu_total)),
    }
    result = {
        "benchmark": "adapt",
        "command": "uv run python benchmarks/bench_adapt.py " + " ".join(sys.argv[1:]),
        "what": "decode /v1/batch bodies into RawEvents (payload msgspec.Raw) + "
        "SegmentSchemaAdapter.adapt_many; one core, one thread",
        "events": n,
        "runs": args.runs,
        "batch_size": BATCH_SIZE,
        "event_bytes_median": statistics.median(sizes),
        "event_bytes_min": min(sizes),
        "event_bytes_max": max(sizes),
        "median_seconds": {
            "split": statistics.median(split_s),
            "adapt": statistics.median(adapt_s),
            "total": statistics.median(total),
        },
        **figures,
        "target_total_events_per_s": 300_000,
        "load_average": _load_average(),
        "python": sys.version.split()[0],
        "msgspec": msgspec.__version__,
        "machine": {
            "platform": platform.platform(),
            "processor": _cpu_model(),
            "cpus": os.cpu_count(),
        },
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    print(f"events={n} runs={args.runs} event bytes median={result['event_bytes_median']}")
    for key, value in figures.items():
        print(f"{key:32} {value:>12,}")
    print(f"wrote {RESULTS}")


def _load_average() -> list[float] | None:
    # Other jobs on the machine: the 1, 5 and 15 minute load averages at the end of the run.
    try:
        return [float(x) for x in Path("/proc/loadavg").read_text().split()[:3]]
    except (OSError, ValueError):
        return None


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


if __name__ == "__main__":
    main()
