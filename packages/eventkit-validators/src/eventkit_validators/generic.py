"""Schemaless streams (``/collect/{stream}``): any JSON object, kept whole as a CustomEvent."""

from __future__ import annotations

from datetime import datetime

from eventkit_core import AdaptError, CustomEvent, RawEvent, TypedEvent
from msgspec import Raw

from eventkit_validators.core import AdapterCore, Maps, Message


class GenericAdapter(AdapterCore):
    """Accepts any JSON object; fills the Segment-named columns it finds with the right type.

    Fails only for a non-object (``not_an_object``), an event over ``max_event_bytes``
    (``event_too_large``) and a string ``messageId`` longer than ``max_message_id_length``
    (``invalid_message_id``). Fields of the wrong type are left out of their column (the whole
    object is still in ``payload``).
    """

    __slots__ = ()
    strict = False

    def event_class(self, msg: Message, raw: RawEvent) -> type[TypedEvent] | AdaptError:
        return CustomEvent

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
        event = super()._build(cls, msg, raw, data, message_id, maps, sent_at)
        if msg.type:  # a schemaless event may name its own type; "custom" otherwise
            event.type = msg.type
        return event
