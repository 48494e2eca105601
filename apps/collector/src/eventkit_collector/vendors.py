"""The edge of the PostHog and Amplitude endpoints: their encodings, bodies and answers.

PostHog's clients send a batch ``{"api_key", "batch": [...], "sent_at"}`` (the Python client, to
``/batch/``), one event, or an array of events (posthog-js, to ``/e/`` and ``/i/v0/e/``), as JSON,
gzip (``Content-Encoding: gzip``, or posthog-js's ``?compression=gzip-js`` with a ``text/plain``
body), base64 (``?compression=base64``) or a form field ``data=``. Amplitude's send
``{"api_key", "events": [...], "options"}`` as JSON. ``/batch`` serves both (Litestar treats
``/batch`` and ``/batch/`` as one path): a body with ``events`` is Amplitude's, else PostHog's.

The body is decoded here to JSON and split into events with the checks and limits of
:func:`~eventkit_collector.edge.parse_body`; the adapters (``eventkit_validators.posthog`` /
``.amplitude``) map each event. Answers are each API's own: PostHog's ``{"status": 1}`` and its
error shape (posthog-python reads ``detail``), Amplitude's ``{"code": 200, "events_ingested": N,
...}`` and its error shape (its SDK reads the numeric ``code``); both keep eventkit's ``code`` and
``message`` fields.
"""

from __future__ import annotations

import base64
import binascii
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final
from urllib.parse import parse_qsl

import msgspec
from eventkit_validators.endpoints import AMPLITUDE, POSTHOG

from eventkit_collector.edge import (
    EdgeError,
    Kind,
    Limits,
    Parsed,
    decompress,
    inflate,
    invalid_json,
    parse_body,
    unwrap_form,
)

#: Kinds of the vendor endpoints (their bodies are read here, not by ``parse_body``).
VENDOR_KINDS: Final = frozenset({Kind.POSTHOG, Kind.AMPLITUDE, Kind.VENDOR_BATCH})
#: Envelope source -> the kind its stored body is split again with (restart recovery).
SOURCE_KINDS: Final = {POSTHOG: Kind.POSTHOG, AMPLITUDE: Kind.AMPLITUDE}

POSTHOG_SUCCESS: Final = b'{"status":1}'
_WS: Final = b" \t\r\n"
_GZIP_MAGIC: Final = b"\x1f\x8b"


class _Top(msgspec.Struct):
    # The top-level fields of either vendor's body; msgspec skips the rest.
    batch: msgspec.Raw = msgspec.field(default_factory=msgspec.Raw)
    events: msgspec.Raw = msgspec.field(default_factory=msgspec.Raw)
    api_key: Any = None
    token: Any = None
    sent_at: Any = None


class _ItemKey(msgspec.Struct):
    # posthog-js sends no api_key: each event carries the project token.
    api_key: Any = None
    token: Any = None
    properties: msgspec.Raw = msgspec.field(default_factory=msgspec.Raw)


class _PropsKey(msgspec.Struct):
    token: Any = None


_TOP: Final = msgspec.json.Decoder(_Top)
_ITEM_KEY: Final = msgspec.json.Decoder(_ItemKey)
_PROPS_KEY: Final = msgspec.json.Decoder(_PropsKey)
_ENCODER: Final = msgspec.json.Encoder()


@dataclass(frozen=True, slots=True)
class VendorBody:
    """A decoded, split vendor body."""

    #: ``posthog`` or ``amplitude`` (the envelope's and the events' source).
    source: str
    #: The JSON text (what the ring buffer keeps, unless ``gzipped``).
    data: bytes
    parsed: Parsed
    #: The body arrived as a gzip stream of exactly ``data``: store the wire bytes.
    gzipped: bool


def _first(data: bytes) -> int:
    for b in data:
        if b not in _WS:
            return b
    return 0


def query_params(query: bytes) -> dict[str, str]:
    """The query string's parameters (the last value of each), never raising."""
    if not query:
        return {}
    return dict(parse_qsl(query.decode("latin-1"), keep_blank_values=True))


def _base64(data: bytes) -> bytes:
    # A "+" sent unescaped in a form reads as a space: put it back.
    text = data.strip().replace(b" ", b"+")
    try:
        return base64.b64decode(text + b"=" * (-len(text) % 4), validate=False)
    except (binascii.Error, ValueError) as exc:
        raise EdgeError(
            400,
            "invalid_encoding",
            f"the body is not valid base64 ({exc}): send the base64 of the JSON, or the JSON",
        ) from None


def decode_posthog(
    wire: bytes, headers: Mapping[str, str], params: Mapping[str, str], cap: int
) -> tuple[bytes, bool]:
    """PostHog's transport encodings undone: ``(JSON bytes, came as one gzip stream)``."""
    data = wire
    inflated = 0
    encoding = headers.get("content-encoding")
    if encoding:
        data = decompress(data, encoding, cap)
        inflated += data is not wire
    compression = params.get("compression", "").lower()
    if data[:2] == _GZIP_MAGIC or (compression in ("gzip", "gzip-js") and not inflated):
        # posthog-js gzips without saying so in a header; the magic bytes say it too.
        data = inflate(data, 31, cap)
        inflated += 1
    # Stored compressed only when the wire bytes are exactly one gzip stream of the JSON.
    gzipped = inflated == 1 and wire[:2] == _GZIP_MAGIC
    ctype = headers.get("content-type") or ""
    form = ctype[:33].lower() == "application/x-www-form-urlencoded"
    if form:
        data, _key = unwrap_form(data)
        gzipped = False
    # posthog-js's base64 encoding comes as a form field and says so in the query.
    if (compression == "base64" or form) and _first(data) not in (ord("{"), ord("[")):
        data = _base64(data)
        gzipped = False
    return data, gzipped


def _text_key(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _item_key(items: list[msgspec.Raw]) -> str | None:
    """The project token of the first event (posthog-js sends it in each event's properties)."""
    if not items:
        return None
    try:
        found = _ITEM_KEY.decode(items[0])
        key = _text_key(found.api_key) or _text_key(found.token)
        if key is None and found.properties:
            key = _text_key(_PROPS_KEY.decode(found.properties).token)
    except (msgspec.DecodeError, RecursionError):  # not an object: the adapter says why
        return None
    return key


def _top(data: bytes) -> _Top:
    try:
        top: _Top = _TOP.decode(data)
    except RecursionError:
        raise invalid_json("nested too deeply") from None
    except msgspec.DecodeError as exc:  # also a top-level field of the wrong type
        raise invalid_json(str(exc)) from None
    return top


def _events(array: msgspec.Raw, data: bytes, limits: Limits) -> Parsed:
    """The events of a body's ``batch`` / ``events`` array, with the whole body's checks."""
    # /v1/batch's reading checks the whole body (size, text, numbers) and, for PostHog's
    # {"batch": [...]}, already splits it.
    whole = parse_body(Kind.BATCH, data, limits)
    if whole.unfit is None:
        return whole
    return parse_body(Kind.COLLECT, bytes(array), limits)


def split(kind: Kind, data: bytes, limits: Limits) -> tuple[str, Parsed]:
    """``(source, events)`` of a decoded vendor body. Raises :class:`EdgeError`."""
    if _first(data) != ord("{"):  # posthog-js's arrays; anything else is a dead letter
        source = AMPLITUDE if kind is Kind.AMPLITUDE else POSTHOG
        parsed = parse_body(Kind.COLLECT, data, limits)
        if source == POSTHOG:
            parsed.write_key = _item_key(parsed.items)
        return source, parsed
    top = _top(data)
    if kind is Kind.AMPLITUDE or (kind is Kind.VENDOR_BATCH and top.events):
        parsed = _events(top.events, data, limits) if top.events else _whole(data, limits)
        parsed.write_key = _text_key(top.api_key)
        return AMPLITUDE, parsed
    if top.batch:
        parsed = _events(top.batch, data, limits)
        parsed.batch_sent_at = top.sent_at
        parsed.write_key = _text_key(top.api_key) or _text_key(top.token) or _item_key(parsed.items)
        return POSTHOG, parsed
    parsed = parse_body(Kind.SINGLE, data, limits)  # one event (/capture/, /e/)
    parsed.write_key = _text_key(top.api_key) or _text_key(top.token) or _item_key(parsed.items)
    return POSTHOG, parsed


def _whole(data: bytes, limits: Limits) -> Parsed:
    # An Amplitude body without "events": kept whole, the adapter dead-letters it.
    return parse_body(Kind.COLLECT, b"[" + data + b"]", limits)


def read_body(
    kind: Kind, wire: bytes, headers: Mapping[str, str], params: Mapping[str, str], limits: Limits
) -> VendorBody:
    """Decode and split one vendor request body. Raises :class:`EdgeError`."""
    cap = limits.max_batch_bytes
    if kind is Kind.AMPLITUDE:
        data = wire
        encoding = headers.get("content-encoding")
        if encoding:
            data = decompress(data, encoding, cap)
        gzipped = data is not wire and wire[:2] == _GZIP_MAGIC
    else:
        data, gzipped = decode_posthog(wire, headers, params, cap)
    source, parsed = split(kind, data, limits)
    return VendorBody(source, data, parsed, gzipped)


def query_key(params: Mapping[str, str]) -> str | None:
    """PostHog's ``?api_key=`` / ``?token=`` (also eventkit's ``?writeKey=``)."""
    return params.get("api_key") or params.get("token") or params.get("writeKey") or None


# --- answers --------------------------------------------------------------------------------


def success(source: str, events: int, wire_bytes: int) -> bytes:
    """The API's own success body."""
    if source == AMPLITUDE:
        return _ENCODER.encode(
            {
                "code": 200,
                "events_ingested": events,
                "payload_size_bytes": wire_bytes,
                "server_upload_time": int(time.time() * 1000),
            }
        )
    return POSTHOG_SUCCESS


#: The error shape of a ``/batch`` body that says neither whose it is: Amplitude's, with
#: PostHog's ``detail`` too (each SDK reads its own field).
EITHER: Final = "either"


def error_source(kind: Kind, data: bytes | None) -> str:
    """Whose error shape answers a refused request (``/batch``: by the body when readable)."""
    if kind is Kind.POSTHOG:
        return POSTHOG
    if kind is Kind.AMPLITUDE:
        return AMPLITUDE
    if data is not None and _first(data) == ord("{"):
        try:
            top = _TOP.decode(data)
        except (msgspec.DecodeError, RecursionError):
            return EITHER
        if top.batch:
            return POSTHOG
        if top.events:
            return AMPLITUDE
    return EITHER


def error(source: str, status: int, code: str, message: str) -> bytes:
    """The API's own error shape, keeping eventkit's ``code`` and ``message``."""
    if source == POSTHOG:
        # posthog-python raises APIError(status, body["detail"]).
        kind = "authentication_error" if status == 401 else "validation_error"
        if status >= 500 or status == 413:
            kind = "server_error" if status >= 500 else "validation_error"
        return _ENCODER.encode(
            {"type": kind, "code": code, "detail": message, "attr": None, "message": message}
        )
    # Amplitude's SDK reads the numeric code (413: split the batch, 429/5xx: retry).
    body: dict[str, Any] = {"code": status, "error": code, "message": message}
    if source == EITHER:
        body["detail"] = message
    return _ENCODER.encode(body)


# --- PostHog's start-up endpoints ---------------------------------------------------------------


def remote_config(token: str) -> dict[str, Any]:
    """A valid remote configuration with every optional feature off (``/array/{token}/config``)."""
    return {
        "token": token,
        "supportedCompression": ["gzip", "gzip-js"],
        "hasFeatureFlags": False,
        "captureDeadClicks": False,
        "capturePerformance": False,
        "autocapture_opt_out": False,
        "autocaptureExceptions": False,
        "analytics": {"endpoint": "/e/"},
        "elementsChainAsString": True,
        "sessionRecording": False,
        "heatmaps": False,
        "surveys": False,
        "defaultIdentifiedOnly": True,
        "siteApps": [],
    }


def remote_config_js(token: str) -> bytes:
    """``/array/{token}/config.js``: the same configuration as posthog-js's loader expects it."""
    config = _ENCODER.encode({"config": remote_config(token), "siteApps": []}).decode()
    key = _ENCODER.encode(token).decode()
    return (
        "(function(){window._POSTHOG_REMOTE_CONFIG=window._POSTHOG_REMOTE_CONFIG||{};"
        f"window._POSTHOG_REMOTE_CONFIG[{key}]={config};}})();"
    ).encode()


def flags() -> bytes:
    """``POST /flags/?v=2``: no feature flags, no errors (the v2 and the older v1 fields)."""
    return _ENCODER.encode(
        {
            "flags": {},
            "featureFlags": {},
            "featureFlagPayloads": {},
            "errorsWhileComputingFlags": False,
            "quotaLimited": [],
            "requestId": "00000000-0000-0000-0000-000000000000",
            "supportedCompression": ["gzip", "gzip-js"],
            "sessionRecording": False,
        }
    )
