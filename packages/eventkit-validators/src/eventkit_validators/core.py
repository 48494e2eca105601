"""The one adapter core: the JSON of one event -> a typed event, in short named steps.

Every source adapter is this core plus two source-specific steps:

- :meth:`AdapterCore.map_fields` turns the event's JSON into a :class:`Message` (Segment's field
  names, normalised types). Segment and ``/collect`` events already use Segment's names; an
  adapter for another source's shape (PostHog's ``distinct_id``, Amplitude's ``user_id``, ...)
  overrides only this step.
- :meth:`AdapterCore.event_class` says whether the message is acceptable and which
  :class:`~eventkit_core.TypedEvent` class it becomes.

The steps in between (size check, message id, nested maps, batch and request context,
timestamps, building the event) are shared. ``strict`` says what a field of the wrong shape is:
an error (Segment's spec) or simply absent (schemaless streams).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any, ClassVar, TypeVar

from eventkit_core import (
    AdaptError,
    AdaptResult,
    ConfigurationError,
    EventkitError,
    RawEvent,
    TypedEvent,
    new_message_id,
)
from msgspec import Raw

from eventkit_validators import _message as m
from eventkit_validators import codes

#: The normalised fields of one event, as :meth:`AdapterCore.map_fields` returns them. Nested
#: maps (``properties``, ``traits``, ``context``, ``integrations``) stay undecoded JSON; an empty
#: :class:`msgspec.Raw` means absent.
Message = m.Message

_T = TypeVar("_T")
_BRACE = ord("{")
_first_byte = m.first_byte
_decode_strict = m.STRICT.decode


def check_limit(name: str, value: int) -> int:
    """``value`` when it is a positive integer; a :class:`ConfigurationError` otherwise."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigurationError(f"{name} must be a positive integer, got {value!r}")
    return value


#: ``(properties, traits, context, integrations)``, each a JSON object or ``None`` (a tuple:
#: cheaper to build than an object, on every event's path).
Maps = tuple[Raw | None, Raw | None, Raw | None, Raw | None]


class _Rejected(EventkitError, ValueError):
    """Bad input found by a shared step; never leaves :meth:`AdapterCore.adapt`."""

    def __init__(self, error: AdaptError) -> None:
        super().__init__(error.message, code=error.code)
        self.error = error


def _accepted(value: _T | AdaptError) -> _T:
    if isinstance(value, AdaptError):
        raise _Rejected(value)
    return value


class AdapterCore:
    """Validates one event and turns it into a typed event. Never raises for content.

    ``max_event_bytes``: an event whose JSON is larger is ``event_too_large``.
    ``max_message_id_length``: a longer ``messageId`` is ``invalid_message_id``.
    """

    #: True: a field of the wrong type is an error. False: it is left out of its column (the
    #: whole event is still in ``payload``).
    strict: ClassVar[bool] = True
    #: True: the event keeps the ``type`` it names (schemaless streams); False: its class's.
    keeps_own_type: ClassVar[bool] = False

    __slots__ = (
        "_context_cache",
        "_integrations_cache",
        "_sent_at",
        "max_event_bytes",
        "max_message_id_length",
    )

    def __init__(self, *, max_event_bytes: int = 32768, max_message_id_length: int = 100) -> None:
        self.max_event_bytes = check_limit("max_event_bytes", max_event_bytes)
        self.max_message_id_length = check_limit("max_message_id_length", max_message_id_length)
        # Every item of a batch carries the same batch-level objects: decode each once.
        self._context_cache = m.BatchCache()
        self._integrations_cache = m.BatchCache()
        self._sent_at: tuple[Any, datetime | AdaptError | None] = (None, None)

    # -- the public interface (eventkit_core.SchemaAdapter) ------------------------------------

    def adapt(self, raw: RawEvent) -> AdaptResult:
        """A typed event (``result.ok``, ``result.event``) or why not (``result.error``)."""
        try:
            return self._adapt(raw)
        except Exception as exc:  # a bug, not bad input: keep the event as a dead letter
            error = AdaptError(
                code="adapt_failed",
                message=f"adapter failed ({type(exc).__name__}: {exc}): report it",
            )
            return AdaptResult(error=error)

    def adapt_many(self, raws: Sequence[RawEvent]) -> list[AdaptResult]:
        """:meth:`adapt` for each event, in order (one call per batch: less overhead)."""
        adapt = self._adapt
        out: list[AdaptResult] = []
        append = out.append
        for raw in raws:
            try:
                append(adapt(raw))
            except Exception:  # the rare bug: adapt() turns it into a dead letter
                append(self.adapt(raw))
        return out

    # -- the source-specific steps -------------------------------------------------------------

    def map_fields(self, data: Raw) -> Message | AdaptError:
        """The event's fields under Segment's names, or why they cannot be read."""
        try:
            return _decode_strict(data)
        except Exception:  # wrong field types, bad JSON: the lenient decode says which
            return m.decode(data, strict_fields=self.strict)

    def event_class(self, msg: Message, raw: RawEvent) -> type[TypedEvent] | AdaptError:
        """The class the event becomes, or why it is not acceptable."""
        raise NotImplementedError

    # -- the shared steps ----------------------------------------------------------------------

    def _adapt(self, raw: RawEvent) -> AdaptResult:
        # The shared steps raise _Rejected for bad input: one handler here instead of a check
        # after every step (free in CPython 3.11 while nothing is raised, the usual case).
        try:
            data = self._event_json(raw.payload)
            msg = self.map_fields(data)
            if isinstance(msg, AdaptError):
                return AdaptResult(error=msg)
            cls = self.event_class(msg, raw)
            if isinstance(cls, AdaptError):
                return AdaptResult(error=cls)
            message_id = self._message_id(msg, raw)
            maps = self._maps(msg, raw)
            sent_at = self._sent_at_of(msg, raw)
        except _Rejected as rejected:
            return AdaptResult(error=rejected.error)
        return AdaptResult(event=self._build(cls, msg, raw, data, message_id, maps, sent_at))

    def _event_json(self, payload: Any) -> Raw:
        # Raw within the size limit, the usual case, is passed on without a copy.
        if payload.__class__ is Raw and len(payload) <= self.max_event_bytes:
            return payload  # type: ignore[no-any-return]
        return _accepted(m.to_json(payload, self.max_event_bytes))

    def _message_id(self, msg: Message, raw: RawEvent) -> str:
        message_id = msg.messageId
        if not message_id:
            # The id the collector derived from the request (stable across redelivery).
            return raw.message_id or new_message_id()
        if len(message_id) > self.max_message_id_length:
            raise _Rejected(
                AdaptError(
                    code=codes.INVALID_MESSAGE_ID,
                    message=f"messageId is {len(message_id)} characters long: "
                    f"send at most {self.max_message_id_length}",
                )
            )
        return message_id

    def _map(self, value: Raw, field: str) -> Raw | None:
        # Only the first byte is looked at: "{" is an object, kept undecoded.
        if value and _first_byte(value)[0] == _BRACE:
            return value
        if not value or not self.strict:
            return None  # absent; or, on a schemaless stream, left out of its column
        return _accepted(m.nested(value, field))  # null, or the wrong type

    def _maps(self, msg: Message, raw: RawEvent) -> Maps:
        properties = self._map(msg.properties, "properties")
        traits = self._map(msg.traits, "traits")
        context = self._map(msg.context, "context")
        integrations = self._map(msg.integrations, "integrations")
        if raw.batch_context is not None:
            context = m.merge(context, raw.batch_context, self._context_cache)
        if raw.batch_integrations is not None:
            integrations = m.merge(integrations, raw.batch_integrations, self._integrations_cache)
        if raw.ip is not None or raw.user_agent is not None:
            context = m.fill_request_context(context, raw.ip, raw.user_agent)
        return properties, traits, context, integrations

    def _sent_at_of(self, msg: Message, raw: RawEvent) -> datetime | None:
        sent_at = msg.sentAt
        if sent_at is not None:
            return sent_at if sent_at.tzinfo is UTC else sent_at.astimezone(UTC)
        batch = raw.batch_sent_at
        if batch is None:
            return None
        last = self._sent_at
        parsed = last[1] if last[0] is batch else self._parse_batch_sent_at(batch)
        if isinstance(parsed, AdaptError):
            if self.strict:
                raise _Rejected(parsed)
            return None  # a schemaless stream keeps the event, without the correction
        return parsed

    def _parse_batch_sent_at(self, value: Any) -> datetime | AdaptError | None:
        parsed = m.batch_sent_at(value)
        self._sent_at = (value, parsed)
        return parsed

    def _build(
        self,
        cls: type[TypedEvent],
        msg: Message,
        raw: RawEvent,
        data: Raw,
        message_id: str,
        maps: Maps,
        sent_at: datetime | None,
    ) -> TypedEvent:
        original = msg.originalTimestamp or msg.timestamp
        if original is not None and original.tzinfo is not UTC:
            original = original.astimezone(UTC)
        received_at = raw.received_at
        # eventkit_core.corrected_timestamp, inlined (it is on every event's path).
        if original is None:
            timestamp = received_at
        elif sent_at is None:
            timestamp = original
        else:
            try:
                timestamp = received_at - (sent_at - original)
            except OverflowError:
                timestamp = original
        properties, traits, context, integrations = maps
        # At most 15 keywords: with more, CPython builds a dict for the call, which costs a
        # microsecond. The fields most calls lack are set afterwards.
        event = cls(
            message_id=message_id,
            stream=raw.stream,
            received_at=received_at,
            timestamp=timestamp,
            payload=data,
            user_id=msg.userId or None,
            anonymous_id=msg.anonymousId or None,
            original_timestamp=original,
            sent_at=sent_at,
            event=msg.event,
            properties=properties,
            traits=traits,
            context=context,
            integrations=integrations,
            source_id=raw.source_id,
        )
        value = msg.name
        if value is not None:
            event.name = value
        value = msg.category
        if value is not None:
            event.category = value
        value = msg.groupId
        if value is not None:
            event.group_id = value
        value = msg.previousId
        if value is not None:
            event.previous_id = value
        if self.keeps_own_type and msg.type:
            event.type = msg.type
        return event
