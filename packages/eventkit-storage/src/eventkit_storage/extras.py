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
_MAP_FIELDS: Final = frozenset(("properties", "traits", "context", "integrations"))
_BRACE: Final = ord("{")

_OBJECT_DECODER: Final = msgspec.json.Decoder(dict[str, msgspec.Raw])
_DECODER: Final = msgspec.json.Decoder()
_ENCODER: Final = msgspec.json.Encoder()
_FIELD_NAMES: Final = frozenset(FIELD_COLUMNS)
_Raw: Final = msgspec.Raw
_encode: Final = _ENCODER.encode


def extras_json(event: TypedEvent) -> bytes | None:
    """The JSON object of ``event``'s top-level fields that no column holds (see the module),
    or ``None`` when there is none.

    Raises ``ValueError`` when ``event.payload`` is not a JSON object (a hand-built event; an
    adapter never makes one).
    """
    # One decode, values left undecoded (msgspec.Raw): this runs for every stored event, and
    # SDKs add fields of their own (writeKey, _metadata) to nearly every one.
    try:
        items = _OBJECT_DECODER.decode(event.payload)
    except (msgspec.DecodeError, TypeError) as exc:
        raise ValueError(f"payload is not a JSON object ({exc})") from None
    # Inlined (no call per field): a field is dropped when its column holds it.
    for name in items.keys() & _FIELD_NAMES:
        stored = getattr(event, FIELD_COLUMNS[name])
        if stored is None:
            continue  # kept: its column is null
        value = items[name]
        if name in _STRING_FIELDS:
            if value != _Raw(_encode(stored)) and not _same_string(value, stored):
                continue  # kept: its column holds another string
        elif name in _MAP_FIELDS and memoryview(value)[0] != _BRACE:
            continue  # kept: not an object, its column holds another value (request context)
        del items[name]
    return _encode(items) if items else None


def _same_string(value: msgspec.Raw, stored: Any) -> bool:
    """Whether the JSON ``value`` is the string ``stored``, escapes written another way."""
    try:
        return bool(_DECODER.decode(value) == stored)
    except (msgspec.DecodeError, TypeError):
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
