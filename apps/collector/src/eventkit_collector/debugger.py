"""The live event debugger: ``/debugger`` (a page) and ``/debugger/events`` (server-sent events).

How it works across worker processes:

* Each worker's :class:`DebugTap` sees every adapted item (a typed event or a dead letter, from
  :class:`~eventkit_collector.sinks.CountingAdapter`). While nobody watches it returns at once:
  it looks at the mtime of one marker file (``ring/debugger.watch``) at most once per
  :data:`CHECK_INTERVAL`, so the hot path costs one attribute read and one clock read.
* While a debugger page is open (the SSE handler touches the marker every few seconds, in
  whichever worker serves it) each tap keeps a small summary of up to :data:`MAX_PER_BATCH` items
  per batch in a bounded deque, and a background task appends them to :class:`SharedRing`: a
  SQLite file beside the ring buffer (``ring/debugger.db``) holding the last :data:`CAPACITY`
  records of every worker.
* The SSE handler reads the records after the last one it sent (``Last-Event-ID``, so a browser
  reconnecting resumes where it was) and streams them; the page filters them by stream, type and
  user.

Recording starts when the first page connects (within about a second) and stops
:data:`WATCH_GRACE` seconds after the last one went away. Access: with ``EVENTKIT_DEBUGGER_TOKEN``
set, the token is required (``?token=`` or ``Authorization: Bearer``); with write keys set and no
token, the debugger answers 401 (write keys are public in browser pages, so they cannot guard
the events); with neither, it is open (the collector listens on 127.0.0.1 by default).
``EVENTKIT_DEBUGGER=false`` turns it off (404).
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
import sqlite3
import threading
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Final
from urllib.parse import parse_qsl

import msgspec
from eventkit_core import DeadLetter, TypedEvent
from litestar import MediaType, Request, Response, get
from litestar.handlers import HTTPRouteHandler
from litestar.response import Stream

from eventkit_collector.debugger_page import PAGE
from eventkit_collector.edge import error_body

log = logging.getLogger("eventkit_collector.debugger")

Item = TypedEvent | DeadLetter

#: Records kept in the shared file (all workers together).
CAPACITY: Final = 2000
#: Records one worker keeps in memory between two writes (the oldest go first).
MAX_PENDING: Final = 1000
#: Items of one adapted batch recorded (the rest are counted as skipped).
MAX_PER_BATCH: Final = 200
#: Seconds between two looks at the marker file by a tap.
CHECK_INTERVAL: Final = 0.5
#: Taps keep recording this long after the marker was last touched.
WATCH_GRACE: Final = 10.0
#: Seconds between two touches of the marker by an open stream.
TOUCH_INTERVAL: Final = 2.0
#: Seconds between two reads of the shared file by an open stream, and two writes by a tap.
POLL_INTERVAL: Final = 0.2
#: Records sent when a page connects (the last ones).
HISTORY: Final = 300
#: A stream ends after this long; the browser reconnects at once (Last-Event-ID).
STREAM_SECONDS: Final = 60.0
#: Characters of properties / traits / a dead letter's payload shown.
PREVIEW_CHARS: Final = 600


def _clip(text: str | None) -> str | None:
    if text is None or len(text) <= PREVIEW_CHARS:
        return text
    return text[:PREVIEW_CHARS] + "..."


def _raw_text(raw: msgspec.Raw | None) -> str | None:
    return None if raw is None else _clip(bytes(raw).decode("utf-8", "replace"))


def _dead_letter_users(payload: str) -> tuple[str | None, str | None, str | None]:
    """``(type, userId, anonymousId)`` of a dead letter's payload, when it is a JSON object."""
    try:
        value = msgspec.json.decode(payload[:65536])
    except msgspec.DecodeError:
        return None, None, None
    if not isinstance(value, dict):
        return None, None, None

    def text(key: str) -> str | None:
        found = value.get(key)
        return None if found is None else str(found)[:200]

    return text("type"), text("userId"), text("anonymousId")


def record(item: Item, worker: int | None) -> dict[str, Any]:
    """The summary of one item that the page shows."""
    if isinstance(item, TypedEvent):
        return {
            "kind": "event",
            "stream": item.stream,
            "type": item.type,
            "event": item.event or item.name,
            "user_id": item.user_id,
            "anonymous_id": item.anonymous_id,
            "message_id": item.message_id,
            "received_at": item.received_at.isoformat(),
            "worker": worker,
            "details": _raw_text(item.properties) or _raw_text(item.traits),
        }
    kind, user_id, anonymous_id = _dead_letter_users(item.payload)
    return {
        "kind": "dead_letter",
        "stream": item.stream,
        # A body posted to /v1/track has no type: its source (the Segment call) says it.
        "type": kind or item.source,
        "user_id": user_id,
        "anonymous_id": anonymous_id,
        "message_id": item.message_id,
        "received_at": item.received_at.isoformat(),
        "worker": worker,
        "reason_code": item.reason_code,
        "reason": item.reason,
        "details": _clip(item.payload),
    }


class SharedRing:
    """The last :data:`CAPACITY` records of every worker, in one SQLite file (WAL)."""

    def __init__(self, path: Path, capacity: int = CAPACITY) -> None:
        self.path = path
        self.capacity = capacity
        self._lock = threading.Lock()
        self._db: sqlite3.Connection | None = None

    def _conn(self) -> sqlite3.Connection:
        if self._db is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            db = sqlite3.connect(self.path, timeout=5.0, check_same_thread=False)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=OFF")  # a debugging aid: losing it on a crash is fine
            db.execute(
                "CREATE TABLE IF NOT EXISTS recent "
                "(id INTEGER PRIMARY KEY AUTOINCREMENT, record BLOB NOT NULL)"
            )
            self._db = db
        return self._db

    def append(self, records: Sequence[bytes]) -> None:
        with self._lock:
            db = self._conn()
            with db:
                db.executemany("INSERT INTO recent (record) VALUES (?)", [(r,) for r in records])
                db.execute(
                    "DELETE FROM recent WHERE id <= (SELECT max(id) FROM recent) - ?",
                    (self.capacity,),
                )

    def after(self, last_id: int | None, limit: int = 500) -> list[tuple[int, bytes]]:
        """Records after ``last_id``; ``None``: the last :data:`HISTORY`."""
        if not self.path.exists():
            return []
        with self._lock:
            db = self._conn()
            if last_id is None:
                rows = db.execute(
                    "SELECT id, record FROM recent ORDER BY id DESC LIMIT ?", (HISTORY,)
                ).fetchall()
                rows.reverse()
            else:
                rows = db.execute(
                    "SELECT id, record FROM recent WHERE id > ? ORDER BY id LIMIT ?",
                    (last_id, limit),
                ).fetchall()
        return [(int(i), bytes(r)) for i, r in rows]

    def close(self) -> None:
        with self._lock:
            if self._db is not None:
                self._db.close()
                self._db = None


class DebugTap:
    """One worker's recorder: near-free while nobody watches; see the module docstring."""

    def __init__(
        self,
        ring: SharedRing,
        marker: Path,
        worker: Callable[[], int | None],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.ring = ring
        self.marker = marker
        self._worker = worker
        self._clock = clock
        self._watched = False
        self._next_check = 0.0
        self._pending: deque[dict[str, Any]] = deque(maxlen=MAX_PENDING)
        self.skipped = 0
        self._task: asyncio.Task[None] | None = None

    def watched(self) -> bool:
        now = self._clock()
        if now < self._next_check:
            return self._watched
        self._next_check = now + CHECK_INTERVAL
        try:
            age = time.time() - self.marker.stat().st_mtime
        except OSError:
            self._watched = False
        else:
            self._watched = age < WATCH_GRACE
        return self._watched

    def __call__(self, items: Sequence[Item]) -> None:
        if not self.watched():
            return
        worker = self._worker()
        pending = self._pending
        room = MAX_PENDING - len(pending)
        for item in items[:MAX_PER_BATCH]:
            pending.append(record(item, worker))
        self.skipped += max(0, len(items) - MAX_PER_BATCH) + max(
            0, min(len(items), MAX_PER_BATCH) - room
        )

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._write_loop(), name="eventkit-debugger")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await asyncio.to_thread(self.ring.close)

    def drain(self) -> list[bytes]:
        out = [msgspec.json.encode(r) for r in self._take()]
        if self.skipped:
            skipped, self.skipped = self.skipped, 0
            gap = {"kind": "skipped", "count": skipped, "worker": self._worker()}
            out.append(msgspec.json.encode(gap))
        return out

    def _take(self) -> list[dict[str, Any]]:
        out = []
        pending = self._pending
        while pending:
            out.append(pending.popleft())
        return out

    async def _write_loop(self) -> None:
        while True:
            await asyncio.sleep(POLL_INTERVAL if self._watched else 1.0)
            if not self._pending and not self.skipped:
                continue
            records = self.drain()
            try:
                await asyncio.to_thread(self.ring.append, records)
            except sqlite3.Error:
                log.warning("debugger: could not record %d items", len(records), exc_info=True)


def _presented_token(headers: Mapping[str, str], query: bytes) -> str | None:
    auth = headers.get("authorization") or ""
    if auth[:7].lower() == "bearer ":
        return auth[7:].strip()
    if query and b"token" in query:
        return dict(parse_qsl(query.decode("latin-1"))).get("token")
    return None


class Debugger:
    """The debugger of one worker: its tap, the page and the stream, and who may see them."""

    def __init__(
        self,
        ring_dir: Path,
        *,
        enabled: bool,
        token: str | None,
        keys_enabled: bool,
        worker: Callable[[], int | None],
    ) -> None:
        self.enabled = enabled
        self.token = token or None
        self.keys_enabled = keys_enabled
        self.marker = ring_dir / "debugger.watch"
        self.ring = SharedRing(ring_dir / "debugger.db")
        self.tap = DebugTap(self.ring, self.marker, worker)
        #: Set when the server shuts down: open streams end (uvicorn waits for them otherwise).
        self.closing = False

    def check(self, headers: Mapping[str, str], query: bytes) -> Response[bytes] | None:
        """``None`` when the request may see the debugger, else the JSON answer (401/404)."""
        if not self.enabled:
            message = "the debugger is off (EVENTKIT_DEBUGGER=false)"
            return _json(404, error_body("not_found", message))
        if self.token is None and not self.keys_enabled:
            return None
        if self.token is None:
            message = (
                "with write keys set the debugger needs its own token: set "
                "EVENTKIT_DEBUGGER_TOKEN and open /debugger?token=<it>"
            )
            return _json(401, error_body("unauthorized", message))
        presented = _presented_token(headers, query)
        if presented is not None and hmac.compare_digest(presented.encode(), self.token.encode()):
            return None
        message = "the debugger needs ?token= (or Authorization: Bearer) = EVENTKIT_DEBUGGER_TOKEN"
        return _json(401, error_body("unauthorized", message))

    def close(self) -> None:
        self.closing = True

    def touch(self) -> None:
        try:
            self.marker.parent.mkdir(parents=True, exist_ok=True)
            self.marker.touch()
        except OSError:
            log.warning("debugger: cannot touch %s", self.marker, exc_info=True)

    async def stream(self, last_id: int | None) -> AsyncIterator[bytes]:
        """Server-sent events: one ``item`` per record, a comment now and then."""
        yield b"retry: 1000\n: eventkit debugger\n\n"
        end = time.monotonic() + STREAM_SECONDS
        touched = 0.0
        while not self.closing and time.monotonic() < end:
            now = time.monotonic()
            if now - touched >= TOUCH_INTERVAL:
                touched = now
                self.touch()
                yield b": alive\n\n"
            rows = await asyncio.to_thread(self.ring.after, last_id)
            if rows:
                last_id = rows[-1][0]
                yield b"".join(b"id: %d\nevent: item\ndata: %s\n\n" % (i, r) for i, r in rows)
            elif last_id is None:
                last_id = 0
            await asyncio.sleep(POLL_INTERVAL)

    def handlers(self) -> list[HTTPRouteHandler]:
        # Not in the OpenAPI document: a page and its stream, not an API to generate clients for.
        @get("/debugger", include_in_schema=False)
        async def page(request: Request[Any, Any, Any]) -> Response[bytes]:
            refused = self.check(request.headers, request.scope.get("query_string", b""))
            if refused is not None:
                return refused
            self.touch()  # the taps start recording while the page loads
            return Response(
                content=PAGE,
                media_type=MediaType.HTML,
                headers={"Cache-Control": "no-store", "Content-Security-Policy": _CSP},
            )

        @get("/debugger/events", include_in_schema=False)
        async def events(request: Request[Any, Any, Any]) -> Response[bytes] | Stream:
            refused = self.check(request.headers, request.scope.get("query_string", b""))
            if refused is not None:
                return refused
            self.touch()
            last = request.headers.get("last-event-id")
            last_id = int(last) if last and last.isdigit() else None
            return Stream(
                self.stream(last_id),
                media_type="text/event-stream",
                headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
            )

        return [page, events]


#: The page loads nothing from elsewhere: its own script and style, its own origin's stream.
_CSP: Final = (
    "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; "
    "connect-src 'self'; img-src 'self' data:"
)


def _json(status: int, body: bytes) -> Response[bytes]:
    return Response(content=body, status_code=status, media_type=MediaType.JSON)


def debugger_from(settings: Any, worker: Callable[[], int | None]) -> Debugger:
    """The debugger of the collector's settings."""
    return Debugger(
        settings.ring_dir,
        enabled=settings.eventkit_debugger,
        token=settings.eventkit_debugger_token,
        keys_enabled=settings.auth_enabled,
        worker=worker,
    )
