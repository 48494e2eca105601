"""The HTTP/1.1 connection: uvicorn's httptools protocol with the collector's limits and answers.

uvicorn answers a request its parser refuses (``Content-Length: abc``, a non-ASCII request line,
a bad chunk) itself, in plain text, before any ASGI code runs, and httptools sets no limit on the
size or number of headers, nor on how long a client may take to send them. This subclass (uvicorn
is pinned to the minor version it was written for) answers those requests with the collector's
JSON error body ``{"code", "message"}``, and adds:

- header limits: the request line and headers in bytes (431 ``headers_too_large``, 414
  ``uri_too_long`` for the URL alone) and the number of headers (431);
- a header timeout (from the first byte of a request, or from the connection, to the end of its
  headers) and a body timeout (from the end of the headers to the end of the body): 408
  ``request_timeout``, so a client that trickles bytes holds a connection for a bounded time.

The timers are armed only when a request spans several reads, so the common case (a request in
one read) costs nothing more than uvicorn's own.
"""

from __future__ import annotations

import asyncio
import http
import logging
from asyncio import TimerHandle
from dataclasses import dataclass
from typing import Any, ClassVar, Final

import httptools
from eventkit_core import EventkitError
from uvicorn.config import Config
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.server import ServerState

from eventkit_collector.edge import error_body, kb

log = logging.getLogger("eventkit_collector.http")


@dataclass(frozen=True, slots=True)
class ConnectionLimits:
    """What one connection may send, and for how long (the ``EVENTKIT_*`` settings)."""

    max_header_bytes: int = 16 * 1024
    max_headers: int = 100
    header_timeout: float = 10.0
    body_timeout: float = 30.0


class _Refused(EventkitError, ValueError):
    """Raised in a parser callback: the request gets this answer and the connection closes."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message, code=code)
        self.status = status


_BAD_REQUEST_HINT: Final = (
    "the request is not valid HTTP/1.1 ({detail}): check the request line, the headers "
    "(Content-Length must be a number) and the chunked encoding"
)


def error_response(status: int, code: str, message: str) -> bytes:
    """A complete HTTP/1.1 response with the JSON error body that closes the connection."""
    body = error_body(code, message)
    phrase = http.HTTPStatus(status).phrase
    head = (
        f"HTTP/1.1 {status} {phrase}\r\n"
        "content-type: application/json\r\n"
        f"content-length: {len(body)}\r\n"
        "connection: close\r\n\r\n"
    )
    return head.encode("ascii") + body


class EventkitHttpProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with JSON error answers, header limits and timeouts."""

    limits: ClassVar[ConnectionLimits] = ConnectionLimits()

    def __init__(
        self,
        config: Config,
        server_state: ServerState,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        super().__init__(config, server_state, app_state, _loop)
        #: Bytes of the current request's URL and headers so far, and its number of headers.
        self._head_bytes = 0
        self._header_count = 0
        #: Between on_message_begin and on_headers_complete / on_message_complete.
        self._in_head = False
        self._in_body = False
        self._timer: TimerHandle | None = None

    @classmethod
    def with_limits(cls, limits: ConnectionLimits) -> type[EventkitHttpProtocol]:
        """A subclass with these limits (uvicorn instantiates the class it is given)."""
        return type(cls.__name__, (cls,), {"limits": limits})

    # -- connection ------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        # A client that connects and sends nothing is closed after the header timeout.
        self._arm(self.limits.header_timeout, self._idle_timeout)

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        self._unset_keepalive_if_required()
        if self._in_head:
            # httptools buffers a header until its end: count what arrives while in the head,
            # so one endless header cannot grow the buffer past the limit (plus one read).
            self._head_bytes += len(data)
            if self._head_bytes > self.limits.max_header_bytes:
                self._refuse(self._head_too_large())
                return
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserCallbackError as exc:
            refused = exc.__context__
            if isinstance(refused, _Refused):
                self._refuse(refused)
            elif isinstance(refused, UnicodeDecodeError):  # uvicorn decodes the path as ASCII
                self._refuse(_bad_request("the request line is not ASCII"))
            else:
                self._refuse(_bad_request(str(refused or exc)))
            return
        except httptools.HttpParserError as exc:
            self._refuse(_bad_request(str(exc)))
            return
        except httptools.HttpParserUpgrade:
            self._upgrade()
            return
        self._after_feed()

    def _upgrade(self) -> None:
        if self._should_upgrade():
            self.handle_websocket_upgrade()
        # else: served as a plain HTTP request (uvicorn logs a warning per request here;
        # a client must not be able to fill the log).

    def _after_feed(self) -> None:
        """Arm the header or body timer when a request continues in a later read."""
        if self._timer is not None or self.transport.is_closing():
            return
        if self._in_head:
            self._arm(self.limits.header_timeout, self._head_timeout)
        elif self._in_body:
            self._arm(self.limits.body_timeout, self._body_timeout)

    # -- parser callbacks ------------------------------------------------------------------

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._head_bytes = 0
        self._header_count = 0
        self._in_head = True

    def on_url(self, url: bytes) -> None:
        super().on_url(url)
        self._head_bytes += len(url)
        limit = self.limits.max_header_bytes
        if len(self.url) > limit:
            raise _Refused(
                414,
                "uri_too_long",
                f"the URL is over {kb(limit)}; the limit is {kb(limit)} "
                "(EVENTKIT_MAX_HEADER_BYTES): send the data in the body",
            )

    def on_header(self, name: bytes, value: bytes) -> None:
        self._header_count += 1
        self._head_bytes += len(name) + len(value) + 4
        if self._header_count > self.limits.max_headers:
            raise _Refused(
                431,
                "headers_too_large",
                f"the request has more than {self.limits.max_headers} headers; the limit is "
                f"{self.limits.max_headers} (EVENTKIT_MAX_HEADERS): send fewer headers",
            )
        if self._head_bytes > self.limits.max_header_bytes:
            raise self._head_too_large()
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        self._in_head = False
        self._disarm()
        super().on_headers_complete()
        self._in_body = True

    def on_message_complete(self) -> None:
        self._in_body = False
        self._disarm()
        super().on_message_complete()

    # -- answers ---------------------------------------------------------------------------

    def _head_too_large(self) -> _Refused:
        limit = self.limits.max_header_bytes
        return _Refused(
            431,
            "headers_too_large",
            f"the request line and headers are over {kb(limit)}; the limit is {kb(limit)} "
            "(EVENTKIT_MAX_HEADER_BYTES): send smaller headers (a shorter User-Agent, fewer "
            "cookies)",
        )

    def _refuse(self, refused: _Refused) -> None:
        """Answer with the JSON error body (unless a response is under way) and close."""
        self._disarm()
        in_body = self._in_body
        self._in_head = self._in_body = False
        cycle = self.cycle
        if cycle is None or cycle.response_complete:
            # A new request (answer it), or the rest of the body of one already answered.
            answering = not in_body
        else:
            answering = not cycle.response_started
        if cycle is not None and not cycle.response_complete:
            # The application (if it runs) sees a disconnect and answers nothing.
            cycle.disconnected = True
            cycle.message_event.set()
        if answering and not self.transport.is_closing():
            self.transport.write(error_response(refused.status, refused.code, refused.message))
        self.transport.close()

    # -- timers ----------------------------------------------------------------------------

    def _arm(self, seconds: float, callback: Any) -> None:
        self._disarm()
        self._timer = self.loop.call_later(seconds, callback)

    def _disarm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _idle_timeout(self) -> None:
        self._timer = None
        if self._in_head:
            self._head_timeout()
        elif self.cycle is None and not self.transport.is_closing():
            self.transport.close()  # connected, never sent a byte

    def _head_timeout(self) -> None:
        self._timer = None
        seconds = self.limits.header_timeout
        self._refuse(
            _Refused(
                408,
                "request_timeout",
                f"the request headers did not arrive within {seconds:g} s "
                "(EVENTKIT_HEADER_TIMEOUT): send the whole request at once",
            )
        )

    def _body_timeout(self) -> None:
        self._timer = None
        seconds = self.limits.body_timeout
        self._refuse(
            _Refused(
                408,
                "request_timeout",
                f"the request body did not arrive within {seconds:g} s "
                "(EVENTKIT_BODY_TIMEOUT): nothing was accepted, send it again",
            )
        )


def _bad_request(detail: str) -> _Refused:
    return _Refused(400, "invalid_request", _BAD_REQUEST_HINT.format(detail=detail))
