"""Segment's spec (identify, track, page, screen, group, alias) -> eventkit's typed events."""

from __future__ import annotations

from typing import Final

from eventkit_core import EVENT_CLASSES, AdaptError, RawEvent, TypedEvent

from eventkit_validators import _message as m
from eventkit_validators import codes
from eventkit_validators.core import AdapterCore, Message

_CALLS: Final = "identify, track, page, screen, group or alias"

#: call type -> (field that call requires, what the message tells the sender to do).
_REQUIRED: Final[dict[str, tuple[str, str]]] = {
    "track": ("event", "event is required for track: send the action's name as event"),
    "group": ("groupId", "groupId is required for group: send the group's id as groupId"),
    "alias": ("previousId", "previousId is required for alias: send the old id as previousId"),
}


def _missing(message: str) -> AdaptError:
    return AdaptError(code=codes.MISSING_FIELD, message=message)


class SegmentSchemaAdapter(AdapterCore):
    """Validates Segment calls and turns them into typed events. Never raises for content.

    ``max_event_bytes``: an event whose JSON is larger is ``event_too_large``.
    ``max_message_id_length``: a longer ``messageId`` is ``invalid_message_id``.
    """

    __slots__ = ()
    strict = True

    def event_class(self, msg: Message, raw: RawEvent) -> type[TypedEvent] | AdaptError:
        kind = _call_type(msg.type, raw.source)
        if isinstance(kind, AdaptError):
            return kind
        user_id = msg.userId
        if not user_id and not msg.anonymousId:
            return _missing("userId is required: send userId or anonymousId")
        required = _REQUIRED.get(kind)
        if required is not None:
            if not getattr(msg, required[0]):
                return _missing(required[1])
            if kind == "alias" and not user_id:
                return _missing("userId is required for alias: send the new id as userId")
        return EVENT_CLASSES[kind]


def _call_type(kind: str | None, source: str) -> str | AdaptError:
    """The call type from the event's ``type`` and the endpoint it was sent to."""
    endpoint = source if source in EVENT_CLASSES else None  # /v1/batch and /collect name none
    if kind is None:
        if endpoint is None:
            return AdaptError(
                code=codes.INVALID_TYPE, message=f"type is missing: send type, one of {_CALLS}"
            )
        return endpoint
    if kind not in EVENT_CLASSES:
        return AdaptError(
            code=codes.INVALID_TYPE,
            message=f"type {m.show(kind)} is not a Segment call: use {_CALLS}",
        )
    if endpoint is not None and kind != endpoint:
        return AdaptError(
            code=codes.INVALID_TYPE,
            message=f"type {kind!r} was sent to /v1/{endpoint}: send it to /v1/{kind} or /v1/batch",
        )
    return kind
