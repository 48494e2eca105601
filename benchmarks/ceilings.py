"""The ceilings of ``benchmarks/side_by_side.py``: what Python does on one core with no work.

Served by the same server as the collector (uvicorn, httptools, uvloop) on the same core:

* :func:`hello` answers every request ``{"success":true}`` (read the body, no decode): the
  ceiling for single requests.
* :func:`decode_batch` reads the body and decodes the whole JSON with msgspec (every event
  becomes Python objects), then answers: the ceiling for batch events.

    uvicorn benchmarks.ceilings:hello --loop uvloop --http httptools
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import msgspec

Message = MutableMapping[str, Any]
_HEADERS = [(b"content-type", b"application/json"), (b"content-length", b"16")]
_OK = b'{"success":true}'


async def _body(receive: Callable[[], Awaitable[Message]]) -> bytes:
    parts: list[bytes] = []
    while True:
        message = await receive()
        parts.append(message.get("body", b""))
        if not message.get("more_body", False):
            return b"".join(parts)


async def _answer(send: Callable[[Message], Awaitable[None]], status: int = 200) -> None:
    await send({"type": "http.response.start", "status": status, "headers": _HEADERS})
    await send({"type": "http.response.body", "body": _OK})


async def hello(
    scope: Message,
    receive: Callable[[], Awaitable[Message]],
    send: Callable[[Message], Awaitable[None]],
) -> None:
    if scope["type"] != "http":
        return
    await _body(receive)
    await _answer(send)


async def decode_batch(
    scope: Message,
    receive: Callable[[], Awaitable[Message]],
    send: Callable[[Message], Awaitable[None]],
) -> None:
    if scope["type"] != "http":
        return
    try:
        msgspec.json.decode(await _body(receive))
    except msgspec.DecodeError:
        await _answer(send, 400)
        return
    await _answer(send)
