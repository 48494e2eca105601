"""The ring-buffer entry (one per HTTP request) and how it becomes RawEvents.

One request is appended to the ring buffer as one :class:`Envelope` (the JSON body kept as it
came, undecoded). The publisher turns it into one :class:`~eventkit_core.RawEvent` per item:
routed by the item's own ``type`` on ``/v1/batch``, with a ``messageId`` derived from the entry
(core's ``stable_message_id``) when the item has none, so an entry delivered again after a crash
gives its events the same ids. The routing key is core's ``identity_key``, computed by the queue.
"""

from __future__ import annotations

import zlib
from collections.abc import Mapping
from datetime import datetime
from typing import Any, Final

import msgspec
from eventkit_core import DEFAULT_STREAM, RawEvent, stable_message_id
from eventkit_validators.endpoints import INVALID_SNOWPLOW, SNOWPLOW, VENDOR_PEEKS
from eventkit_validators.snowplow import call_type as snowplow_call_type

from eventkit_collector import vendors
from eventkit_collector.adapter import INVALID_BATCH
from eventkit_collector.edge import EdgeError, Kind, Limits, Parsed, inflate, parse_body


class Envelope(msgspec.Struct, array_like=True, omit_defaults=True):
    """One accepted request, as stored in the ring buffer (MessagePack, fields by position).

    ``body`` is the request's JSON, or the gzip stream it arrived in (``gzip=True``): a batch
    is kept compressed, about ten times smaller in the ring buffer.
    """

    #: Endpoint: "collect", "batch", or a Segment call ("track", "identify", ...).
    source: str
    #: Stream of every item (``/collect``, ``/v1/<call>``); ``None`` for ``/v1/batch``.
    stream: str | None
    received_at: datetime
    body: bytes
    ip: str | None = None
    user_agent: str | None = None
    write_key_id: str | None = None
    request_id: str | None = None
    gzip: bool = False

    def json(self) -> bytes:
        """The body as JSON text."""
        if self.gzip:  # every member, as the edge read it (zlib.decompress stops at the first)
            return inflate(self.body, 16 + zlib.MAX_WBITS, 1 << 62)
        return self.body


_ENCODER: Final = msgspec.msgpack.Encoder()
_DECODER: Final = msgspec.msgpack.Decoder(Envelope)


def encode_envelope(env: Envelope) -> bytes:
    return _ENCODER.encode(env)


def decode_envelope(data: bytes) -> Envelope:
    return _DECODER.decode(data)


def kind_of(source: str) -> Kind:
    if source == "collect":
        return Kind.COLLECT
    if source == "batch":
        return Kind.BATCH
    if source == SNOWPLOW:
        return Kind.SNOWPLOW
    return Kind.SINGLE


class _Peek(msgspec.Struct):
    # The routing key is left to the queue (core's identity_key reads userId / anonymousId).
    type: Any = None
    messageId: Any = None


_PEEK: Final = msgspec.json.Decoder(_Peek)
_EMPTY: Final = _Peek()


def _text(value: Any) -> str | None:
    if isinstance(value, str):
        return value or None
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)
    return None


def reparse(env: Envelope, limits: Limits) -> Parsed:
    """Split a stored envelope again (restart recovery). Never raises."""
    try:
        data = env.json()
    except EdgeError as exc:  # cannot happen for what the edge accepted
        return Parsed(items=[msgspec.Raw(b'"undecodable body"')], unfit=exc.message)
    unbounded = Limits(
        max_event_bytes=max(limits.max_event_bytes, 1 << 40),
        max_batch_bytes=1 << 40,
        max_batch_events=1 << 40,
    )
    try:
        vendor_kind = vendors.SOURCE_KINDS.get(env.source)
        if vendor_kind is not None:  # PostHog, Amplitude: stored as decoded JSON
            return vendors.split(vendor_kind, data, unbounded)[1]
        return parse_body(kind_of(env.source), data, unbounded)
    except EdgeError as exc:  # cannot happen for what the edge accepted; keep it as a dead letter
        return Parsed(items=[msgspec.Raw(data)], unfit=exc.message)


#: Source of the one dead letter a body of the wrong shape becomes (it stays refused on replay).
_UNFIT_SOURCES: Final = {"batch": INVALID_BATCH, SNOWPLOW: INVALID_SNOWPLOW}


def to_raw_events(
    entry_id: int,
    env: Envelope,
    parsed: Parsed,
    *,
    namespace: str,
    type_streams: Mapping[str, str],
    source_streams: Mapping[str, Mapping[str, str]] | None = None,
) -> list[RawEvent]:
    """The RawEvents of one envelope; ``source_id`` is the entry id.

    ``source_streams``: per source (``posthog``, ``amplitude``, ``snowplow``), call type -> stream,
    used instead of ``type_streams`` for that source's events.
    """
    source = env.source
    if parsed.unfit is None and (source == SNOWPLOW or source in VENDOR_PEEKS):
        streams = (source_streams or {}).get(source, type_streams)
        if source == SNOWPLOW:
            return snowplow_raw_events(
                entry_id, env, parsed, namespace=namespace, type_streams=streams
            )
        return _vendor_raw_events(entry_id, env, parsed, namespace, streams)
    stream = env.stream
    common: dict[str, Any] = {
        "received_at": env.received_at,
        "ip": env.ip,
        "user_agent": env.user_agent,
        "write_key_id": env.write_key_id,
        "request_id": env.request_id,
        "source_id": entry_id,
    }
    if parsed.unfit is not None:
        return [
            RawEvent(
                payload=parsed.items[0],
                stream=stream or DEFAULT_STREAM,
                source=_UNFIT_SOURCES.get(source, source),
                message_id=stable_message_id(namespace, entry_id, 0),
                key="",
                **common,
            )
        ]
    batch = source == "batch"
    out: list[RawEvent] = []
    append = out.append
    peek = _PEEK.decode
    received_at, ip, user_agent = env.received_at, env.ip, env.user_agent
    write_key_id, request_id = env.write_key_id, env.request_id
    context, integrations, sent_at = (
        parsed.batch_context,
        parsed.batch_integrations,
        parsed.batch_sent_at,
    )
    fixed_stream = stream or DEFAULT_STREAM
    for index, item in enumerate(parsed.items):
        try:
            p = peek(item)
        except (msgspec.DecodeError, RecursionError):  # not an object: the adapter dead-letters it
            p = _EMPTY
        # The item's own messageId when it has one (dead letters keep it too), else one derived
        # from the entry, so that a redelivered entry gives its events the same ids.
        mid = p.messageId
        message_id = (
            mid
            if type(mid) is str and mid
            else (_text(mid) or stable_message_id(namespace, entry_id, index))
        )
        if batch:
            kind = p.type
            item_stream = (
                type_streams.get(kind, DEFAULT_STREAM) if type(kind) is str else DEFAULT_STREAM
            )
        else:
            item_stream = fixed_stream
        append(
            RawEvent(
                payload=item,
                stream=item_stream,
                received_at=received_at,
                source=source,
                write_key_id=write_key_id,
                ip=ip,
                user_agent=user_agent,
                request_id=request_id,
                message_id=message_id,
                batch_context=context,
                batch_integrations=integrations,
                batch_sent_at=sent_at,
                source_id=entry_id,
            )
        )
    return out


class _SnowplowPeek(msgspec.Struct):
    e: Any = None
    eid: Any = None
    uid: Any = None
    duid: Any = None
    nuid: Any = None
    tnuid: Any = None


_SNOWPLOW_PEEK: Final = msgspec.json.Decoder(_SnowplowPeek)
_SNOWPLOW_EMPTY: Final = _SnowplowPeek()


def snowplow_raw_events(
    entry_id: int,
    env: Envelope,
    parsed: Parsed,
    *,
    namespace: str,
    type_streams: Mapping[str, str],
) -> list[RawEvent]:
    """The RawEvents of a Snowplow tp2 envelope: each event's stream from its type (``e``),
    its messageId from ``eid``, its routing key from its user / device ids."""
    out: list[RawEvent] = []
    for index, item in enumerate(parsed.items):
        try:
            p = _SNOWPLOW_PEEK.decode(item)
        except (msgspec.DecodeError, RecursionError):  # not an object: the adapter dead-letters it
            p = _SNOWPLOW_EMPTY
        kind = snowplow_call_type(p.e)
        key = next((t for t in map(_text, (p.uid, p.duid, p.nuid, p.tnuid)) if t), None)
        out.append(
            RawEvent(
                payload=item,
                stream=type_streams.get(kind, DEFAULT_STREAM) if kind else DEFAULT_STREAM,
                received_at=env.received_at,
                source=SNOWPLOW,
                write_key_id=env.write_key_id,
                ip=env.ip,
                user_agent=env.user_agent,
                request_id=env.request_id,
                message_id=_text(p.eid) or stable_message_id(namespace, entry_id, index),
                key=key,
                source_id=entry_id,
            )
        )
    return out


def _vendor_raw_events(
    entry_id: int,
    env: Envelope,
    parsed: Parsed,
    namespace: str,
    streams: Mapping[str, str],
) -> list[RawEvent]:
    """A PostHog or Amplitude envelope's RawEvents: each routed by the call it maps to."""
    peek = VENDOR_PEEKS[env.source]
    out: list[RawEvent] = []
    for index, item in enumerate(parsed.items):
        kind, message_id, key = peek(item)
        out.append(
            RawEvent(
                payload=item,
                stream=streams.get(kind, DEFAULT_STREAM) if kind is not None else DEFAULT_STREAM,
                received_at=env.received_at,
                source=env.source,
                write_key_id=env.write_key_id,
                ip=env.ip,
                user_agent=env.user_agent,
                request_id=env.request_id,
                message_id=message_id or stable_message_id(namespace, entry_id, index),
                key=key,
                batch_sent_at=parsed.batch_sent_at,
                source_id=entry_id,
            )
        )
    return out
