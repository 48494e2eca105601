"""A fault-injecting HTTP proxy for the retry tests (a test tool, not a collector feature).

It stands in front of a real collector and answers the first ``refuse`` ingest requests (POSTs, or
GETs to a path in ``get_paths``) itself, exactly as an overloaded collector does: 503, the
collector's JSON error body and ``Retry-After``; everything after that, and every preflight and
settings fetch, is passed through unchanged. Counting refusals, not a timer, keeps the tests
deterministic: each SDK must come back at least ``refuse`` times before anything lands.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

import httpx

#: Headers a proxy must not forward (RFC 9110 7.6.1), plus the ones httpx recomputes.
_HOP: frozenset[str] = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-connection",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "content-length",
    }
)
OVERLOADED = b'{"code":"overloaded","message":"the collector is overloaded (retry after 1 s)"}'


class FaultProxy:
    """``url`` forwards to ``upstream``; the first ``refuse`` ingest requests get 503.

    The ``Host`` header is forwarded as the client sent it, so the collector's settings document
    names the proxy (the browser's way in) as its apiHost. ``seen`` lists every request,
    preflights included (a browser's own log does not show those).
    """

    def __init__(
        self,
        upstream: str,
        refuse: int,
        retry_after: str = "1",
        status: int = 503,
        get_paths: Iterable[str] = (),
    ) -> None:
        self.upstream = upstream.rstrip("/")
        self.refuse = refuse
        self.retry_after = retry_after
        self.status = status
        self.get_paths = tuple(get_paths)
        self.refused: list[str] = []
        self.passed: list[str] = []
        self.seen: list[str] = []
        self._lock = threading.Lock()
        self._client = httpx.Client(timeout=30.0)
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                proxy.handle(self, True)

            def do_GET(self) -> None:
                ingest = urlsplit(self.path).path.startswith(proxy.get_paths or ("\0",))
                proxy.handle(self, ingest)

            def do_OPTIONS(self) -> None:
                proxy.handle(self, False)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def handle(self, req: BaseHTTPRequestHandler, ingest: bool) -> None:
        body = _read_body(req)
        with self._lock:
            fail = ingest and len(self.refused) < self.refuse
            self.seen.append(f"{req.command} {urlsplit(req.path).path}")
            (self.refused if fail else self.passed).append(f"{req.command} {req.path}")
        if fail:
            origin = req.headers.get("Origin")
            req.send_response(self.status)
            req.send_header("Content-Type", "application/json")
            req.send_header("Content-Length", str(len(OVERLOADED)))
            req.send_header("Retry-After", self.retry_after)
            if origin:  # CORS headers, so the browser lets the SDK read the 503 (credentials
                # too: Snowplow's tracker sends cookies, and "*" is refused with them)
                req.send_header("Access-Control-Allow-Origin", origin)
                req.send_header("Access-Control-Allow-Credentials", "true")
                req.send_header("Vary", "Origin")
            req.end_headers()
            req.wfile.write(OVERLOADED)
            return
        headers = {k: v for k, v in req.headers.items() if k.lower() not in _HOP}
        answer = self._client.request(
            req.command, self.upstream + req.path, headers=headers, content=body
        )
        req.send_response(answer.status_code)
        for key, value in answer.headers.multi_items():
            if key.lower() not in _HOP and key.lower() != "content-encoding":
                req.send_header(key, value)
        req.send_header("Content-Length", str(len(answer.content)))
        req.end_headers()
        req.wfile.write(answer.content)

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._client.close()


def _read_body(req: BaseHTTPRequestHandler) -> bytes:
    if req.headers.get("Transfer-Encoding", "").lower() == "chunked":
        out = bytearray()
        while True:
            size = int(req.rfile.readline().split(b";")[0].strip() or b"0", 16)
            if size == 0:
                req.rfile.readline()
                return bytes(out)
            out += req.rfile.read(size)
            req.rfile.readline()
    length = int(req.headers.get("Content-Length") or 0)
    return req.rfile.read(length) if length else b""
