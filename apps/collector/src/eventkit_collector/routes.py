"""The ingest endpoints, listed once: both the Litestar app and the raw-ASGI front are built here.

A :class:`Route` says how an endpoint's body is read (:class:`~eventkit_collector.edge.Kind`),
which adapter its events go to (``source``) and which stream they land in. ``/collect/{stream}``
takes its stream from the path (:data:`COLLECT_STREAM`). Snowplow's two paths
(:func:`snowplow_routes`) authenticate by app id, allow CORS credentials, and ``GET /i`` answers
a pixel.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

from eventkit_core import DEFAULT_STREAM, validate_stream
from eventkit_core.errors import InvalidStreamError
from litestar.config.cors import CORSConfig

from eventkit_collector.edge import EdgeError, Kind

SEGMENT_CALLS: Final = ("identify", "track", "page", "screen", "group", "alias")
#: Segment's browser library posts to one-letter paths.
SHORT_PATHS: Final = {call[0]: call for call in SEGMENT_CALLS}
#: The one ingest path with a parameter: its last segment is the stream.
COLLECT_STREAM: Final = "/collect/{stream}"
COLLECT_PREFIX: Final = "/collect/"


@dataclass(frozen=True, slots=True)
class Route:
    """One ingest endpoint (several paths may serve it)."""

    #: Paths served; ``COLLECT_STREAM`` is the one template.
    paths: tuple[str, ...]
    #: The metric label (bounded: the canonical path or the template).
    label: str
    kind: Kind
    #: Which adapter reads the events: ``collect``, ``batch``, a Segment call or ``snowplow``.
    source: str
    #: Stream of every event; ``None`` on ``/v1/batch`` (each item goes by its type) and on
    #: ``/collect/{stream}`` (from the path).
    stream: str | None
    summary: str
    #: The HTTP method (Snowplow's pixel is the one ``GET``).
    method: str = "POST"
    #: ``"write_key"``, or ``"snowplow_app_id"``: Snowplow sends no key; with write keys on, its
    #: events must name an allowed app id (``EVENTKIT_SNOWPLOW_APP_IDS``).
    auth: str = "write_key"
    #: CORS answers echo the Origin with ``Access-Control-Allow-Credentials: true`` (the
    #: Snowplow JavaScript tracker sends cookies).
    credentials: bool = False
    #: Answer a 1x1 GIF (``GET /i``).
    pixel: bool = False
    #: The OpenAPI description, when not the Segment endpoints' :data:`DESCRIPTION`.
    description: str | None = None

    @property
    def stream_from_path(self) -> bool:
        return self.label == COLLECT_STREAM


def ingest_routes(type_streams: Mapping[str, str]) -> list[Route]:
    """Every ingest endpoint, in the order the OpenAPI document lists them."""
    routes = [
        Route(
            ("/collect",),
            "/collect",
            Kind.COLLECT,
            "collect",
            DEFAULT_STREAM,
            f"Any JSON to stream '{DEFAULT_STREAM}'",
        ),
        Route(
            (COLLECT_STREAM,),
            COLLECT_STREAM,
            Kind.COLLECT,
            "collect",
            None,
            "Any JSON (one value or an array) to the named stream",
        ),
    ]
    for call in SEGMENT_CALLS:
        stream = type_streams.get(call, DEFAULT_STREAM)
        routes.append(
            Route(
                (f"/v1/{call}", f"/v1/{call[0]}"),
                f"/v1/{call}",
                Kind.SINGLE,
                call,
                stream,
                f"Segment {call} (stream '{stream}')",
            )
        )
    routes.append(
        Route(
            ("/v1/batch", "/v1/b", "/beacon/v1/batch"),
            "/v1/batch",
            Kind.BATCH,
            "batch",
            None,
            "Segment batch: items routed by their own type",
        )
    )
    routes.extend(snowplow_routes())
    routes.extend(vendor_routes())
    return routes


SNOWPLOW_SOURCE: Final = "snowplow"
SNOWPLOW_POST_PATH: Final = "/com.snowplowanalytics.snowplow/tp2"
SNOWPLOW_PIXEL_PATH: Final = "/i"


def snowplow_routes() -> list[Route]:
    """Snowplow's tracker protocol: tp2 POST bodies and the ``GET /i`` pixel."""
    return [
        Route(
            (SNOWPLOW_POST_PATH,),
            SNOWPLOW_POST_PATH,
            Kind.SNOWPLOW,
            SNOWPLOW_SOURCE,
            None,
            "Snowplow tp2 payload_data: events routed by their type (e)",
            auth="snowplow_app_id",
            credentials=True,
        ),
        Route(
            (SNOWPLOW_PIXEL_PATH,),
            SNOWPLOW_PIXEL_PATH,
            Kind.SNOWPLOW,
            SNOWPLOW_SOURCE,
            None,
            "Snowplow tp1 pixel: one event in the query parameters; answers a 1x1 GIF",
            method="GET",
            pixel=True,
            auth="snowplow_app_id",
            credentials=True,
        ),
    ]


def vendor_routes() -> list[Route]:
    """PostHog's and Amplitude's endpoints (bodies read by :mod:`eventkit_collector.vendors`).

    Each event goes to the stream of the call it maps to (``EVENTKIT_TYPE_STREAMS``, overridden
    per source by ``EVENTKIT_SOURCE_STREAMS``). Paths are listed without their trailing slash:
    Litestar serves ``/e/`` at ``/e``, and :func:`exact_paths` lists both spellings.
    """
    return [
        Route(
            ("/capture", "/e", "/i/v0/e"),
            "/capture",
            Kind.POSTHOG,
            "posthog",
            None,
            "PostHog capture (posthog-js, posthog clients): one event, an array, or a batch",
            description=POSTHOG_DESCRIPTION,
        ),
        Route(
            ("/2/httpapi",),
            "/2/httpapi",
            Kind.AMPLITUDE,
            "amplitude",
            None,
            "Amplitude HTTP V2 API: {api_key, events}",
            description=AMPLITUDE_DESCRIPTION,
        ),
        Route(
            ("/batch",),
            "/batch",
            Kind.VENDOR_BATCH,
            "posthog",
            None,
            "PostHog batch ({api_key, batch}) or Amplitude Batch API ({api_key, events})",
            description=POSTHOG_DESCRIPTION + " " + AMPLITUDE_DESCRIPTION,
        ),
    ]


def credentialed_paths(routes: list[Route]) -> frozenset[str]:
    """Paths whose CORS answers allow credentials (echoed Origin, never ``*``)."""
    return frozenset(path for r in routes if r.credentials for path in r.paths)


def exact_paths(routes: list[Route]) -> dict[str, Route]:
    """Every fixed POST path -> its route (the front's lookup table).

    A vendor path is also listed with a trailing slash, as Litestar serves it (PostHog's
    clients post to ``/batch/`` and ``/e/``).
    """
    table = {
        path: r for r in routes if not r.stream_from_path and r.method == "POST" for path in r.paths
    }
    for r in routes:
        if r.kind in _VENDOR_KINDS:
            table.update({path + "/": r for path in r.paths})
    return table


_VENDOR_KINDS: Final = (Kind.POSTHOG, Kind.AMPLITUDE, Kind.VENDOR_BATCH)


def path_stream(name: str) -> str:
    """The stream named by a ``/collect/{stream}`` path; the ``invalid_stream`` answer if bad."""
    try:
        return validate_stream(name)
    except InvalidStreamError as exc:
        raise EdgeError(400, "invalid_stream", str(exc)) from None


def cors_config(origins: list[str]) -> CORSConfig | None:
    """CORS for both fronts (Litestar answers preflights; the front adds the same headers)."""
    if not origins:
        return None
    return CORSConfig(
        allow_origins=list(origins),
        allow_methods=["GET", "POST", "OPTIONS"],
        allow_headers=["*"],
        max_age=86400,
    )


#: The CORS response headers a credentialed endpoint sets (and replaces where Litestar set them).
CREDENTIALED_CORS_HEADERS: Final = frozenset(
    {b"access-control-allow-origin", b"access-control-allow-credentials", b"vary"}
)


def credentialed_cors(config: CORSConfig | None, origin: bytes) -> list[tuple[bytes, bytes]]:
    """CORS headers of a credentialed endpoint's answer to ``origin`` (none if not allowed).

    With credentials the Origin is echoed, never ``*`` (browsers refuse ``*`` with credentials),
    even when every origin is allowed.
    """
    if config is None or not config.is_origin_allowed(origin.decode("latin-1")):
        return []
    return [
        (b"access-control-allow-origin", origin),
        (b"access-control-allow-credentials", b"true"),
        (b"vary", b"Origin"),
    ]


DESCRIPTION: Final = (
    "Body: JSON (application/json, text/plain, or application/x-www-form-urlencoded carrying "
    'JSON), optionally Content-Encoding gzip/deflate. Answers 200 {"success": true} once the '
    "request is durable; 400 invalid_json / invalid_stream; 401 unauthorized; 413 "
    "payload_too_large; 503 overloaded with Retry-After. JSON that fails validation is accepted "
    "and dead-lettered."
)

POSTHOG_DESCRIPTION: Final = (
    "PostHog bodies: JSON, gzip (Content-Encoding, or posthog-js's text/plain gzip, with or without "
    '?compression=gzip-js), ?compression=base64 data= forms. Answers 200 {"status": 1} once the '
    "request is durable; errors carry code, message and PostHog's type and detail. Events that "
    "cannot be mapped are accepted and dead-lettered."
)
AMPLITUDE_DESCRIPTION: Final = (
    'Amplitude bodies {"api_key", "events"}. Answers 200 {"code": 200, "events_ingested": N, ...} '
    "once the request is durable; errors carry the numeric status as code. Events that cannot be "
    "mapped are accepted and dead-lettered."
)
