"""The private core both adapters share: one decode of the event bytes, then cheap field work.

Decoding goes first through :class:`Message` (well-formed Segment fields, checked by msgspec in
C); any type mismatch falls back to :class:`_Lenient` (every scalar ``Any``) where each field is
normalised or reported in Python. Nested maps always stay :class:`msgspec.Raw`.
"""

from __future__ import annotations

import struct
from datetime import UTC, datetime
from typing import Annotated, Any, Final

import msgspec
from eventkit_core import AdaptError, parse_timestamp

from eventkit_validators import codes
from eventkit_validators.validators import json_type_name

_EMPTY: Final = msgspec.Raw()
_NULL: Final = b"null"
_OPEN_BRACE: Final = ord("{")
_N: Final = ord("n")
_TS_HINT: Final = "send ISO 8601 (2024-01-31T12:00:00Z) or Unix seconds or milliseconds"

#: ``first_byte(raw)[0]``: the first byte of a non-empty buffer, without a memoryview or a copy.
first_byte: Final = struct.Struct("B").unpack_from

TzDatetime = Annotated[datetime, msgspec.Meta(tz=True)]


class Message(msgspec.Struct):
    """Fields as well-formed events send them. Also the normalised form of a lenient decode."""

    type: str | None = None
    messageId: str | None = None
    userId: str | None = None
    anonymousId: str | None = None
    event: str | None = None
    name: str | None = None
    category: str | None = None
    groupId: str | None = None
    previousId: str | None = None
    timestamp: TzDatetime | None = None
    originalTimestamp: TzDatetime | None = None
    sentAt: TzDatetime | None = None
    # msgspec cannot decode ``Raw | None``: an empty Raw stands for "absent".
    properties: msgspec.Raw = msgspec.field(default_factory=msgspec.Raw)
    traits: msgspec.Raw = msgspec.field(default_factory=msgspec.Raw)
    context: msgspec.Raw = msgspec.field(default_factory=msgspec.Raw)
    integrations: msgspec.Raw = msgspec.field(default_factory=msgspec.Raw)


class _Lenient(msgspec.Struct):
    type: Any = None
    messageId: Any = None
    userId: Any = None
    anonymousId: Any = None
    event: Any = None
    name: Any = None
    category: Any = None
    groupId: Any = None
    previousId: Any = None
    timestamp: Any = None
    originalTimestamp: Any = None
    sentAt: Any = None
    properties: msgspec.Raw = msgspec.field(default_factory=msgspec.Raw)
    traits: msgspec.Raw = msgspec.field(default_factory=msgspec.Raw)
    context: msgspec.Raw = msgspec.field(default_factory=msgspec.Raw)
    integrations: msgspec.Raw = msgspec.field(default_factory=msgspec.Raw)


class _ContextKeys(msgspec.Struct):
    # UNSET tells "absent" from an explicit null.
    ip: Any = msgspec.UNSET
    userAgent: Any = msgspec.UNSET


STRICT: Final = msgspec.json.Decoder(Message)
_STRICT: Final = STRICT
_LENIENT: Final = msgspec.json.Decoder(_Lenient)
_CONTEXT_KEYS: Final = msgspec.json.Decoder(_ContextKeys)
_ANY: Final = msgspec.json.Decoder()
_ENCODER: Final = msgspec.json.Encoder()

_ID_FIELDS: Final = ("messageId", "userId", "anonymousId", "groupId", "previousId")
_TEXT_FIELDS: Final = ("event", "name", "category")
_TIME_FIELDS: Final = ("timestamp", "originalTimestamp", "sentAt")


def error(code: str, message: str) -> AdaptError:
    return AdaptError(code=code, message=message)


def show(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def to_json(payload: Any, max_bytes: int) -> msgspec.Raw | AdaptError:
    """The event's JSON as Raw (no copy when it already is), or why there is none."""
    if isinstance(payload, msgspec.Raw):
        data = payload
    elif isinstance(payload, dict):
        try:
            data = msgspec.Raw(_ENCODER.encode(payload))
        except (TypeError, ValueError, OverflowError, RecursionError) as exc:
            return error(
                codes.INVALID_JSON,
                f"event cannot be encoded as JSON ({exc}): send only JSON values",
            )
    elif isinstance(payload, bytes | bytearray | memoryview):
        data = msgspec.Raw(bytes(payload))
    else:
        return not_an_object(json_type_name(payload))
    if len(data) > max_bytes:
        return error(
            codes.EVENT_TOO_LARGE,
            f"event is {len(data)} bytes of JSON: send at most {max_bytes} bytes per event",
        )
    return data


def not_an_object(kind: str) -> AdaptError:
    return error(
        codes.NOT_AN_OBJECT, f"event must be a JSON object, got {kind}: send one object per event"
    )


def decode(data: msgspec.Raw, *, strict_fields: bool) -> Message | AdaptError:
    """Decode once; on a type mismatch, decode leniently and normalise.

    ``strict_fields``: a field of the wrong type is an error (Segment) instead of being ignored.
    """
    try:
        return _STRICT.decode(data)
    except msgspec.ValidationError:
        pass
    except msgspec.DecodeError as exc:
        return _invalid_json(exc)
    except RecursionError:
        return _too_deep()
    try:
        lenient = _LENIENT.decode(data)
    except msgspec.ValidationError:
        try:
            value = _ANY.decode(data)
        except (msgspec.DecodeError, RecursionError):  # pragma: no cover - decoded just above
            value = None
        return not_an_object(json_type_name(value))
    except msgspec.DecodeError as exc:  # pragma: no cover - the strict decode saw it first
        return _invalid_json(exc)
    except RecursionError:
        return _too_deep()
    return _normalise(lenient, strict_fields)


def _invalid_json(exc: Exception) -> AdaptError:
    return error(codes.INVALID_JSON, f"event is not valid JSON ({exc}): send UTF-8 JSON")


def _too_deep() -> AdaptError:
    return error(codes.INVALID_JSON, "event nests too deeply to decode: flatten it")


def _normalise(m: _Lenient, strict_fields: bool) -> Message | AdaptError:
    out = Message(
        properties=m.properties,
        traits=m.traits,
        context=m.context,
        integrations=m.integrations,
    )
    kind = m.type
    if kind is not None and not isinstance(kind, str):
        if strict_fields:
            return error(
                codes.INVALID_TYPE,
                f"type must be a string, got {json_type_name(kind)}: "
                "use identify, track, page, screen, group or alias",
            )
        kind = None
    out.type = kind
    for field in _ID_FIELDS:
        value = getattr(m, field)
        if value is None or isinstance(value, str):
            text = value
        elif isinstance(value, int | float) and not isinstance(value, bool):
            text = str(value)  # Segment stringifies numeric ids
        elif strict_fields:
            return error(
                codes.WRONG_TYPE,
                f"{field} must be a string or a number, got {json_type_name(value)}: "
                f"send {field} as a string",
            )
        else:
            text = None
        setattr(out, field, text)
    for field in _TEXT_FIELDS:
        value = getattr(m, field)
        if value is not None and not isinstance(value, str):
            if strict_fields:
                return error(
                    codes.WRONG_TYPE,
                    f"{field} must be a string, got {json_type_name(value)}: send {field} as a string",
                )
            value = None
        setattr(out, field, value)
    for field in _TIME_FIELDS:
        value = getattr(m, field)
        if value is None:
            continue
        parsed = parse_timestamp(value)
        if parsed is None and strict_fields:
            return error(
                codes.INVALID_TIMESTAMP, f"{field} {show(value)} is not a timestamp: {_TS_HINT}"
            )
        setattr(out, field, parsed)
    return out


def utc(value: datetime | None) -> datetime | None:
    if value is None or value.tzinfo is UTC:
        return value
    return value.astimezone(UTC)


def batch_sent_at(value: Any) -> datetime | AdaptError | None:
    """The batch-level ``sentAt`` the producer attached (text, number or datetime)."""
    if value is None:
        return None
    if isinstance(value, datetime):
        return value.replace(tzinfo=UTC) if value.tzinfo is None else utc(value)
    if isinstance(value, msgspec.Raw):
        try:
            value = _ANY.decode(value)
        except (msgspec.DecodeError, RecursionError):
            pass
    parsed = parse_timestamp(value)
    if parsed is None:
        return error(
            codes.INVALID_TIMESTAMP, f"batch sentAt {show(value)} is not a timestamp: {_TS_HINT}"
        )
    return parsed


def nested(raw: msgspec.Raw, field: str) -> msgspec.Raw | AdaptError | None:
    """A nested map as Raw JSON; ``None`` when absent or null; an error when not an object."""
    if not raw:
        return None
    first = memoryview(raw)[0]
    if first == _OPEN_BRACE:
        return raw
    if first == _N and bytes(raw) == _NULL:
        return None
    return error(
        codes.WRONG_TYPE,
        f"{field} must be a JSON object, got {_raw_kind(raw)}: send {field} as an object",
    )


def nested_or_none(raw: msgspec.Raw) -> msgspec.Raw | None:
    return raw if raw and memoryview(raw)[0] == _OPEN_BRACE else None


def _raw_kind(raw: msgspec.Raw) -> str:
    first = bytes(raw)[:1]
    return {b"[": "array", b'"': "string", b"t": "boolean", b"f": "boolean"}.get(first, "number")


class BatchCache:
    """Decodes a batch-level map once per batch (every item of a batch shares the object)."""

    __slots__ = ("_last",)

    def __init__(self) -> None:
        self._last: tuple[Any, dict[str, Any] | None, bytes | None] = (None, None, None)

    def get(self, value: Any) -> tuple[dict[str, Any] | None, bytes | None]:
        """``(as dict, as JSON bytes)``, or ``(None, None)`` when not an object."""
        last = self._last
        if last[0] is value:
            return last[1], last[2]
        as_dict: dict[str, Any] | None = None
        as_bytes: bytes | None = None
        try:
            if isinstance(value, msgspec.Raw | bytes):
                decoded = _ANY.decode(value)
                if isinstance(decoded, dict):
                    as_dict, as_bytes = decoded, bytes(value)
            elif isinstance(value, dict):
                as_dict, as_bytes = value, _ENCODER.encode(value)
        except (msgspec.DecodeError, TypeError, ValueError, OverflowError, RecursionError):
            pass
        self._last = (value, as_dict, as_bytes)
        return as_dict, as_bytes


def merge(item: msgspec.Raw | None, batch: Any, cache: BatchCache) -> msgspec.Raw | None:
    """Shallow merge of a batch-level map under an item's map (the item's keys win)."""
    if batch is None:
        return item
    batch_dict, batch_bytes = cache.get(batch)
    if not batch_dict or batch_bytes is None:
        return item
    if item is None:
        return msgspec.Raw(batch_bytes)
    merged = dict(batch_dict)
    merged.update(_ANY.decode(item))
    return msgspec.Raw(_ENCODER.encode(merged))


_QUOTE: Final = ord('"')
_UNSET: Final = msgspec.UNSET
_PREFIXES: dict[tuple[str | None, str | None], bytes] = {}
_FILLS: dict[tuple[str | None, str | None], bytes] = {}


def _prefix(ip: str | None, user_agent: str | None) -> bytes:
    # '{"ip":"...","userAgent":"...",': what a splice puts in front of a context's first key.
    # The same client address and User-Agent repeat across a batch: encode each pair once.
    if len(_PREFIXES) >= 4096:
        _PREFIXES.clear()
    parts = []
    if ip is not None:
        parts.append(b'"ip":' + _ENCODER.encode(ip))
    if user_agent is not None:
        parts.append(b'"userAgent":' + _ENCODER.encode(user_agent))
    prefix = _PREFIXES[ip, user_agent] = b"{" + b",".join(parts) + b","
    return prefix


def _fill(ip: str | None, user_agent: str | None) -> bytes:
    # The whole context when the event has none.
    key = (ip, user_agent)
    fill = _FILLS.get(key)
    if fill is None:
        if len(_FILLS) >= 4096:
            _FILLS.clear()
        value = {}
        if ip is not None:
            value["ip"] = ip
        if user_agent is not None:
            value["userAgent"] = user_agent
        fill = _FILLS[key] = _ENCODER.encode(value)
    return fill


def fill_request_context(
    context: msgspec.Raw | None, ip: str | None, user_agent: str | None
) -> msgspec.Raw | None:
    """Set ``ip`` / ``userAgent`` from the request where the context lacks them.

    ``context`` is ``None`` or a Raw JSON object. A byte splice in front of the object's keys;
    the context is decoded as a dict only when a key is present but null (a splice would
    duplicate it).
    """
    if ip is None and user_agent is None:
        return context
    if context is None:
        return msgspec.Raw(_fill(ip, user_agent))
    # Decoding only these two keys is cheaper than searching the bytes for them.
    keys = _CONTEXT_KEYS.decode(context)
    has_ip = keys.ip
    if has_ip is not _UNSET:
        if has_ip is None and ip is not None:
            return _fill_nulls(context, ip, user_agent)
        ip = None
    has_user_agent = keys.userAgent
    if has_user_agent is not _UNSET:
        if has_user_agent is None and user_agent is not None:
            return _fill_nulls(context, ip, user_agent)
        user_agent = None
    if ip is None and user_agent is None:
        return context
    prefix = _PREFIXES.get((ip, user_agent)) or _prefix(ip, user_agent)
    data = bytes(context)
    if len(data) > 2 and data[1] == _QUOTE:  # '{"...': not empty
        return msgspec.Raw(data.replace(b"{", prefix, 1))  # the first byte is the "{"
    rest = data[1:].lstrip()
    if rest[:1] != b"}":
        return msgspec.Raw(prefix + rest)
    return msgspec.Raw(prefix[:-1] + rest)


def _fill_nulls(context: msgspec.Raw, ip: str | None, user_agent: str | None) -> msgspec.Raw:
    # A key is present but null: a splice would duplicate it, so go through a dict.
    as_dict = _ANY.decode(context)
    if as_dict.get("ip") is None and ip is not None:
        as_dict["ip"] = ip
    if as_dict.get("userAgent") is None and user_agent is not None:
        as_dict["userAgent"] = user_agent
    return msgspec.Raw(_ENCODER.encode(as_dict))
