"""Helpers for the fault tests (and ``benchmarks/soak.py``): a load generator that keeps books.

:class:`LoadGen` is a small client thread posting batches of events with unique ``messageId``s
to whatever collector is current. It records what each request got:

- a 2xx: its ids are *acknowledged* (they must be in storage, whatever happens next);
- no answer at all (connection refused, reset, timeout: the collector was killed or is down):
  its events are *unanswered*, and the same body is sent again later, as an SDK does. An
  unanswered request may or may not have been stored, so each one allows one duplicate per
  event in storage;
- any other status: counted by status (a test asserts which ones are allowed).
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pyarrow.parquet as pq

#: Kills / restarts in one fault test: a few in CI, many in the long mode.
LONG = os.environ.get("EVENTKIT_LONG_TESTS", "") not in ("", "0", "false")


def rounds(ci: int, long: int) -> int:
    """``ci`` normally, ``long`` with ``EVENTKIT_LONG_TESTS=1``."""
    return long if LONG else ci


def batch_body(events: int, tag: str, pad: int = 0) -> tuple[list[str], dict[str, Any]]:
    """A /v1/batch body of ``events`` track/identify calls with fresh message ids.

    ``pad``: characters of random hex added to each track's properties (to fill disks faster).
    """
    ids = [str(uuid.uuid4()) for _ in range(events)]
    items: list[dict[str, Any]] = []
    for n, message_id in enumerate(ids):
        user = f"user-{uuid.UUID(message_id).int % 50}"
        if n % 5 == 0:
            items.append(
                {
                    "type": "identify",
                    "userId": user,
                    "anonymousId": f"anon-{user}",
                    "traits": {"tag": tag},
                    "messageId": message_id,
                }
            )
        else:
            items.append(
                {
                    "type": "track",
                    "userId": user,
                    "event": "Clicked",
                    "properties": {"n": n, "tag": tag, "pad": os.urandom(pad // 2).hex()},
                    "messageId": message_id,
                }
            )
    return ids, {"batch": items}


@dataclass
class Books:
    """What the load generator sent and what it was told."""

    acked: set[str] = field(default_factory=set)
    sent: set[str] = field(default_factory=set)
    statuses: Counter[int] = field(default_factory=Counter)
    #: Events in requests that got no answer (each may be stored once more than acknowledged).
    unanswered_events: int = 0
    unanswered_requests: int = 0
    retry_after: list[str] = field(default_factory=list)
    latencies: list[float] = field(default_factory=list)


class LoadGen:
    """Posts ``batch`` events per request, ``rate`` requests a second, to ``url()``.

    ``url`` is called for each request, so a test can point it at a restarted collector.
    """

    def __init__(
        self,
        url: Callable[[], str],
        *,
        batch: int = 20,
        rate: float = 40.0,
        timeout: float = 10.0,
        path: str = "/v1/batch",
        pad: int = 0,
    ) -> None:
        self.pad = pad
        self.url = url
        self.batch = batch
        self.rate = rate
        self.timeout = timeout
        self.path = path
        self.books = Books()
        self.lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="loadgen", daemon=True)
        self._retry: list[tuple[list[str], dict[str, Any]]] = []
        self.requests = 0

    def __enter__(self) -> LoadGen:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(60)

    def acked_count(self) -> int:
        with self.lock:
            return len(self.books.acked)

    def status_count(self, status: int) -> int:
        with self.lock:
            return self.books.statuses[status]

    def snapshot(self) -> Books:
        with self.lock:
            b = self.books
            return Books(
                set(b.acked),
                set(b.sent),
                Counter(b.statuses),
                b.unanswered_events,
                b.unanswered_requests,
                list(b.retry_after),
                list(b.latencies),
            )

    def _next(self) -> tuple[list[str], dict[str, Any]]:
        if self._retry:
            return self._retry.pop(0)
        ids, body = batch_body(self.batch, tag=f"r{self.requests}", pad=self.pad)
        with self.lock:
            self.books.sent.update(ids)
        return ids, body

    def _run(self) -> None:
        interval = 1.0 / self.rate
        next_at = time.monotonic()
        with httpx.Client(timeout=self.timeout) as client:
            while not self._stop.is_set():
                # Pacing (a steady request rate), not waiting for a condition.
                delay = next_at - time.monotonic()
                if delay > 0 and self._stop.wait(delay):
                    break
                next_at = max(next_at + interval, time.monotonic() - 1.0)
                ids, body = self._next()
                self.requests += 1
                self._send(client, ids, body)
            # What never got an answer stays unanswered: the books say so.

    def _send(self, client: httpx.Client, ids: list[str], body: dict[str, Any]) -> None:
        started = time.monotonic()
        try:
            response = client.post(self.url() + self.path, json=body)
        except httpx.HTTPError:
            with self.lock:
                self.books.unanswered_requests += 1
                self.books.unanswered_events += len(ids)
            self._retry.append((ids, body))
            # Nobody listening (killed, restarting): do not spin on refused connections.
            self._stop.wait(0.05)
            return
        with self.lock:
            b = self.books
            b.statuses[response.status_code] += 1
            b.latencies.append(time.monotonic() - started)
            if 200 <= response.status_code < 300:
                b.acked.update(ids)
            elif response.status_code == 503:
                b.retry_after.append(response.headers.get("retry-after", ""))
                self._retry.append((ids, body))


def stored_ids(root: Path, kind: str = "events") -> Counter[str]:
    """message_id -> rows, over every Parquet file under ``root/kind`` (each must be readable)."""
    counts: Counter[str] = Counter()
    base = root / kind
    if not base.exists():
        return counts
    for f in sorted(base.rglob("*.parquet")):
        counts.update(
            str(m) for m in pq.read_table(f, columns=["message_id"]).column(0).to_pylist()
        )
    return counts


def visible_files(root: Path, kind: str = "events") -> list[Path]:
    """Files a loader would list: every ``*.parquet`` (temporaries are ``.<name>.<id>.tmp``)."""
    base = root / kind
    return (
        sorted(p for p in base.rglob("*.parquet") if not p.name.startswith("."))
        if base.exists()
        else []
    )


def check_parquet_whole(files: Iterable[Path]) -> None:
    """Every listed Parquet file reads completely (no half-written file is visible)."""
    for f in files:
        pq.read_table(f)


def sqlite_integrity(db: Path) -> str:
    """``PRAGMA integrity_check`` of one SQLite file ("ok" when sound)."""
    with contextlib.closing(sqlite3.connect(db, timeout=30)) as conn:
        rows = conn.execute("PRAGMA integrity_check").fetchall()
    return "; ".join(str(r[0]) for r in rows)


def ring_files(data_dir: Path) -> list[Path]:
    return sorted((data_dir / "ring").glob("*.db"))


def rss_bytes(pid: int) -> int:
    """Resident set size of a process (Linux /proc)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


def open_files(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))
