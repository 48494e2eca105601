"""Segment's spec (identify, track, page, screen, group, alias) -> eventkit's typed events."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from eventkit_core import (
    EVENT_CLASSES,
    AdaptError,
    AdaptResult,
    ConfigurationError,
    RawEvent,
    new_message_id,
)
from msgspec import Raw

from eventkit_validators import _message as m
from eventkit_validators import codes

_BRACE = ord("{")
_decode_strict = m.STRICT.decode
_first_byte = m.first_byte
_fill_request_context = m.fill_request_context
_CALLS = "identify, track, page, screen, group or alias"


def _check_limit(name: str, value: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigurationError(f"{name} must be a positive integer, got {value!r}")
    return value


def _fail(code: str, message: str) -> AdaptResult:
    return AdaptResult(error=AdaptError(code=code, message=message))


class SegmentSchemaAdapter:
    """Validates Segment calls and turns them into typed events. Never raises for content.

    ``max_event_bytes``: an event whose JSON is larger is ``event_too_large``.
    ``max_message_id_length``: a longer ``messageId`` is ``invalid_message_id``.
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
        self._sent_at: tuple[Any, datetime | AdaptError | None] = (None, None)

    def adapt(self, raw: RawEvent) -> AdaptResult:
        """A typed event (``result.ok``, ``result.event``) or why not (``result.error``)."""
        try:
            return self._adapt(raw)
        except Exception as exc:  # a bug, not bad input: keep the event as a dead letter
            return _fail("adapt_failed", f"adapter failed ({type(exc).__name__}: {exc}): report it")

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
        # The hot path: every step that well-formed events take is inlined (no helper calls,
        # no isinstance chains); anything unusual goes to the _message helpers.
        data = raw.payload
        if data.__class__ is not Raw or len(data) > self.max_event_bytes:
            data = m.to_json(data, self.max_event_bytes)
            if isinstance(data, AdaptError):
                return AdaptResult(error=data)
        try:
            msg = _decode_strict(data)
        except Exception:  # wrong field types, bad JSON: the lenient decode says which
            decoded = m.decode(data, strict_fields=True)
            if isinstance(decoded, AdaptError):
                return AdaptResult(error=decoded)
            msg = decoded

        kind = msg.type
        endpoint: str | None = raw.source
        if endpoint not in EVENT_CLASSES:
            endpoint = None
        if kind is None:
            if endpoint is None:
                return _fail(codes.INVALID_TYPE, f"type is missing: send type, one of {_CALLS}")
            kind = endpoint
        elif kind not in EVENT_CLASSES:
            return _fail(
                codes.INVALID_TYPE, f"type {m.show(kind)} is not a Segment call: use {_CALLS}"
            )
        elif endpoint is not None and kind != endpoint:
            return _fail(
                codes.INVALID_TYPE,
                f"type {kind!r} was sent to /v1/{endpoint}: send it to /v1/{kind} or /v1/batch",
            )

        user_id = msg.userId or None
        anonymous_id = msg.anonymousId or None
        if user_id is None and anonymous_id is None:
            return _fail(codes.MISSING_FIELD, "userId is required: send userId or anonymousId")
        if kind == "track":
            if not msg.event:
                return _fail(
                    codes.MISSING_FIELD,
                    "event is required for track: send the action's name as event",
                )
        elif kind == "group":
            if not msg.groupId:
                return _fail(
                    codes.MISSING_FIELD,
                    "groupId is required for group: send the group's id as groupId",
                )
        elif kind == "alias":
            if not msg.previousId:
                return _fail(
                    codes.MISSING_FIELD,
                    "previousId is required for alias: send the old id as previousId",
                )
            if user_id is None:
                return _fail(
                    codes.MISSING_FIELD, "userId is required for alias: send the new id as userId"
                )

        message_id = msg.messageId
        if message_id:
            if len(message_id) > self.max_message_id_length:
                return _fail(
                    codes.INVALID_MESSAGE_ID,
                    f"messageId is {len(message_id)} characters long: "
                    f"send at most {self.max_message_id_length}",
                )
        else:
            message_id = raw.message_id or new_message_id()

        # Nested maps stay Raw; only their first byte is looked at ("{" for an object).
        properties: Raw | None = msg.properties
        if not properties:
            properties = None
        elif _first_byte(properties)[0] != _BRACE:
            checked = m.nested(properties, "properties")
            if isinstance(checked, AdaptError):
                return AdaptResult(error=checked)
            properties = checked
        traits: Raw | None = msg.traits
        if not traits:
            traits = None
        elif _first_byte(traits)[0] != _BRACE:
            checked = m.nested(traits, "traits")
            if isinstance(checked, AdaptError):
                return AdaptResult(error=checked)
            traits = checked
        context: Raw | None = msg.context
        if not context:
            context = None
        elif _first_byte(context)[0] != _BRACE:
            checked = m.nested(context, "context")
            if isinstance(checked, AdaptError):
                return AdaptResult(error=checked)
            context = checked
        integrations: Raw | None = msg.integrations
        if not integrations:
            integrations = None
        elif _first_byte(integrations)[0] != _BRACE:
            checked = m.nested(integrations, "integrations")
            if isinstance(checked, AdaptError):
                return AdaptResult(error=checked)
            integrations = checked
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
            # Every item of a batch carries the same object: parse it once.
            last = self._sent_at
            sent = (
                last[1] if last[0] is raw.batch_sent_at else self._batch_sent_at(raw.batch_sent_at)
            )
            if isinstance(sent, AdaptError):
                return AdaptResult(error=sent)
            sent_at = sent

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

        # At most 15 keywords: with more, CPython builds a dict for the call, which costs a
        # microsecond. The fields most calls lack are set afterwards.
        event = EVENT_CLASSES[kind](
            message_id=message_id,
            stream=raw.stream,
            received_at=received_at,
            timestamp=timestamp,
            payload=data,
            user_id=user_id,
            anonymous_id=anonymous_id,
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
        return AdaptResult(event=event)

    def _batch_sent_at(self, value: Any) -> datetime | AdaptError | None:
        parsed = m.batch_sent_at(value)
        self._sent_at = (value, parsed)
        return parsed
