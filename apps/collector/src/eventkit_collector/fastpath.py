"""A raw-ASGI front for the ingest endpoints; everything else goes to the Litestar app.

The ingest POSTs are the hot path: the Litestar stack (middleware, routing, signature model,
response object) costs more than the rest of a small request. This front serves the same route
table (:mod:`eventkit_collector.routes`) with the same code (:meth:`Collector.ingest_raw`), so the
same answers and error bodies, adds the CORS headers of the same :class:`CORSConfig`, counts the
same metrics, and hands every other request (health, OpenAPI, CORS preflights, 404/405) to the
Litestar app it wraps. The Litestar handlers stay in place: they serve the same endpoints when
the collector's router is mounted in a user's own app, or with ``EVENTKIT_INGEST_FRONT=false``.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any, Final, cast

from litestar import Litestar

from eventkit_collector.app import Collector, create_app
from eventkit_collector.edge import ClientDisconnected, receive_body
from eventkit_collector.routes import (
    COLLECT_PREFIX,
    Route,
    cors_config,
    credentialed_cors,
    exact_paths,
)
from eventkit_collector.settings import Settings

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]
Headers = list[tuple[bytes, bytes]]

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
#: Distinct origins whose CORS headers are kept ready (the rest are computed per request).
_ORIGIN_CACHE: Final = 256


class _Cors:
    """The headers Litestar's CORS middleware adds to a simple (non-preflight) response."""

    def __init__(self, origins: list[str]) -> None:
        self._config = cors_config(origins)
        self._cache: dict[bytes, Headers] = {}

    def headers(self, origin: bytes) -> Headers:
        found = self._cache.get(origin)
        if found is not None:
            return found
        config = self._config
        out: Headers = []
        if config is not None:
            text = origin.decode("latin-1")
            out = [(k.lower().encode(), v.encode()) for k, v in config.simple_headers.items()]
            if not config.is_allow_all_origins and config.is_origin_allowed(text):
                out += [(b"access-control-allow-origin", origin), (b"vary", b"Origin")]
        if len(self._cache) < _ORIGIN_CACHE:
            self._cache[origin] = out
        return out

    def credentialed(self, origin: bytes) -> Headers:
        """The headers of a credentialed endpoint (Snowplow): the Origin echoed, never ``*``."""
        return credentialed_cors(self._config, origin)


class FastIngest:
    """ASGI app: ingest POSTs handled directly, the rest passed to ``app``."""

    def __init__(self, app: Litestar, collector: Collector) -> None:
        # Litestar types its ASGI messages as TypedDicts; this front passes them through as is.
        self.app = cast(ASGIApp, app)
        self.collector = collector
        self.routes = exact_paths(collector.routes)
        self._collect_stream = next(r for r in collector.routes if r.stream_from_path)
        self._cors = _Cors(collector.settings.eventkit_cors_origins)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "POST":
            path: str = scope["path"]
            route = self.routes.get(path)
            if route is not None:
                await self._ingest(scope, receive, send, route, None)
                return
            if path.startswith(COLLECT_PREFIX) and path.count("/") == 2:
                name = path[len(COLLECT_PREFIX) :]
                await self._ingest(scope, receive, send, self._collect_stream, name)
                return
        await self.app(scope, receive, send)

    async def _ingest(
        self, scope: Scope, receive: Receive, send: Send, route: Route, path_name: str | None
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
                route,
                path_name,
            )
        except ClientDisconnected:  # nobody is listening: no answer
            return
        out = [*_JSON_HEADERS, (b"content-length", str(len(body)).encode())]
        if origin is not None:
            out += (
                self._cors.credentialed(origin) if route.credentials else self._cors.headers(origin)
            )
        if extra:
            out += [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in extra.items()]
        await send({"type": "http.response.start", "status": status, "headers": out})
        await send({"type": "http.response.body", "body": body})
        metrics = self.collector.metrics
        if metrics is not None:
            metrics.request(route.label, "POST", status, time.perf_counter() - start)


def create_asgi(
    settings: Settings | None = None, *, shard: int | None = None, metrics_port: int | None = None
) -> FastIngest:
    """The served ASGI app: :func:`create_app` behind the ingest front."""
    collector = Collector(settings, shard=shard, metrics_port=metrics_port)
    return FastIngest(create_app(collector=collector), collector)
