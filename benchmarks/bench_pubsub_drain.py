"""How fast an archive-style coordinator drains a Pub/Sub backlog (emulator).

The handler acks only once its "flush" is written, like ``EventLoader.add``: a flush is cut at
``--flush-events`` held messages or ``--flush-age`` seconds. With ``ordered=True`` (the Google
client's behaviour before the fix: one un-acked message per ordering key) the drain is capped at
about keys per flush age; with ``ordered=False`` at flush size per flush.

    PYTHONPATH=. uv run python benchmarks/bench_pubsub_drain.py --events 3000 --users 50

Writes benchmarks/results/pubsub_drain.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
import time
from pathlib import Path
from typing import Any

from eventkit_core import RawEvent
from eventkit_queues import (
    EventSubscriptionCoordinator,
    PubSubQueue,
    ensure_subscription,
    ensure_topic,
)

from tests.emulators.pubsub import run_pubsub

RESULTS = Path(__file__).parent / "results" / "pubsub_drain.json"


class FlushingHandler:
    """Returns (so the message is acked) only when the flush holding the event is cut."""

    def __init__(self, size: int, age: float) -> None:
        self.size, self.age = size, age
        self.done = 0
        self._batch: asyncio.Future[None] | None = None
        self._held = 0

    async def __call__(self, event: RawEvent) -> None:
        if self._batch is None:
            self._batch = asyncio.get_running_loop().create_future()
            self._held = 0
            asyncio.get_running_loop().call_later(self.age, self._cut, self._batch)
        batch = self._batch
        self._held += 1
        if self._held >= self.size:
            self._cut(batch)
        await batch
        self.done += 1

    def _cut(self, batch: asyncio.Future[None]) -> None:
        if not batch.done():
            batch.set_result(None)
        if self._batch is batch:
            self._batch = None


async def drain(project: str, events: int, users: int, ordered: bool, args: Any) -> float:
    topic, sub = f"drain-{ordered}-{time.time_ns()}", f"drain-sub-{ordered}-{time.time_ns()}"
    ensure_topic(project, topic)
    ensure_subscription(project, topic, sub, enable_message_ordering=False)
    queue = PubSubQueue(project, topic)
    await queue.start()
    batch = [
        RawEvent(payload={"type": "track", "userId": f"user-{n % users}", "n": n}, stream="e")
        for n in range(events)
    ]
    await queue.put_many(batch)
    await queue.stop()
    handler = FlushingHandler(args.flush_events, args.flush_age)
    coordinator = EventSubscriptionCoordinator(
        project, sub, handler, max_messages=2 * args.flush_events, ordered=ordered
    )
    started = time.monotonic()
    await coordinator.start()
    deadline = started + args.timeout
    while handler.done < events and time.monotonic() < deadline:  # noqa: ASYNC110
        await asyncio.sleep(0.05)
    elapsed = time.monotonic() - started
    await coordinator.stop()
    return handler.done / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=5000)
    parser.add_argument("--users", type=int, default=50)
    parser.add_argument("--flush-events", type=int, default=1000)
    parser.add_argument("--flush-age", type=float, default=2.0)
    parser.add_argument("--timeout", type=float, default=120.0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp, run_pubsub(Path(tmp)) as emulator:
        import os

        os.environ["PUBSUB_EMULATOR_HOST"] = emulator.host
        result: dict[str, Any] = {"events": args.events, "users": args.users}
        result["flush_events"], result["flush_age"] = args.flush_events, args.flush_age
        for label, ordered in (("before_ordered_keys_held", True), ("after_ordered_false", False)):
            rate = asyncio.run(drain(emulator.project, args.events, args.users, ordered, args))
            result[f"{label}_events_per_s"] = round(rate, 1)
            print(f"{label}: {rate:,.0f} events/s drained", flush=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
