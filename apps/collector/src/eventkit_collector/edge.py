"""The HTTP edge: reading, decompressing, unwrapping and checking request bodies; write keys.

Everything here is pure (no I/O except reading the request stream) and built for the hot path:
decoders are built once, a whole request is decoded once, nested values stay undecoded
(:class:`msgspec.Raw`). Whatever a client sends ends in a defined answer: :class:`EdgeError`
carries the status, the contract's ``code`` and a message that says what to do.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import ipaddress
import zlib
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from enum import Enum
from hashlib import sha256
from typing import Any, Final
from urllib.parse import parse_qsl

import msgspec
from eventkit_core import EventkitError


class EdgeError(EventkitError, ValueError):
    """A request the collector answers with an error body ``{"code", "message"}``."""

    def __init__(
        self, status: int, code: str, message: str, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(message, code=code)
        self.status = status
        self.headers = headers or {}

    def body(self) -> bytes:
        return error_body(self.code, self.message)


_ENCODER: Final = msgspec.json.Encoder()


def error_body(code: str, message: str) -> bytes:
    return _ENCODER.encode({"code": code, "message": message})


class Kind(Enum):
    """How an endpoint's body is read."""

    #: ``/collect[/{stream}]``: one JSON value, or an array of them.
    COLLECT = "collect"
    #: ``/v1/track`` and friends: one event object.
    SINGLE = "single"
    #: ``/v1/batch``: ``{"batch": [...], "context": ..., "integrations": ..., "sentAt": ...}``.
    BATCH = "batch"
    #: Snowplow tp2: ``{"schema": ".../payload_data/...", "data": [events]}`` (``GET /i``'s query
    #: parameters are stored in the same shape, see :func:`snowplow_pixel_body`).
    SNOWPLOW = "snowplow"
    #: PostHog's endpoints and Amplitude's, read by :mod:`eventkit_collector.vendors`; the
    #: shared ``/batch`` is told apart by its body.
    POSTHOG = "posthog"
    AMPLITUDE = "amplitude"
    VENDOR_BATCH = "vendor_batch"


@dataclass(frozen=True, slots=True)
class Limits:
    max_event_bytes: int = 32 * 1024
    max_batch_bytes: int = 500 * 1024
    max_batch_events: int = 2500


class Parsed(msgspec.Struct):
    """A decoded body: its items (undecoded) and, for ``/v1/batch``, the batch-level fields."""

    items: list[msgspec.Raw]
    batch_context: msgspec.Raw | None = None
    batch_integrations: msgspec.Raw | None = None
    batch_sent_at: Any = None
    #: Set when the body is JSON but not of the endpoint's shape: the whole body is dead-lettered.
    unfit: str | None = None
    write_key: str | None = None


class _Top(msgspec.Struct):
    # Only the top-level fields the edge needs; msgspec skips the rest without building it.
    writeKey: Any = None
    batch: msgspec.Raw = msgspec.field(default_factory=msgspec.Raw)
    context: msgspec.Raw = msgspec.field(default_factory=msgspec.Raw)
    integrations: msgspec.Raw = msgspec.field(default_factory=msgspec.Raw)
    sentAt: Any = None


class _TopBatch(msgspec.Struct):
    # ``/v1/batch`` in one pass: the items come out of the same decode as the top level.
    writeKey: Any = None
    batch: list[msgspec.Raw] | msgspec.UnsetType = msgspec.UNSET
    context: msgspec.Raw = msgspec.field(default_factory=msgspec.Raw)
    integrations: msgspec.Raw = msgspec.field(default_factory=msgspec.Raw)
    sentAt: Any = None


_ANY: Final = msgspec.json.Decoder()
_TOP: Final = msgspec.json.Decoder(_Top)
_TOP_BATCH: Final = msgspec.json.Decoder(_TopBatch)
_LIST: Final = msgspec.json.Decoder(list[msgspec.Raw])
_INT_MIN: Final = -(2**63)
_INT_MAX: Final = 2**64 - 1
_SKIP: Final = msgspec.json.Decoder(msgspec.Raw)
#: digits -> "0", "E" -> "e": number shapes become searchable with bytes.find.
_NUMBER_SHAPES: Final = bytes.maketrans(b"123456789E+", b"000000000e0")
_BEFORE_VALUE: Final = b":,["
_LONG_DIGITS: Final = b"0" * 19
_WS: Final = b" \t\r\n"

_JSON_HINT: Final = (
    "send one JSON value (an object, or an array of objects), UTF-8 encoded without a BOM, "
    "with no NaN or Infinity, no integers beyond 64 bits and no absurd nesting"
)


def invalid_json(detail: str) -> EdgeError:
    return EdgeError(
        400, "invalid_json", f"request body is not valid JSON ({detail}): {_JSON_HINT}"
    )


def too_large(what: str, limit: str) -> EdgeError:
    return EdgeError(413, "payload_too_large", f"{what}; the limit is {limit}: {_SPLIT_HINT}")


_SPLIT_HINT: Final = "send smaller requests (split the batch) and retry"


def _has_wide_int(value: Any) -> bool:
    stack = [value]
    while stack:
        v = stack.pop()
        if isinstance(v, dict):
            stack.extend(v.values())
        elif isinstance(v, list):
            stack.extend(v)
        elif type(v) is int and not _INT_MIN <= v <= _INT_MAX:
            return True
    return False


def _check_text(data: bytes) -> None:
    if not data.isascii():
        try:
            data.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise invalid_json(f"invalid UTF-8 at byte {exc.start}") from None


def _number_at(shapes: bytes, e: int) -> bool:
    """True when the ``e`` at ``e`` may be the exponent of a JSON number (not text in a string).

    ``shapes`` is the body with every digit as ``0``: strip the mantissa, an optional minus and
    whitespace; a number starts a value, so ``:``, ``,`` or ``[`` (or nothing) must come next.
    """
    seg = shapes[max(0, e - 48) : e].rstrip(b"0.")
    if seg.endswith(b"-"):
        seg = seg[:-1]
    seg = seg.rstrip(_WS)
    return not seg or seg[-1] in _BEFORE_VALUE


def _suspicious_numbers(data: bytes) -> tuple[bool, bool]:
    """(may hold a float out of range, may hold an integer beyond 64 bits), cheaply.

    ``+`` counts as a digit here (an exponent's sign), which at worst makes a false alarm.

    Skipping a value (as the structural decode does) does not check its numbers. A float out
    of range needs an exponent of 3+ digits or a mantissa of 19+ digits; an integer beyond 64
    bits has 19+ digits. Only when such a token may be present is the body decoded in full.
    """
    t = data.translate(_NUMBER_SHAPES)
    if _LONG_DIGITS in t:
        return True, True
    i = t.find(b"e000")  # "e+000" too: "+" is a "0" here
    while i != -1:
        if _number_at(t, i):
            return True, False
        i = t.find(b"e000", i + 1)
    return False, False


def _full_check(data: bytes, wide: bool) -> None:
    try:
        value = _ANY.decode(data)
    except RecursionError:
        raise invalid_json("nested too deeply") from None
    except msgspec.ValidationError as exc:  # 1e999 and the like: "Number out of range"
        raise invalid_json(str(exc)) from None
    except msgspec.DecodeError as exc:
        raise invalid_json(str(exc)) from None
    if wide and _has_wide_int(value):
        raise invalid_json("an integer does not fit in 64 bits")


def _decode(decoder: msgspec.json.Decoder[Any], data: bytes) -> Any:
    """Structural decode (syntax, nesting, trailing bytes), errors as ``invalid_json``."""
    try:
        return decoder.decode(data)
    except RecursionError:
        raise invalid_json("nested too deeply") from None
    except msgspec.ValidationError:
        raise
    except msgspec.DecodeError as exc:
        raise invalid_json(str(exc)) from None


def _first_byte(data: bytes) -> int:
    for b in data:
        if b not in _WS:
            return b
    return 0


def parse_body(kind: Kind, data: bytes, limits: Limits) -> Parsed:
    """Check and split a (decompressed, unwrapped) body. Raises :class:`EdgeError`."""
    size = len(data)
    first = _first_byte(data)
    if kind is Kind.SINGLE and size > limits.max_event_bytes:
        raise too_large(f"the event is {size} bytes", f"{limits.max_event_bytes} bytes per event")
    if kind is Kind.COLLECT and first != ord("[") and size > limits.max_event_bytes:
        raise too_large(f"the event is {size} bytes", f"{limits.max_event_bytes} bytes per event")
    if size > limits.max_batch_bytes:
        raise too_large(f"the body is {size} bytes", f"{limits.max_batch_bytes} bytes per request")
    _check_text(data)
    floats, ints = _suspicious_numbers(data)
    if floats or ints:
        _full_check(data, ints)
    if kind is Kind.BATCH:
        return _parse_batch(data, first, limits)
    if kind is Kind.SNOWPLOW:
        return _parse_snowplow(data, first, limits)
    write_key: str | None = None
    if first == ord("{"):
        top = _top(data)
        write_key = top.writeKey if isinstance(top.writeKey, str) else None
        return Parsed(items=[msgspec.Raw(data)], write_key=write_key)
    if kind is Kind.COLLECT and first == ord("["):
        items = _decode(_LIST, data)
        _check_count(len(items), limits)
        return Parsed(items=items)
    _decode(_SKIP, data)
    return Parsed(items=[msgspec.Raw(data)])


def _top(data: bytes) -> _Top:
    try:
        top: _Top = _decode(_TOP, data)
    except msgspec.ValidationError as exc:  # sentAt / writeKey hold a number out of range
        raise invalid_json(str(exc)) from None
    return top


def _check_count(n: int, limits: Limits) -> None:
    if n > limits.max_batch_events:
        raise too_large(
            f"the body holds {n} events", f"{limits.max_batch_events} events per request"
        )


def _parse_batch(data: bytes, first: int, limits: Limits) -> Parsed:
    if first != ord("{"):
        _decode(_SKIP, data)
        return Parsed(items=[msgspec.Raw(data)], unfit="a batch body must be a JSON object")
    # Common case first: one decode gives the top-level fields and the items. Anything else
    # (no 'batch', not an array, a field out of range, bad JSON) takes the general path below,
    # which gives the answers and messages of the contract.
    try:
        fast: _TopBatch | None = _TOP_BATCH.decode(data)
    except (msgspec.DecodeError, RecursionError):  # ValidationError is a DecodeError
        fast = None
    if fast is not None and fast.batch is not msgspec.UNSET:
        _check_count(len(fast.batch), limits)
        return Parsed(
            items=fast.batch,
            batch_context=fast.context or None,
            batch_integrations=fast.integrations or None,
            batch_sent_at=fast.sentAt,
            write_key=fast.writeKey if isinstance(fast.writeKey, str) else None,
        )
    top = _top(data)
    write_key = top.writeKey if isinstance(top.writeKey, str) else None
    if not top.batch:
        return Parsed(
            items=[msgspec.Raw(data)],
            unfit="the batch body has no 'batch' array",
            write_key=write_key,
        )
    try:
        items = _LIST.decode(top.batch)
    except msgspec.ValidationError:
        return Parsed(
            items=[msgspec.Raw(data)],
            unfit="'batch' must be an array of objects",
            write_key=write_key,
        )
    _check_count(len(items), limits)
    return Parsed(
        items=items,
        batch_context=top.context or None,
        batch_integrations=top.integrations or None,
        batch_sent_at=top.sentAt,
        write_key=write_key,
    )


# --- Snowplow (tp2) --------------------------------------------------------------------------


class _SnowplowTop(msgspec.Struct):
    data: list[msgspec.Raw] | msgspec.UnsetType = msgspec.UNSET


class _SnowplowAppId(msgspec.Struct):
    aid: Any = None


_SNOWPLOW_TOP: Final = msgspec.json.Decoder(_SnowplowTop)
_SNOWPLOW_APP_ID: Final = msgspec.json.Decoder(_SnowplowAppId)
SNOWPLOW_PAYLOAD_SCHEMA: Final = "iglu:com.snowplowanalytics.snowplow/payload_data/jsonschema/1-0-4"


def _parse_snowplow(data: bytes, first: int, limits: Limits) -> Parsed:
    """A tp2 body: its ``data`` array's items; anything else JSON is unfit (dead-lettered)."""
    if first != ord("{"):
        _decode(_SKIP, data)
        return Parsed(items=[msgspec.Raw(data)], unfit="a tp2 body must be a JSON object")
    try:
        top: _SnowplowTop = _decode(_SNOWPLOW_TOP, data)
    except msgspec.ValidationError:  # 'data' is not an array
        _decode(_SKIP, data)
        return Parsed(items=[msgspec.Raw(data)], unfit="the tp2 'data' must be an array")
    if top.data is msgspec.UNSET:
        return Parsed(items=[msgspec.Raw(data)], unfit="the tp2 body has no 'data' array")
    _check_count(len(top.data), limits)
    return Parsed(items=top.data)


def snowplow_pixel_body(query: bytes) -> bytes:
    """``GET /i``'s query parameters as a tp2 body (one event): what is stored and parsed.

    The first value of a repeated parameter wins. A query that is not UTF-8 once unescaped is
    a 400 ``invalid_request``.
    """
    try:
        pairs = parse_qsl(query.decode("utf-8"), keep_blank_values=True, errors="strict")
    except UnicodeError:
        raise EdgeError(
            400, "invalid_request", "the query string is not UTF-8 once unescaped: fix the tracker"
        ) from None
    event: dict[str, str] = {}
    for name, value in pairs:
        event.setdefault(name, value)
    return _ENCODER.encode({"schema": SNOWPLOW_PAYLOAD_SCHEMA, "data": [event]})


def snowplow_app_ids(parsed: Parsed) -> set[str | None]:
    """The app ids (``aid``) of a tp2 body's events (``None`` for an event without one)."""
    if parsed.unfit is not None:
        return {None}
    out: set[str | None] = set()
    for item in parsed.items:
        try:
            aid = _SNOWPLOW_APP_ID.decode(item).aid
        except (msgspec.DecodeError, RecursionError):  # not an object: no app id
            aid = None
        out.add(aid if isinstance(aid, str) else None)
    return out


def snowplow_unauthorized(app_ids: set[str | None]) -> EdgeError:
    shown = ", ".join(sorted(repr(a) for a in app_ids))
    return EdgeError(
        401,
        "unauthorized",
        f"snowplow app id(s) {shown[:200]} not allowed: write keys are on, so Snowplow events "
        "are accepted only from the app ids (aid) listed in EVENTKIT_SNOWPLOW_APP_IDS",
    )


# --- reading -----------------------------------------------------------------------------------


class ClientDisconnected(EventkitError, ConnectionError):
    """The client went away before the whole body arrived: nothing was accepted."""

    code = "client_disconnected"

    def __init__(self, message: str = "the client disconnected mid-body") -> None:
        super().__init__(message)


DISCONNECTED_MESSAGE: Final = (
    "the client disconnected before the whole body arrived: nothing was accepted, send it again"
)


async def receive_body(receive: Callable[[], Awaitable[Mapping[str, Any]]]) -> AsyncIterator[bytes]:
    """The body chunks of an ASGI request; :class:`ClientDisconnected` when it is cut short."""
    while True:
        message = await receive()
        kind = message["type"]
        if kind == "http.request":
            chunk = message.get("body", b"")
            if chunk:
                yield chunk
            if not message.get("more_body", False):
                return
        elif kind == "http.disconnect":
            raise ClientDisconnected


def wire_cap(kind: Kind, limits: Limits) -> int:
    """Most bytes read off the wire for an endpoint (a compressed body is never larger)."""
    decoded = limits.max_event_bytes if kind is Kind.SINGLE else limits.max_batch_bytes
    return decoded + 1024


async def read_capped(chunks: AsyncIterator[bytes], content_length: str | None, cap: int) -> bytes:
    """Read a request body, refusing (413) before reading more than ``cap`` bytes."""
    if content_length is not None:
        try:
            declared = int(content_length)
        except ValueError:
            raise EdgeError(
                400, "invalid_request", "the Content-Length header is not a number: fix it"
            ) from None
        if declared > cap:
            raise too_large(f"the body is {declared} bytes", f"{cap} bytes on the wire")
    parts: list[bytes] = []
    total = 0
    async for chunk in chunks:
        total += len(chunk)
        if total > cap:
            raise too_large(f"the body is over {cap} bytes", f"{cap} bytes on the wire")
        parts.append(chunk)
    if len(parts) == 1:
        return parts[0]
    return b"".join(parts)


def decompress(data: bytes, encoding: str | None, cap: int) -> bytes:
    """Undo ``Content-Encoding`` (gzip, deflate), never producing more than ``cap`` bytes."""
    if not encoding:
        return data
    enc = encoding.strip().lower()
    if enc in ("identity", ""):
        return data
    if enc in ("gzip", "x-gzip"):
        wbits = 16 + zlib.MAX_WBITS
    elif enc == "deflate":
        wbits = zlib.MAX_WBITS if data[:1] == b"\x78" else -zlib.MAX_WBITS
    else:
        raise EdgeError(
            400,
            "invalid_encoding",
            f"Content-Encoding {encoding!r} is not supported: send gzip, deflate or identity",
        )
    return inflate(data, wbits, cap, enc)


def inflate(data: bytes, wbits: int, cap: int, name: str = "gzip") -> bytes:
    """Decompress a whole zlib/gzip/raw-deflate body (every gzip member), at most ``cap`` bytes.

    Raises ``invalid_encoding`` for corrupt or truncated data and for bytes after the end of the
    stream (that are not another gzip member), ``payload_too_large`` past ``cap``.
    """
    parts: list[bytes] = []
    total = 0
    rest = data
    while True:
        d = zlib.decompressobj(wbits)
        try:
            out = d.decompress(rest, cap + 1 - total)
        except zlib.error as exc:
            raise EdgeError(
                400,
                "invalid_encoding",
                f"the body is not valid {name} data ({exc}): compress it again",
            ) from None
        total += len(out)
        if total > cap or d.unconsumed_tail:
            raise too_large("the body is larger after decompression", f"{cap} bytes decompressed")
        if not d.eof:
            raise EdgeError(
                400, "invalid_encoding", f"the {name} body is truncated: send the whole stream"
            )
        parts.append(out)
        rest = d.unused_data
        if not rest:
            break
        # A gzip stream may hold several members (RFC 1952); anything else after the end is not
        # part of the body: refusing it beats accepting a body the client did not send.
        if wbits <= 16 or rest[:2] != b"\x1f\x8b":
            raise EdgeError(
                400,
                "invalid_encoding",
                f"the {name} body has {len(rest)} bytes after the end of the compressed stream: "
                "send only the compressed body",
            )
    return parts[0] if len(parts) == 1 else b"".join(parts)


def unwrap_form(data: bytes) -> tuple[bytes, str | None]:
    """The JSON inside an ``application/x-www-form-urlencoded`` body, and a ``writeKey`` field.

    Accepts raw JSON sent with the form content type (as some SDKs do), a ``data=<json>`` field,
    or a single field that is the JSON (as a key with an empty value, or as the value).
    """
    first = _first_byte(data)
    if first in (ord("{"), ord("[")):
        return data, None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise invalid_json(f"invalid UTF-8 at byte {exc.start}") from None
    try:  # strict: an invalid UTF-8 escape must not become U+FFFD in an accepted body
        fields = parse_qsl(text, keep_blank_values=True, errors="strict")
    except UnicodeDecodeError as exc:
        raise invalid_json(f"a form field is not UTF-8 once unescaped ({exc.reason})") from None
    key: str | None = None
    others: list[tuple[str, str]] = []
    for name, value in fields:
        if name == "writeKey":
            key = value
        else:
            others.append((name, value))
    for name, value in others:
        if name == "data":
            return value.encode("utf-8"), key
    if len(others) == 1:
        name, value = others[0]
        return (value if value else name).encode("utf-8"), key
    raise invalid_json("a form body must carry the JSON as its only field or as data=<json>")


# --- write keys ------------------------------------------------------------------------------


def basic_user(authorization: str | None) -> str | None:
    """The user name of an HTTP Basic ``Authorization`` header (Segment sends the key there)."""
    if not authorization:
        return None
    scheme, _, value = authorization.partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(value.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError, ValueError):
        return None
    user, _, _password = decoded.partition(":")
    return user or None


class WriteKeys:
    """The configured write keys, compared in constant time; empty means auth is off."""

    def __init__(self, keys: Sequence[str]) -> None:
        self._keys = [k.encode("utf-8") for k in keys]
        self._ids = [key_id(k) for k in keys]

    @property
    def enabled(self) -> bool:
        return bool(self._keys)

    def check(self, key: str | None) -> str | None:
        """The key's id when it is one of the configured keys, else ``None``."""
        if key is None:
            return None
        given = key.encode("utf-8", "surrogatepass")
        found: str | None = None
        for stored, kid in zip(self._keys, self._ids, strict=True):
            if hmac.compare_digest(stored, given):
                found = kid
        return found


def key_id(key: str) -> str:
    """A short, stable, non-secret id of a write key (stored with events instead of the key)."""
    return sha256(key.encode("utf-8", "surrogatepass")).hexdigest()[:12]


UNAUTHORIZED_MESSAGE: Final = (
    "missing or unknown write key: send it as the HTTP Basic user name with an empty password, "
    "as writeKey in the body, or as ?writeKey= in the query string"
)


def unauthorized() -> EdgeError:
    return EdgeError(401, "unauthorized", UNAUTHORIZED_MESSAGE, {"WWW-Authenticate": "Basic"})


# --- client address --------------------------------------------------------------------------


class ClientAddress:
    """Finds the client IP: the peer, or X-Forwarded-For when the peer is a trusted proxy."""

    def __init__(self, trusted: Sequence[str]) -> None:
        self.trust_all = "*" in trusted
        self._nets = [ipaddress.ip_network(t, strict=False) for t in trusted if t != "*"]

    @property
    def enabled(self) -> bool:
        return self.trust_all or bool(self._nets)

    def _trusted(self, ip: str) -> bool:
        if self.trust_all:
            return True
        try:
            addr = ipaddress.ip_address(ip)
        except ValueError:
            return False
        return any(addr in net for net in self._nets)

    def resolve(self, peer: str | None, forwarded_for: str | None) -> str | None:
        if not forwarded_for or not self.enabled or peer is None or not self._trusted(peer):
            return peer
        hops = [h.strip() for h in forwarded_for.split(",") if h.strip()]
        # Walk from the nearest hop: the first one we do not trust is the client.
        for hop in reversed(hops):
            if not self._trusted(hop):
                return hop
        return hops[0] if hops else peer
