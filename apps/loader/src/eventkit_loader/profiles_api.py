"""The Profile API: Segment's Profile API shape over the embedded warehouse's profiles.

``GET /v1/spaces/{space}/collections/users/profiles/{id}/{traits|external_ids|events|metadata}``
where ``{id}`` is ``type:value`` (``user_id:u1``, ``anonymous_id:a1``, ``email:x@example.com``)
or a profile id (``use_...``; a merged-away id still finds its profile). Basic auth with the
token as user name (any password), as Segment does. ``limit`` and cursor paging (``next``) as
Segment documents them; ``include`` (traits) is a comma-separated list of trait names. Every
error is JSON ``{"code", "message"}``: 400 bad parameters, 401 no or wrong token, 404 unknown
path or id, 503 warehouse unavailable. Served by ``eventkit-loader run --profiles-port``, which
holds the DuckDB file open and reads through cursors of that connection.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import json
import logging
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from eventkit_core import EventkitError
from eventkit_storage.identity_read import ProfileReader

__all__ = ["ApiError", "ProfilesServer", "handle"]

log = logging.getLogger("eventkit_loader")

#: (default, max) page size per resource, as Segment's Profile API has them.
LIMITS = {"traits": (10, 200), "external_ids": (25, 100), "events": (10, 100)}
SOURCE_ID = "eventkit"


class ApiError(EventkitError, ValueError):
    """A request the Profile API answers with a 4xx (or 503) and a ``{"code","message"}`` body."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message, code=code)
        self.status = status


def _limit(query: dict[str, list[str]], resource: str) -> int:
    default, most = LIMITS[resource]
    text = query.get("limit", [str(default)])[-1]
    if not text.isdigit() or not 1 <= int(text) <= most:
        raise ApiError(400, "invalid_limit", f"limit must be an integer from 1 to {most}")
    return int(text)


def _offset(query: dict[str, list[str]]) -> int:
    text = query.get("next", ["0"])[-1] or "0"
    if not text.isdigit():
        raise ApiError(400, "invalid_cursor", "next must be a cursor this API returned")
    return int(text)


def _cursor(url: str, offset: int, limit: int, more: bool) -> dict[str, Any]:
    return {"url": url, "has_more": more, "next": str(offset + limit) if more else ""}


def _profile_of(reader: ProfileReader, ident: str) -> Any:
    id_type, sep, value = ident.partition(":")
    if not sep:
        if not ident.startswith("use_"):
            raise ApiError(
                400, "invalid_id", "use type:value (e.g. user_id:u1) or a profile id (use_...)"
            )
        id_type, value = "profile_id", ident
    found = reader.find(id_type, value) if value else None
    profile = reader.profile(found) if found is not None else None
    if profile is None:
        raise ApiError(404, "profile_not_found", f"no profile has {ident}")
    return profile


def _traits(profile: Any, query: dict[str, list[str]], url: str) -> dict[str, Any]:
    include = [n for part in query.get("include", []) for n in part.split(",") if n]
    keys = sorted(k for k in profile.traits if not include or k in include)
    limit, offset = _limit(query, "traits"), _offset(query)
    page = keys[offset : offset + limit]
    more = offset + limit < len(keys)
    return {
        "traits": {k: profile.traits[k] for k in page},
        "cursor": _cursor(url, offset, limit, more),
    }


def _external_ids(profile: Any, query: dict[str, list[str]], url: str) -> dict[str, Any]:
    limit, offset = _limit(query, "external_ids"), _offset(query)
    ids = profile.identities
    data = [
        {
            "id": value,
            "type": id_type,
            "source_id": SOURCE_ID,
            "collection": "users",
            "created_at": first.isoformat(),
            "encoding": "none",
        }
        for id_type, value, first in ids[offset : offset + limit]
    ]
    return {"data": data, "cursor": _cursor(url, offset, limit, offset + limit < len(ids))}


def _events(
    reader: ProfileReader, profile: Any, query: dict[str, list[str]], url: str
) -> dict[str, Any]:
    limit, offset = _limit(query, "events"), _offset(query)
    events = reader.events(profile.profile_id, limit + 1, offset)
    data = [
        {**e.as_dict(), "source_id": SOURCE_ID, "related": {"users": profile.profile_id}}
        for e in events[:limit]
    ]
    return {"data": data, "cursor": _cursor(url, offset, limit, len(events) > limit)}


def handle(reader: ProfileReader, path: str, query: dict[str, list[str]]) -> dict[str, Any]:
    """The JSON answer to ``GET path?query`` (raises :class:`ApiError`)."""
    parts = path.strip("/").split("/")
    if (
        len(parts) != 8
        or parts[:2] != ["v1", "spaces"]
        or parts[3:6] != ["collections", "users", "profiles"]
        or parts[7] not in ("traits", "external_ids", "events", "metadata")
    ):
        raise ApiError(
            404,
            "not_found",
            "use /v1/spaces/{space}/collections/users/profiles/{type:value}/"
            "{traits|external_ids|events|metadata}",
        )
    space, ident, resource = unquote(parts[2]), unquote(parts[6]), parts[7]
    profile = _profile_of(reader, ident)
    if resource == "traits":
        return _traits(profile, query, path)
    if resource == "external_ids":
        return _external_ids(profile, query, path)
    if resource == "events":
        return _events(reader, profile, query, path)
    return {
        "metadata": {
            "created_at": profile.first_seen.isoformat(),
            "updated_at": profile.last_seen.isoformat(),
            "expires_at": None,
            "space_id": space,
            "segment_id": profile.profile_id,
        }
    }


def _authorized(header: str | None, token: str) -> bool:
    scheme, _, encoded = (header or "").partition(" ")
    if scheme.lower() != "basic":
        return False
    try:
        user = base64.b64decode(encoded.strip(), validate=True).decode().partition(":")[0]
    except (binascii.Error, UnicodeDecodeError):
        return False
    return hmac.compare_digest(user.encode(), token.encode())


class ProfilesServer:
    """The Profile API on a thread of its own (stdlib HTTP server: reads are point lookups)."""

    def __init__(
        self, reader_factory: Callable[[], ProfileReader], token: str, host: str, port: int
    ) -> None:
        self._reader_factory = reader_factory
        self._token = token
        self._server = ThreadingHTTPServer((host, port), self._handler())
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="eventkit-profiles", daemon=True
        )

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    def start(self) -> ProfilesServer:
        self._thread.start()
        log.info("Profile API on http://%s:%d/v1/spaces/", *self._server.server_address[:2])
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def answer(self, path: str, header: str | None) -> tuple[int, dict[str, Any]]:
        if not _authorized(header, self._token):
            return 401, {
                "code": "unauthorized",
                "message": "send the Profile API token as the Basic auth user name",
            }
        url = urlsplit(path)
        try:
            return 200, handle(self._reader_factory(), url.path, parse_qs(url.query))
        except ApiError as exc:
            return exc.status, {"code": exc.code, "message": exc.message}
        except Exception as exc:  # the warehouse (busy, closed): the client may retry
            log.warning("Profile API read failed: %s", exc)
            return 503, {"code": "warehouse_unavailable", "message": f"retry later: {exc}"}

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                status, body = server.answer(self.path, self.headers.get("Authorization"))
                data = json.dumps(body, default=str).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                if status == 401:
                    self.send_header("WWW-Authenticate", 'Basic realm="eventkit profiles"')
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: Any) -> None:
                log.debug("profiles api: " + format, *args)

        return Handler
