"""Schemaless streams (``/collect/{stream}``): any JSON object, kept whole as a CustomEvent."""

from __future__ import annotations

from eventkit_core import AdaptError, CustomEvent, RawEvent, TypedEvent

from eventkit_validators.core import AdapterCore, Message


class GenericAdapter(AdapterCore):
    """Accepts any JSON object; fills the Segment-named columns it finds with the right type.

    Fails only for a non-object (``not_an_object``), an event over ``max_event_bytes``
    (``event_too_large``) and a string ``messageId`` longer than ``max_message_id_length``
    (``invalid_message_id``). Fields of the wrong type are left out of their column (the whole
    object is still in ``payload``); ``type`` is ``"custom"`` unless the event names one.
    """

    __slots__ = ()
    strict = False
    keeps_own_type = True

    def event_class(self, msg: Message, raw: RawEvent) -> type[TypedEvent] | AdaptError:
        return CustomEvent
