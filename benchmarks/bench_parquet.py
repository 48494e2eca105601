"""Benchmark: TypedEvents -> Arrow table -> Parquet (zstd), in memory and to a local file.

Run from the repository root::

    uv run python benchmarks/bench_parquet.py [--events 50000] [--repeat 5]

Prints the figures and writes them to ``benchmarks/results/parquet.json``, with the layout
before ``extras`` (``payload="full"``, zstd level 1) measured in the same run. The events are
analytics.js-like and varied (``writeKey`` and ``_metadata`` too, which go to ``extras``): track / page / identify / screen / group / alias calls over a few
thousand users, with nested ``properties``, ``traits`` and ``context`` (library, page, userAgent,
campaign, device), each built the way an adapter builds them (nested JSON kept as msgspec.Raw).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import msgspec
import pyarrow as pa
import pyarrow.parquet as pq
from eventkit_core import EVENT_CLASSES, TypedEvent
from eventkit_storage.local import LocalFiles
from eventkit_storage.parquet import COMPRESSION_LEVEL, events_to_table, table_to_parquet_bytes

RESULTS = Path(__file__).parent / "results" / "parquet.json"
_ENC = msgspec.json.Encoder()

USER_AGENTS = [
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4 Safari/605.1.15",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4 Mobile/15E148 Safari/604.1",
    "Mozilla/5.0 (X11; Linux x86_64; rv:125.0) Gecko/20100101 Firefox/125.0",
    "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.6367.82 Mobile Safari/537.36",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36 Edg/124.0.2478.67",
]
PAGES = [
    ("/", "Acme - Home"),
    ("/pricing", "Pricing - Acme"),
    ("/docs/getting-started", "Getting started - Acme Docs"),
    ("/blog/how-we-scaled", "How we scaled - Acme Blog"),
    ("/products/widget-pro", "Widget Pro - Acme"),
    ("/cart", "Your cart - Acme"),
    ("/checkout", "Checkout - Acme"),
    ("/account/settings", "Settings - Acme"),
]
WRITE_KEY = "wk_3Fz8PqLx0aBcD2eF"
REFERRERS = ["", "https://www.google.com/", "https://news.ycombinator.com/", "https://t.co/abc"]
CAMPAIGNS = [None, None, None, {"name": "spring_sale", "source": "newsletter", "medium": "email"}]
PRODUCTS = [
    {"product_id": f"sku-{i:05d}", "name": f"Widget {i}", "price": round(5 + i * 3.7, 2)}
    for i in range(200)
]
TRACKS: list[tuple[str, Callable[[random.Random], dict[str, Any]]]] = [
    (
        "Product Viewed",
        lambda r: {**r.choice(PRODUCTS), "currency": "USD", "position": r.randint(1, 24)},
    ),
    (
        "Product Added",
        lambda r: {
            **r.choice(PRODUCTS),
            "quantity": r.randint(1, 3),
            "cart_id": f"c{r.randint(1, 99999)}",
        },
    ),
    (
        "Order Completed",
        lambda r: {
            "order_id": f"o-{r.randint(1, 10**9)}",
            "total": round(r.uniform(10, 500), 2),
            "currency": "USD",
            "products": [r.choice(PRODUCTS) for _ in range(r.randint(1, 4))],
            "coupon": r.choice([None, "SPRING10"]),
        },
    ),
    (
        "Signed Up",
        lambda r: {
            "plan": r.choice(["free", "team", "enterprise"]),
            "method": r.choice(["email", "google"]),
        },
    ),
    (
        "Button Clicked",
        lambda r: {
            "button_id": r.choice(["cta-signup", "cta-demo", "nav-pricing"]),
            "page": r.choice(PAGES)[0],
        },
    ),
    (
        "Video Played",
        lambda r: {
            "video_id": f"v{r.randint(1, 300)}",
            "position": r.randint(0, 600),
            "quality": "hd",
        },
    ),
]
CALLS = (
    ["track"] * 55 + ["page"] * 25 + ["identify"] * 8 + ["screen"] * 8 + ["group"] * 3 + ["alias"]
)
STREAM_OF = {
    "track": "events",
    "page": "pages",
    "identify": "users",
    "screen": "screens",
    "group": "groups",
    "alias": "aliases",
}


def _iso(moment: datetime) -> str:
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _raw(value: Any) -> msgspec.Raw:
    return msgspec.Raw(_ENC.encode(value))


def make_events(count: int, seed: int = 7, users: int = 3000) -> list[TypedEvent]:
    """``count`` realistic, varied typed events (deterministic for a seed)."""
    rnd = random.Random(seed)
    people: list[dict[str, Any]] = [
        {
            "anonymousId": str(uuid.UUID(int=rnd.getrandbits(128), version=4)),
            "userId": f"user_{rnd.randint(1, 10**7)}" if rnd.random() < 0.6 else None,
            "ua": rnd.choice(USER_AGENTS),
            "ip": f"{rnd.randint(1, 223)}.{rnd.randint(0, 255)}.{rnd.randint(0, 255)}.{rnd.randint(1, 254)}",
            "locale": rnd.choice(["en-US", "en-GB", "de-DE", "fr-FR"]),
            "tz": rnd.choice(["America/New_York", "Europe/Berlin", "Europe/London"]),
            "mobile": rnd.random() < 0.3,
        }
        for _ in range(users)
    ]
    start = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
    events: list[TypedEvent] = []
    for i in range(count):
        p = rnd.choice(people)
        call = rnd.choice(CALLS)
        received = start + timedelta(milliseconds=i * 37)
        sent = received - timedelta(milliseconds=rnd.randint(20, 900))
        original = sent - timedelta(milliseconds=rnd.randint(0, 3000))
        path, title = rnd.choice(PAGES)
        context: dict[str, Any] = {
            "library": {"name": "analytics.js", "version": "next-1.64.0"},
            "userAgent": p["ua"],
            "ip": p["ip"],
            "locale": p["locale"],
            "timezone": p["tz"],
            "page": {
                "path": path,
                "url": f"https://www.acme.com{path}",
                "title": title,
                "referrer": rnd.choice(REFERRERS),
                "search": "",
            },
        }
        campaign = rnd.choice(CAMPAIGNS)
        if campaign:
            context["campaign"] = campaign
        if p["mobile"] or call == "screen":
            context["device"] = {"type": "ios", "model": "iPhone15,2", "manufacturer": "Apple"}
            context["app"] = {"name": "Acme", "version": "4.2.0", "build": "4201"}
        payload: dict[str, Any] = {
            "type": call,
            "messageId": str(uuid.UUID(int=rnd.getrandbits(128), version=4)),
            "anonymousId": p["anonymousId"],
            "timestamp": _iso(original),
            "sentAt": _iso(sent),
            "context": context,
            "integrations": {},
            # what analytics.js adds to every event: no column holds these (they go to extras)
            "writeKey": WRITE_KEY,
            "_metadata": {"bundled": ["Segment.io"], "unbundled": [], "bundledIds": []},
        }
        if p["userId"]:
            payload["userId"] = p["userId"]
        fields: dict[str, Any] = {}
        if call == "track":
            name, props = rnd.choice(TRACKS)
            payload["event"] = name
            payload["properties"] = props(rnd)
            fields["event"] = name
        elif call in ("page", "screen"):
            payload["name"] = title
            payload["properties"] = {
                "path": path,
                "title": title,
                "url": f"https://www.acme.com{path}",
            }
            fields["name"] = title
        elif call == "identify":
            payload["traits"] = {
                "email": f"{p['anonymousId'][:8]}@example.com",
                "plan": rnd.choice(["free", "team"]),
                "logins": rnd.randint(1, 90),
            }
        elif call == "group":
            payload["groupId"] = f"org_{rnd.randint(1, 400)}"
            payload["traits"] = {"name": "Acme Customer", "employees": rnd.randint(1, 5000)}
            fields["group_id"] = payload["groupId"]
        else:
            payload["previousId"] = p["anonymousId"]
            fields["previous_id"] = p["anonymousId"]
        cls = EVENT_CLASSES[call]
        events.append(
            cls(
                message_id=payload["messageId"],
                stream=STREAM_OF[call],
                received_at=received,
                timestamp=received - (sent - original),
                original_timestamp=original,
                sent_at=sent,
                payload=_raw(payload),
                user_id=p["userId"],
                anonymous_id=p["anonymousId"],
                properties=_raw(payload["properties"]) if "properties" in payload else None,
                traits=_raw(payload["traits"]) if "traits" in payload else None,
                context=_raw(context),
                integrations=_raw({}),
                source_id=i + 1,
                **fields,
            )
        )
    return events


def _best(fn: Callable[[], object], repeat: int) -> tuple[float, float, float]:
    """Best and median wall time, and best CPU time (this process, all threads) of ``repeat``
    runs of ``fn``. On a busy machine the CPU time is the better "per core" figure."""
    walls, cpus = [], []
    for _ in range(repeat):
        c0, t0 = time.process_time(), time.perf_counter()
        fn()
        walls.append(time.perf_counter() - t0)
        cpus.append(time.process_time() - c0)
    return min(walls), statistics.median(walls), min(cpus)


def _rates(n: int, best: float, median: float, cpu: float) -> dict[str, int]:
    return {
        "wall_best": round(n / best),
        "wall_median": round(n / median),
        "per_cpu_second_best": round(n / cpu),
    }


def _by_column(data: bytes, count: int) -> dict[str, float]:
    """Compressed bytes per event of each column of the Parquet ``data``."""
    metadata = pq.ParquetFile(pa.BufferReader(data)).metadata
    columns: dict[str, float] = {}
    for i in range(metadata.num_columns):
        total = sum(
            metadata.row_group(g).column(i).total_compressed_size
            for g in range(metadata.num_row_groups)
        )
        columns[metadata.row_group(0).column(i).path_in_schema] = round(total / count, 2)
    return columns


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--events", type=int, default=50_000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--no-write", action="store_true", help="do not write the results file")
    args = parser.parse_args()
    load_at_start = os.getloadavg()[0]

    events = make_events(args.events)
    n = len(events)
    # one flush of the default size: 10,000 events of one stream (stores write one file per
    # stream and hour)
    flush = [e for e in make_events(30_000, seed=11) if e.stream == "events"][:10_000]
    table = events_to_table(events)

    rates: dict[str, dict[str, int]] = {}
    rates["arrow_conversion"] = _rates(n, *_best(lambda: events_to_table(events), args.repeat))
    rates["parquet_write_in_memory"] = _rates(
        n, *_best(lambda: table_to_parquet_bytes(table), args.repeat)
    )
    rates["conversion_plus_write_in_memory"] = _rates(
        n, *_best(lambda: table_to_parquet_bytes(events_to_table(events)), args.repeat)
    )
    rates["conversion_plus_write_one_stream_flush_of_10000"] = _rates(
        len(flush), *_best(lambda: table_to_parquet_bytes(events_to_table(flush)), args.repeat)
    )
    # Before extras: the whole original object in `payload` too, zstd level 1 (this version's
    # conversion, which also computes extras: a slightly pessimistic "before").
    rates["before_payload_full_level_1_one_stream_flush_of_10000"] = _rates(
        len(flush),
        *_best(
            lambda: table_to_parquet_bytes(
                events_to_table(flush, payload="full"), compression_level=1
            ),
            args.repeat,
        ),
    )
    with tempfile.TemporaryDirectory() as tmp:
        files = LocalFiles(tmp)
        names = iter(range(10**6))

        def to_local_file() -> None:
            # what LocalEventStore does for one file: convert, write, fsync, link, fsync dir
            data = table_to_parquet_bytes(events_to_table(events))
            files._create(files.local_path(f"events/bench/{next(names)}.parquet"), data)

        rates["conversion_plus_write_to_local_file"] = _rates(n, *_best(to_local_file, args.repeat))

    def per_event(data: bytes, count: int) -> float:
        return round(len(data) / count, 1)

    flush_table = events_to_table(flush)
    full_table = events_to_table(flush, payload="full")

    def flush_size(source: pa.Table = flush_table, **options: Any) -> float:
        return per_event(table_to_parquet_bytes(source, **options), len(flush))

    sizes = {
        "all_streams_one_file": per_event(table_to_parquet_bytes(table), n),
        "one_stream_flush_of_10000": flush_size(),
        "before_payload_full_level_1_one_stream_flush_of_10000": flush_size(
            full_table, compression_level=1
        ),
        "payload_full_one_stream_flush_of_10000": flush_size(full_table),
        "one_stream_flush_of_10000_zstd_level_1": flush_size(compression_level=1),
        "one_stream_flush_of_10000_zstd_level_6": flush_size(compression_level=6),
        "one_stream_flush_of_10000_zstd_level_9": flush_size(compression_level=9),
        "one_stream_flush_of_10000_sorted": flush_size(sort=True),
        "one_stream_flush_of_10000_delta_encodings": flush_size(delta_encodings=True),
        "one_stream_flush_of_10000_sorted_delta_encodings": flush_size(
            sort=True, delta_encodings=True
        ),
    }
    level_6 = _best(lambda: table_to_parquet_bytes(flush_table, compression_level=6), args.repeat)
    rates["parquet_write_one_stream_flush_of_10000_zstd_level_6"] = _rates(len(flush), *level_6)
    rates["parquet_write_one_stream_flush_of_10000"] = _rates(
        len(flush), *_best(lambda: table_to_parquet_bytes(flush_table), args.repeat)
    )
    columns = _by_column(table_to_parquet_bytes(table), n)
    flush_columns = _by_column(table_to_parquet_bytes(flush_table), len(flush))

    results = {
        "command": " ".join(["uv run python benchmarks/bench_parquet.py", *sys.argv[1:]]),
        "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {
            "python": platform.python_version(),
            "pyarrow": pa.__version__,
            "cpu_count": os.cpu_count(),
            "platform": platform.platform(),
            "load_average_1m_at_start": round(load_at_start, 2),
            "note": (
                "shared machine: figures are noisy. wall_best / wall_median: events per second of "
                "wall time (fastest / median run); per_cpu_second_best: events per second of CPU "
                "time of this process (the per-core rate, less disturbed by other processes)"
            ),
        },
        "events": n,
        "repeat": args.repeat,
        "input_json_bytes_per_event": {
            "payload": round(sum(len(e.payload) for e in events) / n, 1),
            "track_payload_in_the_flush": round(sum(len(e.payload) for e in flush) / len(flush), 1),
            "all_json_columns": round(
                sum(
                    len(e.payload) + sum(len(r or b"") for r in (e.properties, e.traits, e.context))
                    for e in events
                )
                / n,
                1,
            ),
        },
        "compression": f"zstd level {COMPRESSION_LEVEL}",
        "payload": "extras (default; `before_*`: payload full, zstd level 1, as before extras)",
        "sizes_note": (
            "bytes_per_event_by_column: all streams in one file; the by-column figures of the "
            "10,000-event track flush are in bytes_per_event_by_column_one_stream_flush"
        ),
        "events_per_s": rates,
        "bytes_per_event": sizes,
        "bytes_per_event_by_column": columns,
        "bytes_per_event_by_column_one_stream_flush": flush_columns,
    }
    print(json.dumps(results, indent=2))
    if not args.no_write:
        RESULTS.parent.mkdir(parents=True, exist_ok=True)
        RESULTS.write_text(json.dumps(results, indent=2) + "\n")
        print(f"wrote {RESULTS}", file=sys.stderr)


if __name__ == "__main__":
    main()
