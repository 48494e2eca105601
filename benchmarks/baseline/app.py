"""The original design, built plainly: the yardstick of ``benchmarks/side_by_side.py``.

Not a product and not part of the workspace: FastAPI + Pydantic v2 models of Segment's
``/v1/track`` and ``/v1/batch``, every event validated into a model, appended to a SQLite ring
buffer in WAL mode (one row per event, one transaction per request: the 200 means durable), a
background publisher that reads unpublished rows, batches them in an EventLoader-like buffer
and writes Parquet files (pyarrow) every 10,000 events or second, then marks the rows published.
This is what the original README describes (FastAPI, Pydantic v2, SQLite WAL ring buffer,
EventLoader batching, Parquet); it runs from a cached venv (``benchmarks/baseline/venv.py``) so
FastAPI never enters the workspace lock.

    BASELINE_DATA_DIR=/tmp/x python -m uvicorn app:app --loop uvloop --http httptools
"""

from __future__ import annotations

import asyncio
import json
import os
import sqlite3
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import pyarrow as pa
import pyarrow.parquet as pq
from fastapi import FastAPI
from pydantic import BaseModel, ConfigDict, Field

DATA = Path(os.environ.get("BASELINE_DATA_DIR", "./baseline-data"))
FLUSH_EVENTS = 10_000
FLUSH_AGE = 1.0


class SegmentEvent(BaseModel):
    model_config = ConfigDict(extra="allow")

    type: Literal["track", "identify", "page", "screen", "group", "alias"] = "track"
    event: str | None = None
    messageId: str = Field(default_factory=lambda: str(uuid.uuid4()))
    userId: str | None = None
    anonymousId: str | None = None
    timestamp: datetime | None = None
    properties: dict[str, Any] = Field(default_factory=dict)
    traits: dict[str, Any] = Field(default_factory=dict)
    context: dict[str, Any] = Field(default_factory=dict)


class SegmentBatch(BaseModel):
    batch: list[SegmentEvent]
    context: dict[str, Any] = Field(default_factory=dict)
    sentAt: datetime | None = None


class RingBuffer:
    """SQLite WAL: one row per event; a request's rows commit together."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=NORMAL")
        self.db.execute(
            "CREATE TABLE IF NOT EXISTS ring (id INTEGER PRIMARY KEY, payload TEXT NOT NULL,"
            " published INTEGER NOT NULL DEFAULT 0)"
        )
        self.db.execute("CREATE INDEX IF NOT EXISTS ring_unpublished ON ring (published, id)")

    def append(self, events: list[SegmentEvent]) -> None:
        rows = [(e.model_dump_json(),) for e in events]
        self.db.execute("BEGIN")
        self.db.executemany("INSERT INTO ring (payload) VALUES (?)", rows)
        self.db.execute("COMMIT")

    def unpublished(self, limit: int) -> list[tuple[int, str]]:
        return self.db.execute(
            "SELECT id, payload FROM ring WHERE published = 0 ORDER BY id LIMIT ?", (limit,)
        ).fetchall()

    def mark(self, ids: list[int]) -> None:
        self.db.execute("BEGIN")
        self.db.executemany("UPDATE ring SET published = 1 WHERE id = ?", [(i,) for i in ids])
        self.db.execute("COMMIT")


class EventLoader:
    """Batches typed events and writes one Parquet file per flush."""

    def __init__(self, root: Path) -> None:
        self.root = root / "events"
        self.root.mkdir(parents=True, exist_ok=True)
        self.buffer: list[SegmentEvent] = []
        self.last = time.monotonic()
        self.files = 0

    def add(self, event: SegmentEvent) -> None:
        self.buffer.append(event)

    def due(self) -> bool:
        return len(self.buffer) >= FLUSH_EVENTS or (
            bool(self.buffer) and time.monotonic() - self.last >= FLUSH_AGE
        )

    def flush(self) -> None:
        events, self.buffer = self.buffer, []
        self.last = time.monotonic()
        if not events:
            return
        table = pa.table(
            {
                "message_id": [e.messageId for e in events],
                "type": [e.type for e in events],
                "event": [e.event for e in events],
                "user_id": [e.userId for e in events],
                "anonymous_id": [e.anonymousId for e in events],
                "timestamp": [e.timestamp for e in events],
                "received_at": [datetime.now(UTC)] * len(events),
                "properties": [json.dumps(e.properties) for e in events],
                "context": [json.dumps(e.context) for e in events],
                "payload": [e.model_dump_json() for e in events],
            }
        )
        self.files += 1
        tmp = self.root / f".part-{os.getpid()}-{self.files}.parquet"
        pq.write_table(table, tmp)
        tmp.rename(self.root / f"part-{os.getpid()}-{self.files:06d}.parquet")


RING = RingBuffer(DATA / "ring.db")
LOADER = EventLoader(DATA)


async def publisher() -> None:
    """Ring buffer -> validated typed events -> EventLoader -> Parquet; then mark published."""
    while True:
        rows = RING.unpublished(5000)
        if rows:
            for _id, payload in rows:
                LOADER.add(SegmentEvent.model_validate_json(payload))
            RING.mark([r[0] for r in rows])
        if LOADER.due():
            LOADER.flush()
        await asyncio.sleep(0 if rows else 0.05)


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    task = asyncio.create_task(publisher())
    yield
    task.cancel()
    LOADER.flush()


app = FastAPI(lifespan=lifespan)


@app.post("/v1/track")
async def track(event: SegmentEvent) -> dict[str, bool]:
    event.type = "track"
    RING.append([event])
    return {"success": True}


@app.post("/v1/batch")
async def batch(body: SegmentBatch) -> dict[str, bool]:
    RING.append(body.batch)
    return {"success": True}


@app.get("/health")
async def health() -> dict[str, str]:
    return {"status": "ok"}
