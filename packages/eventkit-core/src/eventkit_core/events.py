"""The event model: what was received (:class:`RawEvent`) and what it became (typed events).

Typed events keep nested maps (``properties``, ``traits``, ``context``, ``integrations``) and the
whole original object (``payload``) as undecoded JSON bytes (:class:`msgspec.Raw`): nothing on the
hot path needs them as Python objects, and the Parquet writer stores them as JSON text as they are.
Call :meth:`TypedEvent.to_dict` when you do want Python values.
"""

from __future__ import annotations

import hashlib
import uuid
from datetime import datetime
from typing import Any, ClassVar, Final

import msgspec

from eventkit_core.streams import DEFAULT_STREAM
from eventkit_core.timeutil import utcnow

#: Identifies the durable entry an event came from (a ring-buffer id, a Pub/Sub ack id, ...).
#: Producers attach it; stores hand it back after a durable write so the entry can be released.
SourceId = int | str


class RawEvent(msgspec.Struct, kw_only=True, omit_defaults=True):
    """One received JSON value, before any validation. Never rejected for its content.

    ``payload`` is the decoded JSON value, or a :class:`msgspec.Raw` holding it undecoded.
    ``RawEvent(payload={...})`` needs nothing else.
    """

    payload: Any
    stream: str = DEFAULT_STREAM
    received_at: datetime = msgspec.field(default_factory=utcnow)
    #: Endpoint that received it: "collect", "identify", "track", "batch", ...
    source: str = "collect"
    write_key_id: str | None = None
    ip: str | None = None
    user_agent: str | None = None
    request_id: str | None = None
    #: messageId chosen by the producer when the payload has none. Producers derive it from the
    #: durable entry (so a redelivered event keeps it); adapters fall back to a fresh uuid4.
    message_id: str | None = None
    #: Routing key (identity) when the producer already knows it; see :func:`identity_key`.
    key: str | None = None
    #: Segment ``/v1/batch`` top-level fields, applied to each item by the adapter.
    batch_context: Any = None
    batch_integrations: Any = None
    batch_sent_at: Any = None
    source_id: SourceId | None = None


class TypedEvent(msgspec.Struct, kw_only=True):
    """A validated, normalised event. Field names are the file and warehouse column names.

    Every typed event has every column (``None`` where the call type has none), so writers can
    build columns without knowing the subclass.
    """

    TYPE: ClassVar[str] = "custom"

    message_id: str
    stream: str
    received_at: datetime
    timestamp: datetime
    #: The whole original object, as JSON.
    payload: msgspec.Raw
    type: str = "custom"
    user_id: str | None = None
    anonymous_id: str | None = None
    original_timestamp: datetime | None = None
    sent_at: datetime | None = None
    event: str | None = None
    name: str | None = None
    category: str | None = None
    group_id: str | None = None
    previous_id: str | None = None
    properties: msgspec.Raw | None = None
    traits: msgspec.Raw | None = None
    context: msgspec.Raw | None = None
    integrations: msgspec.Raw | None = None
    source_id: SourceId | None = None

    def to_dict(self) -> dict[str, Any]:
        """The event as plain Python values, nested JSON decoded."""
        out: dict[str, Any] = {}
        for field in self.__struct_fields__:
            value = getattr(self, field)
            out[field] = _decode(value) if isinstance(value, msgspec.Raw) else value
        return out


def _decode(raw: msgspec.Raw) -> Any:
    return _JSON_DECODER.decode(raw)


class IdentifyEvent(TypedEvent, kw_only=True):
    TYPE: ClassVar[str] = "identify"
    type: str = "identify"


class TrackEvent(TypedEvent, kw_only=True):
    TYPE: ClassVar[str] = "track"
    type: str = "track"


class PageEvent(TypedEvent, kw_only=True):
    TYPE: ClassVar[str] = "page"
    type: str = "page"


class ScreenEvent(TypedEvent, kw_only=True):
    TYPE: ClassVar[str] = "screen"
    type: str = "screen"


class GroupEvent(TypedEvent, kw_only=True):
    TYPE: ClassVar[str] = "group"
    type: str = "group"


class AliasEvent(TypedEvent, kw_only=True):
    TYPE: ClassVar[str] = "alias"
    type: str = "alias"


class CustomEvent(TypedEvent, kw_only=True):
    """Any JSON object sent to a schemaless stream (``/collect/{stream}``), kept whole."""


#: Segment call type -> typed event class.
EVENT_CLASSES: dict[str, type[TypedEvent]] = {
    cls.TYPE: cls
    for cls in (IdentifyEvent, TrackEvent, PageEvent, ScreenEvent, GroupEvent, AliasEvent)
}


class AdaptError(msgspec.Struct, frozen=True):
    """Why an event was not accepted: a stable ``code`` and a message for people."""

    code: str
    message: str


class AdaptResult(msgspec.Struct, frozen=True):
    """What an adapter made of a :class:`RawEvent`: ``.ok`` and ``.event``, or ``.error``."""

    event: TypedEvent | None = None
    error: AdaptError | None = None

    @property
    def ok(self) -> bool:
        return self.error is None and self.event is not None


class DeadLetter(msgspec.Struct, kw_only=True):
    """An event that could not be accepted, with everything needed to replay it."""

    stream: str
    reason_code: str
    reason: str
    #: The item as it was received, JSON text.
    payload: str
    received_at: datetime
    message_id: str | None = None
    source: str = "collect"
    ip: str | None = None
    user_agent: str | None = None
    #: Batch-level fields the item was sent with, JSON text.
    batch_context: str | None = None
    batch_integrations: str | None = None
    batch_sent_at: str | None = None
    source_id: SourceId | None = None

    @classmethod
    def from_raw(
        cls, raw: RawEvent, error: AdaptError, message_id: str | None = None
    ) -> DeadLetter:
        return cls(
            stream=raw.stream,
            reason_code=error.code,
            reason=error.message,
            payload=json_text(raw.payload),
            received_at=raw.received_at,
            message_id=message_id or raw.message_id,
            source=raw.source,
            ip=raw.ip,
            user_agent=raw.user_agent,
            batch_context=None if raw.batch_context is None else json_text(raw.batch_context),
            batch_integrations=(
                None if raw.batch_integrations is None else json_text(raw.batch_integrations)
            ),
            batch_sent_at=None if raw.batch_sent_at is None else json_text(raw.batch_sent_at),
            source_id=raw.source_id,
        )

    def to_raw(self) -> RawEvent:
        """The :class:`RawEvent` this dead letter was made from (for replay)."""
        return RawEvent(
            payload=msgspec.Raw(self.payload.encode()),
            stream=self.stream,
            received_at=self.received_at,
            source=self.source,
            ip=self.ip,
            user_agent=self.user_agent,
            message_id=self.message_id,
            batch_context=_raw_or_none(self.batch_context),
            batch_integrations=_raw_or_none(self.batch_integrations),
            batch_sent_at=None if self.batch_sent_at is None else _decode_text(self.batch_sent_at),
            source_id=self.source_id,
        )


_JSON_DECODER = msgspec.json.Decoder()
_JSON_ENCODER = msgspec.json.Encoder()


def _raw_or_none(text: str | None) -> msgspec.Raw | None:
    return None if text is None else msgspec.Raw(text.encode())


def _decode_text(text: str) -> Any:
    try:
        return _JSON_DECODER.decode(text)
    except msgspec.DecodeError:
        return text


def json_text(value: Any) -> str:
    """JSON text of a decoded value or of a :class:`msgspec.Raw` (returned as it is)."""
    if isinstance(value, msgspec.Raw):
        return bytes(value).decode("utf-8", "replace")
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value).decode("utf-8", "replace")
    try:
        return _JSON_ENCODER.encode(value).decode()
    except (TypeError, ValueError, OverflowError):
        return repr(value)


def new_message_id() -> str:
    """A fresh messageId (uuid4), for events that arrive without one."""
    return str(uuid.uuid4())


def stable_message_id(namespace: str, entry_id: int, index: int) -> str:
    """A messageId derived from a durable entry and the item's position in it.

    Used instead of :func:`new_message_id` where the entry may be delivered again after a crash:
    the redelivered event keeps its id, so the warehouse can remove the duplicate. It has the
    form of a uuid4 (version and variant bits set) but is derived, not random.
    """
    # Same bytes as uuid5(NAMESPACE_URL, name) with uuid4's version/variant bits, computed without
    # building two UUID objects: this runs once per event on the collector's hot path.
    name = f"{namespace}/{entry_id}/{index}".encode()
    d = bytearray(hashlib.sha1(_NAMESPACE_URL_BYTES + name).digest()[:16])
    d[6] = (d[6] & 0x0F) | 0x40
    d[8] = (d[8] & 0x3F) | 0x80
    h = d.hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


_NAMESPACE_URL_BYTES: Final = uuid.NAMESPACE_URL.bytes


class _WireRawEvent(msgspec.Struct, kw_only=True, omit_defaults=True):
    # Mirror of RawEvent whose JSON-valued fields stay undecoded on the way back in.
    payload: msgspec.Raw
    stream: str = DEFAULT_STREAM
    received_at: datetime
    source: str = "collect"
    write_key_id: str | None = None
    ip: str | None = None
    user_agent: str | None = None
    request_id: str | None = None
    message_id: str | None = None
    key: str | None = None
    # msgspec cannot decode ``Raw | None``: an empty Raw stands for "absent".
    batch_context: msgspec.Raw = msgspec.field(default_factory=msgspec.Raw)
    batch_integrations: msgspec.Raw = msgspec.field(default_factory=msgspec.Raw)
    batch_sent_at: Any = None
    source_id: SourceId | None = None


_WIRE_DECODER = msgspec.json.Decoder(_WireRawEvent)


def encode_raw_event(event: RawEvent) -> bytes:
    """JSON bytes of a :class:`RawEvent`, e.g. for a Pub/Sub message."""
    return _JSON_ENCODER.encode(event)


def decode_raw_event(data: bytes) -> RawEvent:
    """Inverse of :func:`encode_raw_event`; ``payload`` comes back as :class:`msgspec.Raw`."""
    w = _WIRE_DECODER.decode(data)
    return RawEvent(
        payload=w.payload,
        stream=w.stream,
        received_at=w.received_at,
        source=w.source,
        write_key_id=w.write_key_id,
        ip=w.ip,
        user_agent=w.user_agent,
        request_id=w.request_id,
        message_id=w.message_id,
        key=w.key,
        batch_context=w.batch_context or None,
        batch_integrations=w.batch_integrations or None,
        batch_sent_at=w.batch_sent_at,
        source_id=w.source_id,
    )
