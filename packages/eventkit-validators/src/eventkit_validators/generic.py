"""Schemaless streams (``/collect/{stream}``): any JSON object, kept whole as a CustomEvent."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from eventkit_core import (
    AdaptError,
    AdaptResult,
    CustomEvent,
    RawEvent,
    new_message_id,
)
from msgspec import Raw

from eventkit_validators import _message as m
from eventkit_validators import codes
from eventkit_validators.segment import _check_limit

_BRACE = ord("{")
_decode_strict = m.STRICT.decode
_first_byte = m.first_byte
_fill_request_context = m.fill_request_context


class GenericAdapter:
    """Accepts any JSON object; fills the Segment-named columns it finds with the right type.

    Fails only for a non-object (``not_an_object``), an event over ``max_event_bytes``
    (``event_too_large``) and a string ``messageId`` longer than ``max_message_id_length``
    (``invalid_message_id``). Fields of the wrong type are left out of their column (the whole
    object is still in ``payload``).
    """

    __slots__ = (
        "_context_cache",
        "_integrations_cache",
        "_sent_at",
        "max_event_bytes",
        "max_message_id_length",
    )

    def __init__(self, *, max_event_bytes: int = 32768, max_message_id_length: int = 100) -> None:
        self.max_event_bytes = _check_limit("max_event_bytes", max_event_bytes)
        self.max_message_id_length = _check_limit("max_message_id_length", max_message_id_length)
        self._context_cache = m.BatchCache()
        self._integrations_cache = m.BatchCache()
        self._sent_at: tuple[Any, datetime | None] = (None, None)

    def adapt(self, raw: RawEvent) -> AdaptResult:
        """A :class:`~eventkit_core.CustomEvent` or why not (``result.error``)."""
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
            except Exception:
                append(self.adapt(raw))
        return out

    def _adapt(self, raw: RawEvent) -> AdaptResult:
        # The same inlined hot path as SegmentSchemaAdapter._adapt, with fewer checks.
        data = raw.payload
        if data.__class__ is not Raw or len(data) > self.max_event_bytes:
            data = m.to_json(data, self.max_event_bytes)
            if isinstance(data, AdaptError):
                return AdaptResult(error=data)
        try:
            msg = _decode_strict(data)
        except Exception:  # wrong field types, bad JSON: the lenient decode sorts them out
            decoded = m.decode(data, strict_fields=False)
            if isinstance(decoded, AdaptError):
                return AdaptResult(error=decoded)
            msg = decoded

        message_id = msg.messageId
        if message_id:
            if len(message_id) > self.max_message_id_length:
                return AdaptResult(
                    error=AdaptError(
                        code=codes.INVALID_MESSAGE_ID,
                        message=f"messageId is {len(message_id)} characters long: "
                        f"send at most {self.max_message_id_length}",
                    )
                )
        else:
            message_id = raw.message_id or new_message_id()

        # Nested maps that are not objects are left out (only their first byte is looked at).
        properties: Raw | None = msg.properties
        if not properties or _first_byte(properties)[0] != _BRACE:
            properties = None
        traits: Raw | None = msg.traits
        if not traits or _first_byte(traits)[0] != _BRACE:
            traits = None
        context: Raw | None = msg.context
        if not context or _first_byte(context)[0] != _BRACE:
            context = None
        integrations: Raw | None = msg.integrations
        if not integrations or _first_byte(integrations)[0] != _BRACE:
            integrations = None
        if raw.batch_context is not None:
            context = m.merge(context, raw.batch_context, self._context_cache)
        if raw.batch_integrations is not None:
            integrations = m.merge(integrations, raw.batch_integrations, self._integrations_cache)
        ip = raw.ip
        user_agent = raw.user_agent
        if ip is not None or user_agent is not None:
            context = _fill_request_context(context, ip, user_agent)

        original = msg.originalTimestamp or msg.timestamp
        if original is not None and original.tzinfo is not UTC:
            original = original.astimezone(UTC)
        sent_at = msg.sentAt
        if sent_at is not None:
            if sent_at.tzinfo is not UTC:
                sent_at = sent_at.astimezone(UTC)
        elif raw.batch_sent_at is not None:
            sent_at = self._batch_sent_at(raw.batch_sent_at)

        # eventkit_core.corrected_timestamp, inlined.
        received_at = raw.received_at
        if original is None:
            timestamp = received_at
        elif sent_at is None:
            timestamp = original
        else:
            try:
                timestamp = received_at - (sent_at - original)
            except OverflowError:
                timestamp = original

        # At most 15 keywords (see SegmentSchemaAdapter._adapt); the rarer fields afterwards.
        event = CustomEvent(
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
        value = msg.type
        if value:
            event.type = value
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
        return AdaptResult(event=event)

    def _batch_sent_at(self, value: Any) -> datetime | None:
        last = self._sent_at
        if last[0] is value:
            return last[1]
        parsed = m.batch_sent_at(value)
        result = None if isinstance(parsed, AdaptError) else parsed
        self._sent_at = (value, result)
        return result
