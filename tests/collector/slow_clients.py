"""Slow clients (slowloris): many connections trickling bytes while normal clients send events.

Shared by ``tests/collector/test_col_slow_clients.py`` (asserts the normal clients keep
succeeding and the trickling ones are cut off with 408) and ``benchmarks/bench_slow_clients.py``
(reports the normal clients' latency during the trickle).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass, field

_TRACK = b'{"type": "track", "userId": "u-1", "event": "Normal"}'
_NORMAL = (
    b"POST /v1/track HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
    b"Content-Length: %d\r\n\r\n" % len(_TRACK) + _TRACK
)
_HEAD = b"POST /v1/track HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"


@dataclass
class Outcome:
    #: Seconds per normal request, in order.
    latencies: list[float] = field(default_factory=list)
    statuses: dict[int, int] = field(default_factory=dict)
    #: What each trickling connection got: an HTTP status, or 0 when closed without one.
    slow_answers: dict[int, int] = field(default_factory=dict)
    slow_opened: int = 0

    def p(self, q: float) -> float:
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else 0.0


async def _read_answer(reader: asyncio.StreamReader) -> int:
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            await reader.readexactly(int(line.split(b":", 1)[1]))
    return status


async def _trickler(
    port: int, index: int, interval: float, stop: asyncio.Event, out: Outcome
) -> None:
    """Half of them trickle their headers, the other half a body after complete headers."""
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
    except OSError:
        out.slow_answers[0] = out.slow_answers.get(0, 0) + 1
        return
    out.slow_opened += 1
    if index % 2:  # whole headers at once, then the body byte by byte
        writer.write(_HEAD + b"Content-Length: 20000\r\n\r\n")
        data = b'{"pad": "' + b"x" * 19_980
    else:
        data = _HEAD + b"X-Slow: " + b"s" * 100_000
    answer = asyncio.ensure_future(_read_answer(reader))
    try:
        for i in range(len(data)):
            if stop.is_set() or answer.done():
                break
            writer.write(data[i : i + 1])
            await asyncio.sleep(interval)
        status = 0
        with contextlib.suppress(Exception):
            status = await asyncio.wait_for(answer, 0.5) if not stop.is_set() else 0
        out.slow_answers[status] = out.slow_answers.get(status, 0) + 1
    finally:
        answer.cancel()
        writer.close()
        with contextlib.suppress(Exception):
            await writer.wait_closed()


async def _normal(port: int, stop: asyncio.Event, out: Outcome, pause: float) -> None:
    """One keep-alive client sending single events one after another (a new connection when
    the server closed the previous one)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        while not stop.is_set():
            start = time.perf_counter()
            try:
                writer.write(_NORMAL)
                status = await asyncio.wait_for(_read_answer(reader), 10)
            except (OSError, asyncio.IncompleteReadError, TimeoutError):
                status = 0
                writer.close()
                reader, writer = await asyncio.open_connection("127.0.0.1", port)
            out.latencies.append(time.perf_counter() - start)
            out.statuses[status] = out.statuses.get(status, 0) + 1
            await asyncio.sleep(pause)
    finally:
        writer.close()


async def run_slow_clients(
    port: int,
    *,
    slow: int = 500,
    normal: int = 4,
    seconds: float = 5.0,
    interval: float = 0.2,
    pause: float = 0.005,
) -> Outcome:
    """``slow`` trickling connections (one byte every ``interval`` s) for ``seconds``, while
    ``normal`` clients send single events."""
    out = Outcome()
    stop = asyncio.Event()
    slow_tasks = []
    for i in range(slow):
        slow_tasks.append(asyncio.ensure_future(_trickler(port, i, interval, stop, out)))
        if i % 50 == 49:
            await asyncio.sleep(0)  # let the connects go out
    normal_tasks = [asyncio.ensure_future(_normal(port, stop, out, pause)) for _ in range(normal)]
    await asyncio.sleep(seconds)
    stop.set()
    await asyncio.gather(*normal_tasks)
    await asyncio.gather(*slow_tasks, return_exceptions=True)
    return out
