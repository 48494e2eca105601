"""The ``extras`` column, and the normalised event rebuilt from a stored row.

A stored row holds the normalised event in its typed columns (``message_id`` ... ``integrations``)
plus ``extras``: the JSON object of the event's top-level fields that no column holds, so that
nothing is stored twice. A field stays in ``extras`` when

- no column holds it (``category``, ``writeKey``, ``_metadata``, any field of a ``/collect``
  event), or
- its column is null (``"userId": 42`` on a schemaless stream: not a string, so not in
  ``user_id``; ``"userId": null``), or
- its column holds another value than the field (``"type": 5`` on a schemaless stream, whose
  ``type`` column says ``custom``; a ``context`` that is not an object, whose column holds the
  request's ip and userAgent): the original value is kept, the column wins in the normalised
  event.

A time field whose column is not null is not kept: its column holds its normalised value
(``timestamp`` corrected by ``sentAt``; on a schemaless stream a ``timestamp`` that is not a
time is replaced by ``received_at``). ``payload="full"`` keeps the whole original object.

``extras`` is null when there is nothing to keep (the usual case for SDK events).

The *normalised event* (Segment's shape, camelCase) is the original object with every field a
non-null column holds replaced by the column's value: ``messageId`` filled in when absent,
``context`` with the batch context and the request's ip and userAgent, ``timestamp`` corrected
by ``sentAt``, ``originalTimestamp``, ``sentAt`` and ``receivedAt`` as stored.
:func:`normalised_event` rebuilds it from a row, whatever the source adapter was: it reads the
columns and ``extras`` only. Rows written before ``extras`` existed (their ``payload`` holds the
whole original object) give the same result: ``payload`` stands in for ``extras``.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, Final, Literal

import msgspec
from eventkit_core import TypedEvent
from msgspec import UNSET, UnsetType

__all__ = [
    "FIELD_COLUMNS",
    "PAYLOAD_MODES",
    "PayloadMode",
    "extras_json",
    "normalised_event",
]

#: What the ``payload`` column holds: ``"extras"`` (null: the whole object is the columns plus
#: ``extras``) or ``"full"`` (the whole original object, as before ``extras`` existed).
PayloadMode = Literal["extras", "full"]
PAYLOAD_MODES: Final[tuple[PayloadMode, ...]] = ("extras", "full")

#: Top-level field of the normalised event (Segment's name) -> the column holding its value.
FIELD_COLUMNS: Final = {
    "messageId": "message_id",
    "type": "type",
    "userId": "user_id",
    "anonymousId": "anonymous_id",
    "event": "event",
    "name": "name",
    "groupId": "group_id",
    "previousId": "previous_id",
    "timestamp": "timestamp",
    "originalTimestamp": "original_timestamp",
    "sentAt": "sent_at",
    "receivedAt": "received_at",
    "properties": "properties",
    "traits": "traits",
    "context": "context",
    "integrations": "integrations",
}
#: Fields whose column holds the same string (when a string: otherwise the field is kept).
_STRING_FIELDS: Final = frozenset(
    ("messageId", "type", "userId", "anonymousId", "event", "name", "groupId", "previousId")
)
_TIME_COLUMNS: Final = frozenset(("timestamp", "original_timestamp", "sent_at", "received_at"))
_JSON_COLUMNS: Final = frozenset(("properties", "traits", "context", "integrations"))
#: Map fields: a value that is not an object is kept (its column holds another value then,
#: the request context of a schemaless event whose ``context`` was a list).
_MAP_COLUMNS: Final = _JSON_COLUMNS
_BRACE: Final = ord("{")

_Raw = msgspec.Raw
_EMPTY: Final = msgspec.Raw()


class _Fields(msgspec.Struct, forbid_unknown_fields=True):
    """The fields the columns hold: decoding fails on any other field, and on a string field
    that is not a string or null (the general path then keeps it). Absent: UNSET, or an empty
    Raw. Strings are decoded (cheap to compare with the column), the rest is left undecoded."""

    messageId: str | UnsetType | None = UNSET
    type: str | UnsetType | None = UNSET
    userId: str | UnsetType | None = UNSET
    anonymousId: str | UnsetType | None = UNSET
    event: str | UnsetType | None = UNSET
    name: str | UnsetType | None = UNSET
    groupId: str | UnsetType | None = UNSET
    previousId: str | UnsetType | None = UNSET
    timestamp: _Raw = _EMPTY
    originalTimestamp: _Raw = _EMPTY
    sentAt: _Raw = _EMPTY
    receivedAt: _Raw = _EMPTY
    properties: _Raw = _EMPTY
    traits: _Raw = _EMPTY
    context: _Raw = _EMPTY
    integrations: _Raw = _EMPTY


_FIELDS_DECODER: Final = msgspec.json.Decoder(_Fields)
_OBJECT_DECODER: Final = msgspec.json.Decoder(dict[str, msgspec.Raw])
_DECODER: Final = msgspec.json.Decoder()
_ENCODER: Final = msgspec.json.Encoder()


def extras_json(event: TypedEvent) -> bytes | None:
    """The JSON object of ``event``'s top-level fields that no column holds (see the module),
    or ``None`` when there is none.

    Raises ``ValueError`` when ``event.payload`` is not a JSON object (a hand-built event; an
    adapter never makes one).
    """
    payload = event.payload
    try:
        fields = _FIELDS_DECODER.decode(payload)
    except msgspec.DecodeError:  # another field (or not an object): the general path
        return _general_extras(event, payload)
    # Unrolled (no loop over the 16 fields): this runs for every stored event.
    kept = _kept_strings(fields, event)
    kept = _kept_values(fields, event, kept)
    return None if kept is None else _ENCODER.encode(kept)


def _keep(kept: dict[str, Any] | None, name: str, value: Any) -> dict[str, Any]:
    if kept is None:
        kept = {}
    kept[name] = value
    return kept


def _kept_strings(f: _Fields, e: TypedEvent) -> dict[str, Any] | None:
    """The string fields whose column does not hold the same string (None: all held)."""
    kept = None
    if f.messageId is not UNSET and f.messageId != e.message_id:
        kept = _keep(kept, "messageId", f.messageId)
    if f.type is not UNSET and f.type != e.type:
        kept = _keep(kept, "type", f.type)
    if f.userId is not UNSET and (f.userId is None or f.userId != e.user_id):
        kept = _keep(kept, "userId", f.userId)
    if f.anonymousId is not UNSET and (f.anonymousId is None or f.anonymousId != e.anonymous_id):
        kept = _keep(kept, "anonymousId", f.anonymousId)
    if f.event is not UNSET and (f.event is None or f.event != e.event):
        kept = _keep(kept, "event", f.event)
    if f.name is not UNSET and (f.name is None or f.name != e.name):
        kept = _keep(kept, "name", f.name)
    if f.groupId is not UNSET and (f.groupId is None or f.groupId != e.group_id):
        kept = _keep(kept, "groupId", f.groupId)
    if f.previousId is not UNSET and (f.previousId is None or f.previousId != e.previous_id):
        kept = _keep(kept, "previousId", f.previousId)
    return kept


def _kept_values(f: _Fields, e: TypedEvent, kept: dict[str, Any] | None) -> dict[str, Any] | None:
    """``kept`` plus the time and map fields whose column does not hold them."""
    if f.timestamp and e.timestamp is None:
        kept = _keep(kept, "timestamp", f.timestamp)
    if f.originalTimestamp and e.original_timestamp is None:
        kept = _keep(kept, "originalTimestamp", f.originalTimestamp)
    if f.sentAt and e.sent_at is None:
        kept = _keep(kept, "sentAt", f.sentAt)
    if f.receivedAt and e.received_at is None:
        kept = _keep(kept, "receivedAt", f.receivedAt)
    for name, value, column in (
        ("properties", f.properties, e.properties),
        ("traits", f.traits, e.traits),
        ("context", f.context, e.context),
        ("integrations", f.integrations, e.integrations),
    ):
        if value and (column is None or memoryview(value)[0] != _BRACE):
            kept = _keep(kept, name, value)
    return kept


def _general_extras(event: TypedEvent, payload: bytes) -> bytes | None:
    try:
        items = _OBJECT_DECODER.decode(payload)
    except msgspec.DecodeError as exc:
        raise ValueError(f"payload is not a JSON object ({exc})") from None
    kept = {
        name: value
        for name, value in items.items()
        if (column := FIELD_COLUMNS.get(name)) is None or not _held(event, name, column, value)
    }
    return _ENCODER.encode(kept) if kept else None


def _held(event: TypedEvent, name: str, column: str, value: msgspec.Raw) -> bool:
    """Whether ``column`` of ``event`` holds the field ``name`` (JSON ``value``)."""
    stored = getattr(event, column)
    if stored is None:
        return False
    if name in _STRING_FIELDS:
        return _same_string(value, stored)
    return column not in _MAP_COLUMNS or memoryview(value)[0] == _BRACE


def _same_string(value: msgspec.Raw, stored: Any) -> bool:
    """Whether the JSON ``value`` is the string ``stored`` (a non-null string column holds
    the normalised value of every other field)."""
    try:
        # The same bytes as msgspec writes it: the usual case, no decoding.
        if memoryview(value) == _ENCODER.encode(stored):
            return True
        return bool(_DECODER.decode(value) == stored)  # escapes written another way
    except (msgspec.DecodeError, msgspec.EncodeError, TypeError, UnicodeError):
        return False


def normalised_event(row: Mapping[str, Any]) -> dict[str, Any]:
    """The normalised (Segment-shaped) event of a stored row, as plain JSON values.

    ``row`` maps column names to values as Parquet, DuckDB or BigQuery return them: JSON columns
    as text (or already decoded), times as aware datetimes (or ISO 8601 text). Times come out as
    ISO 8601 text in UTC (``2024-05-01T12:00:00.123000Z``). Generic over the columns: it knows
    no source adapter. A row without ``extras`` but with ``payload`` (written before ``extras``
    existed) uses ``payload`` in its place: the columns override the fields they hold.
    """
    base = row.get("extras")
    if base is None:
        base = row.get("payload")
    out: dict[str, Any] = dict(_json_value(base)) if base is not None else {}
    for name, column in FIELD_COLUMNS.items():
        value = row.get(column)
        if value is None:
            continue
        if column in _TIME_COLUMNS:
            out[name] = _iso(value)
        elif column in _JSON_COLUMNS:
            out[name] = _json_value(value)
        else:
            out[name] = value
    return out


def _json_value(value: Any) -> Any:
    if isinstance(value, str | bytes | bytearray | memoryview):
        return _DECODER.decode(value)
    return value  # already decoded (a warehouse client's JSON type)


def _iso(value: datetime | str) -> str:
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")
