"""The Litestar app: endpoints, the request path, health, CORS, error bodies, lifespan.

``create_app(settings)`` builds a ready-to-serve app. To mount the endpoints in your own Litestar
app, build a :class:`Collector` and include its router and lifespan::

    collector = Collector(Settings())
    app = Litestar(route_handlers=[collector.router(path="/api")], lifespan=[collector.lifespan])
"""

from __future__ import annotations

import base64
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from datetime import UTC, datetime
from typing import Any, Final
from urllib.parse import parse_qsl

import msgspec
from eventkit_core import BackpressureError, ConfigurationError, ErrorStore, EventStore
from litestar import Litestar, MediaType, Request, Response, Router, get, post
from litestar.config.cors import CORSConfig
from litestar.exceptions import HTTPException
from litestar.handlers import HTTPRouteHandler
from litestar.openapi.config import OpenAPIConfig

from eventkit_collector import __version__, vendors
from eventkit_collector.debugger import debugger_from
from eventkit_collector.edge import (
    DISCONNECTED_MESSAGE,
    ClientAddress,
    ClientDisconnected,
    EdgeError,
    Parsed,
    WriteKeys,
    basic_user,
    clip,
    decompress,
    error_body,
    is_form,
    key_id,
    parse_body,
    read_capped,
    receive_body,
    snowplow_app_ids,
    snowplow_pixel_body,
    snowplow_unauthorized,
    unauthorized,
    unwrap_form,
    wire_cap,
)
from eventkit_collector.envelope import Envelope
from eventkit_collector.metrics import CollectorMetrics, MetricsServer, install_metrics
from eventkit_collector.openapi import operation_class
from eventkit_collector.pipeline import Pipeline
from eventkit_collector.ratelimit import RateLimitConfig, build_rate_limiter
from eventkit_collector.routes import (
    CREDENTIALED_CORS_HEADERS,
    DESCRIPTION,
    Route,
    cors_config,
    credentialed_cors,
    credentialed_paths,
    ingest_routes,
    path_stream,
)
from eventkit_collector.segment_cdn import SegmentCdn
from eventkit_collector.settings import Settings
from eventkit_collector.vendors import VENDOR_KINDS
from eventkit_collector.wiring import build_pipeline, build_publish_ack, ip_policy

log = logging.getLogger("eventkit_collector")

SUCCESS: Final = b'{"success":true}'
JSON: Final = "application/json"
#: ``(status, body, extra headers)`` of an ingest answer.
Answer = tuple[int, bytes, dict[str, str] | None]


def _json(status: int, body: bytes, headers: dict[str, str] | None = None) -> Response[bytes]:
    return Response(content=body, status_code=status, media_type=JSON, headers=headers)


def overloaded(exc: BackpressureError) -> Answer:
    """The 503 answer to a refused request: ``overloaded`` with ``Retry-After``."""
    retry = max(1, round(exc.retry_after))
    return (
        503,
        error_body("overloaded", f"{exc.message} (retry after {retry} s)"),
        {"Retry-After": str(retry)},
    )


class Collector:
    """The collector behind the endpoints: settings, pipeline, metrics and the request path.

    Fully built by its constructor (a bad rules file raises ConfigurationError here);
    :meth:`start` opens the ring buffer and starts the background work.
    """

    def __init__(
        self,
        settings: Settings | None = None,
        *,
        shard: int | None = None,
        metrics_port: int | None = None,
        event_store: EventStore | None = None,
        error_store: ErrorStore | None = None,
    ) -> None:
        self.settings = s = settings or Settings()
        # The SDK goes in before any library creates its instruments.
        if s.eventkit_metrics_enabled:
            install_metrics()
        self.metrics = CollectorMetrics() if s.eventkit_metrics_enabled else None
        if (event_store is None) != (error_store is None):
            raise ConfigurationError("give both event_store and error_store, or neither")
        stores = None if event_store is None or error_store is None else (event_store, error_store)
        #: The live debugger (/debugger): its tap sees every adapted item of this worker.
        self.debugger = debugger_from(s, lambda: self.pipeline.shard)
        self.pipeline: Pipeline = build_pipeline(
            s, counts=self.metrics, shard=shard, stores=stores, tap=self.debugger.tap
        )
        # EVENTKIT_ACK_MODE=publish: requests are answered once published, not once committed.
        self.publish_ack = build_publish_ack(s, self.pipeline.config)
        self._accept = self.pipeline.accept if self.publish_ack is None else self.publish_ack.accept
        if self.metrics is not None:
            self.metrics.watch_health(self.pipeline.health)
        self.metrics_port = s.eventkit_metrics_port if metrics_port is None else metrics_port
        self.metrics_server: MetricsServer | None = None
        self.keys = WriteKeys(s.eventkit_write_keys)
        self.snowplow_app_ids = frozenset(s.eventkit_snowplow_app_ids)
        self.client_address = ClientAddress(s.eventkit_trusted_proxies)
        self.limits = self.pipeline.limits
        #: The User-Agent copied into context.userAgent is cut to this many characters.
        self.max_user_agent = s.eventkit_max_user_agent_bytes
        self.routes: list[Route] = ingest_routes(self.pipeline.type_streams)
        #: EVENTKIT_IP_MODE: the ring buffer entry keeps the IP of the least private stream.
        self.ip_policy = ip_policy(s)
        #: EVENTKIT_RATE_LIMIT: ``None`` when no request is ever limited.
        self.rate_limiter = build_rate_limiter(
            RateLimitConfig(
                rate=s.eventkit_rate_limit,
                burst=s.eventkit_rate_limit_burst,
                overrides=s.eventkit_rate_limit_keys,
                write_keys=s.eventkit_write_keys,
                workers=s.eventkit_workers,
                shared_path=s.rate_limit_path,
            )
        )

    # -- lifespan ----------------------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def lifespan(self, app: Litestar | None = None) -> AsyncIterator[None]:
        await self.start()
        try:
            yield
        finally:
            await self.stop()

    async def start(self) -> None:
        if self.metrics is not None and self.metrics_server is None:
            self.metrics_server = MetricsServer(
                self.settings.eventkit_metrics_host, self.metrics_port, self.pipeline.ready
            )
            self.metrics_server.start()
            self.metrics_port = self.metrics_server.port
        await self.pipeline.start()
        self.debugger.tap.start()
        if self.publish_ack is not None:
            await self.publish_ack.start()
        s = self.settings
        log.info(
            "pipeline started: shard %s, queue %s, store %s, data dir %s",
            self.pipeline.shard,
            s.eventkit_queue_mode,
            s.eventkit_event_store,
            s.eventkit_data_dir,
        )

    async def stop(self) -> None:
        self.debugger.close()
        try:
            await self.debugger.tap.stop()
            if self.publish_ack is not None:
                await self.publish_ack.stop()
            await self.pipeline.stop()
        finally:
            if self.metrics_server is not None:
                self.metrics_server.stop()
                self.metrics_server = None

    # -- the request path --------------------------------------------------------------------

    async def ingest(
        self, request: Request[Any, Any, Any], route: Route, path_name: str | None = None
    ) -> Response[bytes]:
        """The Litestar face of :meth:`ingest_raw`."""
        client = request.scope.get("client")
        try:
            status, body, headers = await self.ingest_raw(
                request.headers,
                request.scope.get("query_string", b""),
                client[0] if client else None,
                # not request.stream(): it makes a disconnect a 500
                receive_body(request.receive),
                route,
                path_name,
            )
        except ClientDisconnected:  # nobody is listening; the answer is for logs and metrics
            return _json(400, error_body("invalid_request", DISCONNECTED_MESSAGE))
        return _json(status, body, headers)

    async def ingest_raw(
        self,
        headers: Mapping[str, str],
        query: bytes,
        peer: str | None,
        chunks: AsyncIterator[bytes],
        route: Route,
        path_name: str | None = None,
    ) -> Answer:
        """Auth, read, check, append to the ring buffer; ``(status, body, headers)``.

        ``path_name``: the ``{stream}`` of ``/collect/{stream}`` (checked here, before anything
        is read). Never raises for anything a client sends, except :class:`ClientDisconnected`
        when the client goes away before the whole body arrived (there is nobody to answer).
        """
        if route.kind in VENDOR_KINDS:  # PostHog, Amplitude: their own bodies and answers
            return await self.ingest_vendor(headers, query, peer, chunks, route)
        try:
            stream = path_stream(path_name or "") if route.stream_from_path else route.stream
            self.pipeline.check_capacity()
            write_key_id = (
                self._header_key(headers.get("authorization"), query)
                if route.auth == "write_key"
                else None
            )
            charged = self._throttle(write_key_id, peer, headers, route.auth == "write_key")
            form = is_form(headers.get("content-type"))  # 415 before the body is read
            cap = wire_cap(route.kind, self.limits)
            wire = data = await read_capped(chunks, headers.get("content-length"), cap)
            encoding = headers.get("content-encoding")
            if encoding:
                data = decompress(data, encoding, self.limits.max_batch_bytes)
            form_key: str | None = None
            if form:
                data, form_key = unwrap_form(data)
            # A gzipped JSON body stays compressed in the ring buffer (about 10x smaller).
            gzipped = not form and data is not wire and wire[:2] == b"\x1f\x8b"
            parsed = parse_body(route.kind, data, self.limits)
            if route.auth == "snowplow_app_id":
                self._check_snowplow_app_ids(parsed)
            elif write_key_id is None:
                write_key_id = self._body_key(parsed.write_key or form_key)
            if not charged:
                self._throttle(write_key_id, peer, headers, True)
            request_id = headers.get("x-request-id")
            env = Envelope(
                source=route.source,
                stream=stream,
                received_at=datetime.now(UTC),
                body=wire if gzipped else data,
                gzip=gzipped,
                ip=self.ip_policy.ring_ip(self._client_ip(peer, headers)),
                user_agent=clip(headers.get("user-agent"), self.max_user_agent),
                write_key_id=write_key_id,
                request_id=request_id[:128] if request_id else None,
            )
            await self._accept(env, parsed, len(data))
            if self.metrics is not None:
                self.metrics.received(len(parsed.items))
            return 200, SUCCESS, None
        except EdgeError as exc:
            return exc.status, exc.body(), exc.headers or None
        except BackpressureError as exc:
            return overloaded(exc)

    async def ingest_vendor(
        self,
        headers: Mapping[str, str],
        query: bytes,
        peer: str | None,
        chunks: AsyncIterator[bytes],
        route: Route,
    ) -> Answer:
        """:meth:`ingest_raw` for PostHog's and Amplitude's endpoints (see ``vendors``).

        Their write key is PostHog's ``api_key`` / ``token`` or Amplitude's ``api_key`` (in the
        body, or in the query string); the answers are the API's own bodies.
        """
        data: bytes | None = None
        try:
            self.pipeline.check_capacity()
            params = vendors.query_params(query)
            write_key_id = self._vendor_query_key(vendors.query_key(params))
            charged = self._throttle(write_key_id, peer, headers, True)
            wire = data = await read_capped(
                chunks, headers.get("content-length"), wire_cap(route.kind, self.limits)
            )
            body = vendors.read_body(route.kind, wire, headers, params, self.limits)
            data = body.data
            if write_key_id is None:
                write_key_id = self._body_key(body.parsed.write_key)
            if not charged:
                self._throttle(write_key_id, peer, headers, True)
            request_id = headers.get("x-request-id")
            env = Envelope(
                source=body.source,
                stream=None,
                received_at=datetime.now(UTC),
                body=wire if body.gzipped else body.data,
                gzip=body.gzipped,
                ip=self.ip_policy.ring_ip(self._client_ip(peer, headers)),
                user_agent=headers.get("user-agent"),
                write_key_id=write_key_id,
                request_id=request_id[:128] if request_id else None,
            )
            await self._accept(env, body.parsed, len(body.data))
            if self.metrics is not None:
                self.metrics.received(len(body.parsed.items))
            return 200, vendors.success(body.source, len(body.parsed.items), len(wire)), None
        except EdgeError as exc:
            source = vendors.error_source(route.kind, data)
            return (
                exc.status,
                vendors.error(source, exc.status, exc.code, exc.message),
                exc.headers or None,
            )
        except BackpressureError as exc:
            status, _body, extra = overloaded(exc)
            source = vendors.error_source(route.kind, data)
            return status, vendors.error(source, status, "overloaded", exc.message), extra

    def _vendor_query_key(self, presented: str | None) -> str | None:
        """The write key id of a vendor's ``?api_key=`` / ``?token=``; 401 if unknown."""
        if presented is None:
            return None
        if not self.keys.enabled:
            return key_id(presented)
        found = self.keys.check(presented)
        if found is None:
            raise unauthorized()
        return found

    def _header_key(self, authorization: str | None, query: bytes) -> str | None:
        """The write key id from the Authorization header or the query string.

        With keys configured, a key presented there that is not one of them is refused before
        the body is read.
        """
        presented = basic_user(authorization)
        if presented is None and query and b"writeKey" in query:
            presented = dict(parse_qsl(query.decode("latin-1"))).get("writeKey") or None
        if presented is None:
            return None
        if not self.keys.enabled:
            return key_id(presented)
        found = self.keys.check(presented)
        if found is None:
            raise unauthorized()
        return found

    def _body_key(self, body_key: str | None) -> str | None:
        """The write key id from the body, when none came in the headers; 401 if one is needed."""
        if not self.keys.enabled:
            return None if body_key is None else key_id(body_key)
        found = self.keys.check(body_key)
        if found is None:
            raise unauthorized()
        return found

    def _check_snowplow_app_ids(self, parsed: Parsed) -> None:
        """With write keys on, every event of a Snowplow request must name an allowed app id."""
        if not self.keys.enabled:
            return
        refused = {a for a in snowplow_app_ids(parsed) if a not in self.snowplow_app_ids}
        if refused:
            raise snowplow_unauthorized(refused)

    async def ingest_pixel(
        self, headers: Mapping[str, str], query: bytes, peer: str | None, route: Route
    ) -> Answer:
        """``GET /i``: the query parameters are the event (stored as a one-event tp2 body)."""
        try:
            body = snowplow_pixel_body(query)
        except EdgeError as exc:
            return exc.status, exc.body(), exc.headers or None
        # A GET has no body: headers that would describe one must not apply to ours.
        kept = {k: v for k, v in headers.items() if not k.lower().startswith("content-")}
        return await self.ingest_raw(kept, b"", peer, _one_chunk(body), route)

    def _throttle(
        self, key: str | None, peer: str | None, headers: Mapping[str, str], needs_key: bool
    ) -> bool:
        """Charge the request to its rate-limit bucket (429 past it); False: not known yet."""
        if self.rate_limiter is None:
            return True
        return self.rate_limiter.charge(key, needs_key, self._client_ip(peer, headers))

    def _client_ip(self, peer: str | None, headers: Mapping[str, str]) -> str | None:
        if not self.client_address.enabled:
            return peer
        return self.client_address.resolve(peer, headers.get("x-forwarded-for"))

    # -- routing -----------------------------------------------------------------------------

    def handlers(self) -> list[HTTPRouteHandler]:
        """Every route handler (mount them with :meth:`router`)."""
        out = [self._handler(route) for route in self.routes]

        @get("/health", summary="Alive", tags=["health"], media_type=MediaType.JSON)
        async def health() -> Response[bytes]:
            return _json(200, b'{"status":"ok"}')

        @get("/ready", summary="Ring buffer writable, backends healthy", tags=["health"])
        async def ready() -> Response[bytes]:
            status = self.pipeline.health()
            ok = self.pipeline.started and all(status.values())
            body = {"status": "ready" if ok else "not_ready", "components": status}
            return _json(200 if ok else 503, msgspec.json.encode(body))

        out.extend([health, ready])
        s = self.settings
        cdn = SegmentCdn(self.keys, s.eventkit_segment_bundles_dir, s.eventkit_public_url)
        out.extend(cdn.handlers())
        out.extend(posthog_startup_handlers())
        out.extend(self.debugger.handlers())
        return out

    def _handler(self, route: Route) -> HTTPRouteHandler:
        if route.pixel:
            return self._pixel_handler(route)
        if route.stream_from_path:

            async def handler(request: Request[Any, Any, Any]) -> Response[bytes]:
                return await self._timed(request, route, request.path_params["stream"])

            paths: list[str] = ["/collect/{stream:str}"]
        else:

            async def handler(request: Request[Any, Any, Any]) -> Response[bytes]:
                return await self._timed(request, route)

            paths = list(route.paths)
        handler.__name__ = "ingest_" + "".join(
            c if c.isalnum() else "_" for c in route.label.strip("/")
        )
        return post(
            paths,
            status_code=200,
            summary=route.summary,
            description=route.description or DESCRIPTION,
            media_type=MediaType.JSON,
            tags=["ingest"],
            operation_class=operation_class(route.kind),
        )(handler)

    def _pixel_handler(self, route: Route) -> HTTPRouteHandler:
        async def handler(request: Request[Any, Any, Any]) -> Response[bytes]:
            start = time.perf_counter()
            client = request.scope.get("client")
            answer = await self.ingest_pixel(
                request.headers,
                request.scope.get("query_string", b""),
                client[0] if client else None,
                route,
            )
            status, body, media_type, headers = pixel_answer(answer, request.headers.get("accept"))
            if self.metrics is not None:
                self.metrics.request(route.label, "GET", status, time.perf_counter() - start)
            return Response(
                content=body, status_code=status, media_type=media_type, headers=headers
            )

        handler.__name__ = "ingest_snowplow_pixel"
        return get(
            list(route.paths),
            summary=route.summary,
            description="Answers a 1x1 GIF (200); errors keep their status, as JSON "
            '{"code", "message"} unless the Accept header asks for an image. Events that do not '
            "map go to the dead letters.",
            tags=["ingest"],
        )(handler)

    def router(self, path: str = "/") -> Router:
        """A Litestar :class:`Router` with every endpoint, to include in your own app."""
        return Router(path=path, route_handlers=self.handlers())

    async def _timed(
        self, request: Request[Any, Any, Any], route: Route, path_name: str | None = None
    ) -> Response[bytes]:
        start = time.perf_counter()
        response = await self.ingest(request, route, path_name)
        if self.metrics is not None:
            self.metrics.request(
                route.label, "POST", response.status_code or 200, time.perf_counter() - start
            )
        return response


async def _one_chunk(body: bytes) -> AsyncIterator[bytes]:
    yield body


#: A transparent 1x1 GIF: what a tracking pixel answers.
PIXEL_GIF: Final = base64.b64decode("R0lGODlhAQABAIAAAAAAAP///yH5BAEAAAAALAAAAAABAAEAAAIBRAA7")
_PIXEL_HEADERS: Final = {"Cache-Control": "no-cache, no-store, must-revalidate"}


def _wants_image(accept: str | None) -> bool:
    # An <img> asks for image/*; an HTTP client (the Python tracker) sends */* and reads JSON.
    if not accept:
        return False
    return "image/" in accept and "application/json" not in accept


def pixel_answer(answer: Answer, accept: str | None) -> tuple[int, bytes, str, dict[str, str]]:
    """``(status, body, media type, headers)`` of a pixel request's answer.

    Success is the GIF. An error keeps its status; its body is the GIF when the client asks for
    an image (the code is then in ``X-Eventkit-Error``), else the JSON ``{"code", "message"}``.
    """
    status, body, extra = answer
    headers = {**_PIXEL_HEADERS, **(extra or {})}
    if status == 200:
        return status, PIXEL_GIF, "image/gif", headers
    if _wants_image(accept):
        try:
            headers["X-Eventkit-Error"] = str(msgspec.json.decode(body)["code"])
        except (msgspec.DecodeError, KeyError, TypeError):
            headers["X-Eventkit-Error"] = "error"
        return status, PIXEL_GIF, "image/gif", headers
    return status, body, JSON, headers


def posthog_startup_handlers() -> list[HTTPRouteHandler]:
    """The endpoints posthog-js calls when it starts, answering valid empty configurations."""

    @post(
        ["/flags", "/decide"],
        status_code=200,
        summary="PostHog feature flags: none",
        tags=["posthog"],
        media_type=MediaType.JSON,
    )
    async def posthog_flags() -> Response[bytes]:
        return _json(200, vendors.flags())

    @get(
        "/array/{token:str}/config",
        summary="PostHog remote configuration: every optional feature off",
        tags=["posthog"],
        media_type=MediaType.JSON,
    )
    async def posthog_config(request: Request[Any, Any, Any]) -> Response[bytes]:
        token = request.path_params["token"]
        return _json(200, msgspec.json.encode(vendors.remote_config(token)))

    @get(
        "/array/{token:str}/config.js",
        summary="PostHog remote configuration, as the script posthog-js loads",
        tags=["posthog"],
    )
    async def posthog_config_js(request: Request[Any, Any, Any]) -> Response[bytes]:
        return Response(
            content=vendors.remote_config_js(request.path_params["token"]),
            status_code=200,
            media_type="application/javascript",
        )

    return [posthog_flags, posthog_config, posthog_config_js]


def _path(request: Request[Any, Any, Any]) -> str:
    # Not request.url: it decodes the query string as UTF-8 and raises on other bytes.
    path = str(request.scope.get("path", ""))
    return path if len(path) <= 200 else path[:200] + "..."


def _exception_handlers() -> dict[
    Any, Callable[[Request[Any, Any, Any], Exception], Response[bytes]]
]:
    def http_error(request: Request[Any, Any, Any], exc: Exception) -> Response[bytes]:
        assert isinstance(exc, HTTPException)
        status = exc.status_code
        code = {
            400: "invalid_request",
            404: "not_found",
            405: "method_not_allowed",
            413: "payload_too_large",
        }.get(status, "http_error" if status < 500 else "internal_error")
        message = {
            404: f"no endpoint at {_path(request)}: see /schema for the endpoints",
            405: f"{request.method} is not allowed on {_path(request)}: see /schema",
        }.get(status, str(exc.detail))
        headers = dict(exc.headers or {})
        return _json(status, error_body(code, message), headers or None)

    def server_error(request: Request[Any, Any, Any], exc: Exception) -> Response[bytes]:
        log.exception("unexpected error on %s %s", request.method, _path(request), exc_info=exc)
        return _json(
            500,
            error_body("internal_error", "the collector failed unexpectedly: retry; it is logged"),
        )

    return {HTTPException: http_error, Exception: server_error}


_CORS_REFUSED: Final = error_body(
    "invalid_request",
    "CORS preflight refused: the origin, method or headers are not allowed; "
    "allowed origins are set by EVENTKIT_CORS_ORIGINS",
)
_CORS_REFUSED_HEADERS: Final = [
    (b"content-type", b"application/json"),
    (b"content-length", str(len(_CORS_REFUSED)).encode()),
]
_CORS_FLAG: Final = "eventkit_cors_refused"


async def _cors_refusal_as_json(message: Any, scope: Any) -> None:
    """``before_send``: Litestar's CORS middleware refuses a preflight in text; answer in JSON."""
    if scope.get("method") != "OPTIONS":
        return
    if message["type"] == "http.response.start":
        if message["status"] == 400 and any(
            k.lower() == b"content-type" and v.startswith(b"text/plain")
            for k, v in message.get("headers", ())
        ):
            message["headers"] = list(_CORS_REFUSED_HEADERS)
            scope[_CORS_FLAG] = True
    elif message["type"] == "http.response.body" and scope.get(_CORS_FLAG):
        message["body"] = _CORS_REFUSED
        message["more_body"] = False


def _credentialed_cors_hook(
    config: CORSConfig | None, paths: frozenset[str]
) -> Callable[[Any, Any], Awaitable[None]]:
    """``before_send``: on credentialed endpoints (Snowplow), preflights and answers echo the
    allowed Origin with ``Access-Control-Allow-Credentials: true`` instead of Litestar's ``*``."""

    async def hook(message: Any, scope: Any) -> None:
        if message["type"] != "http.response.start" or scope.get("path") not in paths:
            return
        origin = next((v for k, v in scope.get("headers", ()) if k.lower() == b"origin"), None)
        if origin is None:
            return
        kept = [
            (k, v)
            for k, v in message.get("headers", ())
            if k.lower() not in CREDENTIALED_CORS_HEADERS
        ]
        message["headers"] = kept + credentialed_cors(config, origin)

    return hook


def create_app(
    settings: Settings | None = None,
    *,
    collector: Collector | None = None,
    shard: int | None = None,
    metrics_port: int | None = None,
) -> Litestar:
    """A ready-to-serve Litestar app (settings from the environment when not given)."""
    collector = collector or Collector(settings, shard=shard, metrics_port=metrics_port)
    cors = cors_config(collector.settings.eventkit_cors_origins)
    app = Litestar(
        route_handlers=collector.handlers(),
        lifespan=[collector.lifespan],
        cors_config=cors,
        exception_handlers=_exception_handlers(),
        openapi_config=OpenAPIConfig(
            title="eventkit collector", version=__version__, path="/schema"
        ),
        logging_config=None,
        request_max_body_size=None,
        before_send=[
            _cors_refusal_as_json,
            _credentialed_cors_hook(cors, credentialed_paths(collector.routes)),
        ],
    )
    app.state.collector = collector
    return app
