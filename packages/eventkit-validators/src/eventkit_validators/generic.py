"""Schemaless streams (``/collect/{stream}``): any JSON object, kept whole as a CustomEvent."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from eventkit_core import (
    AdaptError,
    AdaptResult,
    CustomEvent,
    RawEvent,
    corrected_timestamp,
    new_message_id,
)

from eventkit_validators import _message as m
from eventkit_validators import codes
from eventkit_validators.segment import _check_limit


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
        """:meth:`adapt` for each event, in order."""
        adapt = self.adapt
        return [adapt(raw) for raw in raws]

    def _adapt(self, raw: RawEvent) -> AdaptResult:
        data = m.to_json(raw.payload, self.max_event_bytes)
        if isinstance(data, AdaptError):
            return AdaptResult(error=data)
        msg = m.decode(data, strict_fields=False)
        if isinstance(msg, AdaptError):
            return AdaptResult(error=msg)

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

        context = m.nested_or_none(msg.context)
        integrations = m.nested_or_none(msg.integrations)
        if raw.batch_context is not None:
            context = m.merge(context, raw.batch_context, self._context_cache)
        if raw.batch_integrations is not None:
            integrations = m.merge(integrations, raw.batch_integrations, self._integrations_cache)
        context = m.fill_request_context(context, raw.ip, raw.user_agent)

        original = m.utc(msg.originalTimestamp) or m.utc(msg.timestamp)
        sent_at = m.utc(msg.sentAt)
        if sent_at is None and raw.batch_sent_at is not None:
            sent_at = self._batch_sent_at(raw.batch_sent_at)

        event = CustomEvent(
            type=msg.type or "custom",
            message_id=message_id,
            stream=raw.stream,
            received_at=raw.received_at,
            timestamp=corrected_timestamp(raw.received_at, sent_at, original),
            payload=data,
            user_id=msg.userId or None,
            anonymous_id=msg.anonymousId or None,
            original_timestamp=original,
            sent_at=sent_at,
            event=msg.event,
            name=msg.name,
            category=msg.category,
            group_id=msg.groupId,
            previous_id=msg.previousId,
            properties=m.nested_or_none(msg.properties),
            traits=m.nested_or_none(msg.traits),
            context=context,
            integrations=integrations,
            source_id=raw.source_id,
        )
        return AdaptResult(event=event)

    def _batch_sent_at(self, value: Any) -> datetime | None:
        last = self._sent_at
        if last[0] is value:
            return last[1]
        parsed = m.batch_sent_at(value)
        result = None if isinstance(parsed, AdaptError) else parsed
        self._sent_at = (value, result)
        return result
