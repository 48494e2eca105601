"""What Segment's browser library (analytics-next) fetches from its CDN, served by the collector.

analytics.js asks ``{cdnURL}/v1/projects/{writeKey}/settings`` at load, then sends events to the
``apiHost`` and ``protocol`` that document names, and lazy-loads chunk bundles from
``{cdn}/analytics-next/bundles/`` (webpack's public path, fixed when the script runs). So a site
pointed at the collector needs three things from it, all here:

- the settings document (:func:`settings_document`): ``apiHost`` and ``protocol`` say how the
  browser reached the collector (or ``EVENTKIT_PUBLIC_URL``), only the ``Segment.io`` destination
  is listed (more would make analytics.js fetch Segment's destination code), and its telemetry
  (``metrics.sampleRate``) is off, so nothing goes to ``/m``;
- the standalone script ``/analytics.js/v1/{writeKey}/analytics.min.js`` (the snippet's URL) and
  ``/analytics-next/bundles/{file}``, read from ``EVENTKIT_SEGMENT_BUNDLES_DIR`` (a copy of the npm
  package's ``dist/umd``) when it is set; a 404 with a message when not.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Final
from urllib.parse import urlsplit

import msgspec
from litestar import Request, Response, get
from litestar.handlers import HTTPRouteHandler

from eventkit_collector.edge import WriteKeys, error_body

#: Chunk file names webpack writes (``407.bundle.<hash>.js``, ``standalone.js``, maps, gzip).
_FILE_NAME: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,199}")
_TYPES: Final = {".js": "application/javascript", ".map": "application/json"}
#: The bundles' names carry their content hash; the standalone script's does not.
_IMMUTABLE: Final = "public, max-age=31536000, immutable"
_SHORT: Final = "public, max-age=300"


def api_endpoint(public_url: str | None, scheme: str, host: str | None) -> tuple[str, str]:
    """``(apiHost, protocol)`` for the settings document.

    analytics.js posts to ``{protocol}://{apiHost}/{t,i,p,...}`` and ``/b``; Segment's apiHost is
    ``api.segment.io/v1``, ours ends in ``/v1`` as well: the collector's short paths.

    ``public_url`` (``EVENTKIT_PUBLIC_URL``, e.g. ``https://collect.example.com``) wins: behind a
    TLS-terminating proxy the request's own scheme is not what browsers use. Otherwise the
    request's ``Host`` header and scheme, which is how this browser reached the collector.
    """
    if public_url:
        parts = urlsplit(public_url)
        return parts.netloc + parts.path.rstrip("/") + "/v1", parts.scheme or "https"
    return (host or "localhost") + "/v1", scheme


def settings_document(write_key: str, api_host: str, protocol: str) -> dict[str, Any]:
    """The CDN settings analytics-next needs: one destination (eventkit), telemetry off."""
    return {
        "integrations": {
            "Segment.io": {
                "apiKey": write_key,
                "apiHost": api_host,
                "protocol": protocol,
                "unbundledIntegrations": [],
                "addBundledMetadata": True,
                "maybeBundledConfigIds": {},
            }
        },
        "plan": {
            "track": {"__default": {"enabled": True, "integrations": {}}},
            "identify": {"__default": {"enabled": True}},
            "group": {"__default": {"enabled": True}},
        },
        "edgeFunction": {},
        "analyticsNextEnabled": True,
        "middlewareSettings": {},
        "enabledMiddleware": {},
        "metrics": {"sampleRate": 0},
        "legacyVideoPluginsEnabled": False,
        "remotePlugins": [],
    }


def _error(status: int, code: str, message: str) -> Response[bytes]:
    return Response(
        content=error_body(code, message), status_code=status, media_type="application/json"
    )


class SegmentCdn:
    """The route handlers of the settings document and the bundles."""

    def __init__(self, keys: WriteKeys, bundles_dir: Path | None, public_url: str | None) -> None:
        self.keys = keys
        self.bundles_dir = bundles_dir.resolve() if bundles_dir is not None else None
        self.public_url = public_url

    def handlers(self) -> list[HTTPRouteHandler]:
        # Path parameters are read from the request, not the signature (as app.py does).
        @get(
            "/v1/projects/{write_key:str}/settings",
            summary="Segment analytics.js CDN settings (apiHost = this collector)",
            tags=["segment-cdn"],
        )
        async def segment_settings(request: Request[Any, Any, Any]) -> Response[bytes]:
            return self.settings(request, request.path_params["write_key"])

        @get(
            "/analytics.js/v1/{write_key:str}/analytics.min.js",
            summary="analytics.js standalone script (from EVENTKIT_SEGMENT_BUNDLES_DIR)",
            tags=["segment-cdn"],
        )
        async def segment_script() -> Response[bytes]:
            return self.file("standalone.js", _SHORT)

        @get(
            "/analytics-next/bundles/{name:str}",
            summary="analytics.js chunk bundles (from EVENTKIT_SEGMENT_BUNDLES_DIR)",
            tags=["segment-cdn"],
        )
        async def segment_bundle(request: Request[Any, Any, Any]) -> Response[bytes]:
            return self.file(request.path_params["name"], _IMMUTABLE)

        return [segment_settings, segment_script, segment_bundle]

    def settings(self, request: Request[Any, Any, Any], write_key: str) -> Response[bytes]:
        # With keys configured an unknown key gets what Segment's CDN answers it: nothing to load.
        if self.keys.enabled and self.keys.check(write_key) is None:
            return _error(404, "unknown_write_key", "no source has this write key")
        host = request.headers.get("host")
        api_host, protocol = api_endpoint(
            self.public_url, str(request.scope.get("scheme", "http")), host
        )
        body = msgspec.json.encode(settings_document(write_key, api_host, protocol))
        return Response(
            content=body,
            media_type="application/json",
            headers={"Cache-Control": "public, max-age=60"},
        )

    def file(self, name: str, cache: str) -> Response[bytes]:
        if self.bundles_dir is None:
            return _error(
                404,
                "not_found",
                "analytics.js is not served here: set EVENTKIT_SEGMENT_BUNDLES_DIR to a copy of "
                "@segment/analytics-next's dist/umd directory, or host it on your site",
            )
        # One path segment of safe characters: never a path outside the directory.
        if not _FILE_NAME.fullmatch(name) or ".." in name:
            return _error(404, "not_found", f"no bundle named {name[:80]!r}")
        path = self.bundles_dir / name
        if not path.is_file():
            return _error(404, "not_found", f"no bundle named {name!r} in the bundles directory")
        return Response(
            content=path.read_bytes(),
            media_type=_TYPES.get(path.suffix, "application/octet-stream"),
            headers={"Cache-Control": cache},
        )
