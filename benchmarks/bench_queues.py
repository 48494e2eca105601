"""Benchmark: eventkit-queues throughput.

Run from the repository root::

    uv run python benchmarks/bench_queues.py [--events 1000000] [--repeat 3] [--pubsub-events 20000]
    uv run python benchmarks/bench_queues.py --skip-pubsub

1. ``AsyncQueue`` (in-process): events put with ``put_many`` in chunks of 1,000 (as the ring
   buffer's publisher does) and handed to a handler that only counts them, over 8 partitions.
   Figure: events handed through per second, from the first put until ``stop()`` has drained
   everything. Two payload shapes: decoded dicts, and undecoded JSON (``msgspec.Raw``, as read
   back from the ring buffer: the identity is parsed out of the JSON for routing).
2. ``PubSubQueue`` on the Pub/Sub emulator: events/s confirmed by the emulator (``put_many``
   returns once every Publish request was answered), 1,000 identities, with the identity as
   ordering key and with ``ordering_buckets=64``; then the same events consumed by an
   ``EventSubscriptionCoordinator`` (ordered subscription, a handler that only counts); then
   publish-only throughput of 10,000 events over 1, 8, 100 and 1,000 distinct ordering keys
   (best and median of ``--repeat`` runs). Before measuring, 20,000 events are published once
   (not measured) to warm the emulator's JVM up. The emulator is started with ``tests/emulators``
   unless ``PUBSUB_EMULATOR_HOST`` is already set (then that one is used).

Prints the figures and writes them to ``benchmarks/results/queues.json``. The machine is shared:
figures are noisy, the best of ``--repeat`` runs and the median are both reported.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgspec
from eventkit_core import RawEvent
from eventkit_queues import AsyncQueue

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "queues.json"
CHUNK = 1000


def make_events(n: int, users: int, raw: bool) -> list[RawEvent]:
    encoder = msgspec.json.Encoder()
    events = []
    for i in range(n):
        payload: dict[str, Any] = {
            "type": "track",
            "userId": f"user-{i % users}",
            "event": "Button Clicked",
            "messageId": str(uuid.UUID(int=i)),
            "properties": {"button": "signup", "n": i},
        }
        events.append(
            RawEvent(
                payload=msgspec.Raw(encoder.encode(payload)) if raw else payload, stream="events"
            )
        )
    return events


async def run_async_queue(events: list[RawEvent], partitions: int) -> dict[str, float]:
    handed = 0
    calls = 0

    async def count(partition: int, batch: list[RawEvent]) -> None:
        nonlocal handed, calls
        handed += len(batch)
        calls += 1

    queue = AsyncQueue(count, partitions=partitions)
    await queue.start()
    started = time.perf_counter()
    for i in range(0, len(events), CHUNK):
        await queue.put_many(events[i : i + CHUNK])
    await queue.stop()
    elapsed = time.perf_counter() - started
    assert handed == len(events), (handed, len(events))
    return {"events_per_s": handed / elapsed, "avg_batch": handed / calls}


def bench_async(n: int, repeat: int) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for shape, raw in (("dict_payload", False), ("raw_json_payload", True)):
        events = make_events(n, users=10_000, raw=raw)
        runs = [asyncio.run(run_async_queue(events, partitions=8)) for _ in range(repeat)]
        rates = [r["events_per_s"] for r in runs]
        out[shape] = {
            "events": n,
            "partitions": 8,
            "users": 10_000,
            "put_many_chunk": CHUNK,
            "best_events_per_s": round(max(rates)),
            "median_events_per_s": round(statistics.median(rates)),
            "avg_batch_handed": round(statistics.median(r["avg_batch"] for r in runs), 1),
        }
        print(
            f"AsyncQueue {shape:17s} best {max(rates):>12,.0f} ev/s  "
            f"median {statistics.median(rates):>12,.0f} ev/s  "
            f"avg batch {out[shape]['avg_batch_handed']}"
        )
    return out


@contextlib.contextmanager
def emulator() -> Iterator[tuple[str, str]]:
    """(host, project) of a Pub/Sub emulator: $PUBSUB_EMULATOR_HOST, else one started here."""
    host = os.environ.get("PUBSUB_EMULATOR_HOST")
    if host:
        yield host, os.environ.get("PUBSUB_PROJECT_ID", "bench-project")
        return
    sys.path.insert(0, str(ROOT))
    from tests.emulators import run_pubsub

    with tempfile.TemporaryDirectory() as workdir, run_pubsub(Path(workdir)) as emu:
        os.environ["PUBSUB_EMULATOR_HOST"] = emu.host
        try:
            yield emu.host, emu.project
        finally:
            del os.environ["PUBSUB_EMULATOR_HOST"]


async def publish_only(project: str, events: list[RawEvent]) -> float:
    from eventkit_queues import PubSubQueue, ensure_topic

    topic = f"bench-{uuid.uuid4().hex[:12]}"
    ensure_topic(project, topic)
    queue = PubSubQueue(project, topic)
    await queue.start()
    started = time.perf_counter()
    for i in range(0, len(events), CHUNK):
        await queue.put_many(events[i : i + CHUNK])
    elapsed = time.perf_counter() - started
    await queue.stop()
    return len(events) / elapsed


async def run_pubsub(project: str, events: list[RawEvent], buckets: int) -> dict[str, float]:
    from eventkit_queues import (
        EventSubscriptionCoordinator,
        PubSubQueue,
        ensure_subscription,
        ensure_topic,
    )

    topic = f"bench-{uuid.uuid4().hex[:12]}"
    subscription = f"{topic}-sub"
    ensure_topic(project, topic)
    ensure_subscription(project, topic, subscription)
    queue = PubSubQueue(project, topic, ordering_buckets=buckets)
    await queue.start()
    started = time.perf_counter()
    for i in range(0, len(events), CHUNK):
        await queue.put_many(events[i : i + CHUNK])
    publish_s = time.perf_counter() - started
    await queue.stop()

    received = 0
    done = asyncio.Event()

    async def count(event: RawEvent) -> None:
        nonlocal received
        received += 1
        if received >= len(events):
            done.set()

    coordinator = EventSubscriptionCoordinator(project, subscription, count)
    started = time.perf_counter()
    await coordinator.start()
    await asyncio.wait_for(done.wait(), 600)
    consume_s = time.perf_counter() - started
    await coordinator.stop()
    return {
        "publish_events_per_s": len(events) / publish_s,
        "subscribe_events_per_s": len(events) / consume_s,
    }


def bench_pubsub(n: int, repeat: int) -> dict[str, Any]:
    events = make_events(n, users=1000, raw=True)
    out: dict[str, Any] = {"events": n, "identities": 1000, "put_many_chunk": CHUNK}
    with emulator() as (_host, project):
        # warm the emulator's JVM up first (its first requests run interpreted): not measured
        asyncio.run(publish_only(project, make_events(20_000, users=1000, raw=True)))
        for label, buckets in (("identity_keys", 0), ("ordering_buckets_64", 64)):
            result = asyncio.run(run_pubsub(project, events, buckets))
            print(
                f"PubSubQueue publish, {label:20s} {result['publish_events_per_s']:>9,.0f} ev/s;"
                f"  coordinator (ordered sub) {result['subscribe_events_per_s']:>9,.0f} ev/s"
            )
            out[label] = {
                "publish_events_per_s": round(result["publish_events_per_s"]),
                "subscribe_ordered_events_per_s": round(result["subscribe_events_per_s"]),
            }
        sweep = {}
        for keys in (1, 8, 100, 1000):
            sweep_events = make_events(10_000, users=keys, raw=True)
            rates = [asyncio.run(publish_only(project, sweep_events)) for _ in range(repeat)]
            sweep[str(keys)] = {
                "best": round(max(rates)),
                "median": round(statistics.median(rates)),
            }
            print(
                f"PubSubQueue publish, 10,000 events over {keys:>4} ordering keys "
                f"best {max(rates):>9,.0f} ev/s  median {statistics.median(rates):>9,.0f} ev/s"
            )
        out["publish_events_per_s_by_distinct_keys"] = sweep
        out["publish_events_per_s_by_distinct_keys_note"] = (
            f"10,000 events, put_many of {CHUNK}, best and median of {repeat} runs"
        )
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--pubsub-events", type=int, default=20_000)
    parser.add_argument("--skip-pubsub", action="store_true")
    args = parser.parse_args()

    results: dict[str, Any] = {
        "command": " ".join(["uv run python benchmarks/bench_queues.py", *sys.argv[1:]]),
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "python": platform.python_version(),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores (shared)",
        "async_queue": bench_async(args.events, args.repeat),
    }
    if not args.skip_pubsub:
        results["pubsub_emulator"] = bench_pubsub(args.pubsub_events, args.repeat)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {RESULTS.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
