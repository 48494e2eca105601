"""A raw-ASGI front for the ingest endpoints; everything else goes to the Litestar app.

The ingest POSTs are the hot path: the Litestar stack (middleware, routing, signature model,
response object) costs more than the rest of a small request. This front answers exactly the
same paths with the same code (:meth:`Collector.ingest_raw`), the same error bodies, CORS headers
and metrics, and hands every other request (health, OpenAPI, CORS preflights, 404/405) to the
Litestar app it wraps. The Litestar handlers stay in place: they serve the same endpoints when the
collector's router is mounted in a user's own app.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any, Final

from eventkit_core import is_valid_stream
from eventkit_core.streams import STREAM_RULE

from eventkit_collector.app import Collector
from eventkit_collector.edge import ClientDisconnected, EdgeError, Kind, receive_body

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

_WANTED: Final = frozenset(
    {
        b"authorization",
        b"content-length",
        b"content-encoding",
        b"content-type",
        b"user-agent",
        b"x-forwarded-for",
        b"x-request-id",
        b"origin",
    }
)
_JSON_HEADERS: Final = [(b"content-type", b"application/json")]


class FastIngest:
    """ASGI app: ingest POSTs handled directly, the rest passed to ``app``."""

    def __init__(self, app: Any, collector: Collector) -> None:
        self.app: ASGIApp = app
        self.collector = collector
        self.routes = collector.routes()
        origins = collector.settings.eventkit_cors_origins
        self._any_origin = "*" in origins
        self._origins = frozenset(o.encode("latin-1") for o in origins)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "POST":
            path: str = scope["path"]
            route = self.routes.get(path)
            if route is not None:
                label, kind, source, stream = route
                await self._ingest(scope, receive, send, label, kind, source, stream)
                return
            if path.startswith("/collect/") and path.count("/") == 2:
                name = path[9:]
                if not is_valid_stream(name):
                    await self._reject(scope, send, name)
                    return
                await self._ingest(
                    scope, receive, send, "/collect/{stream}", Kind.COLLECT, "collect", name
                )
                return
        await self.app(scope, receive, send)

    async def _ingest(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        label: str,
        kind: Kind,
        source: str,
        stream: str | None,
    ) -> None:
        start = time.perf_counter()
        headers: dict[str, str] = {}
        origin: bytes | None = None
        for name, value in scope["headers"]:
            if name in _WANTED:
                if name == b"origin":
                    origin = value
                headers[name.decode("latin-1")] = value.decode("latin-1")
        client = scope.get("client")
        try:
            status, body, extra = await self.collector.ingest_raw(
                headers,
                scope.get("query_string", b""),
                client[0] if client else None,
                receive_body(receive),
                kind,
                source,
                stream,
            )
        except ClientDisconnected:  # nobody is listening: no answer
            return
        await self._send(send, status, body, extra, origin)
        metrics = self.collector.metrics
        if metrics is not None:
            metrics.request(label, "POST", status, time.perf_counter() - start)

    async def _reject(self, scope: Scope, send: Send, name: str) -> None:
        shown = repr(name) if len(name) <= 80 else repr(name[:80] + "...")
        exc = EdgeError(400, "invalid_stream", f"stream name {shown} is invalid: {STREAM_RULE}")
        origin = next((v for k, v in scope["headers"] if k == b"origin"), None)
        await self._send(send, exc.status, exc.body(), None, origin)
        metrics = self.collector.metrics
        if metrics is not None:
            metrics.request("/collect/{stream}", "POST", exc.status, 0.0)

    async def _send(
        self,
        send: Send,
        status: int,
        body: bytes,
        extra: dict[str, str] | None,
        origin: bytes | None,
    ) -> None:
        headers = [*_JSON_HEADERS, (b"content-length", str(len(body)).encode())]
        if origin is not None:
            if self._any_origin:
                headers.append((b"access-control-allow-origin", b"*"))
            elif origin in self._origins:
                headers.append((b"access-control-allow-origin", origin))
                headers.append((b"vary", b"Origin"))
        if extra:
            headers.extend(
                (k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in extra.items()
            )
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})


def create_asgi(
    settings: Any = None, *, shard: int | None = None, metrics_port: int | None = None
) -> FastIngest:
    """The served ASGI app: :func:`create_app` behind the ingest fast path."""
    from eventkit_collector.app import create_app

    collector = Collector(settings, shard=shard, metrics_port=metrics_port)
    return FastIngest(create_app(collector=collector), collector)
