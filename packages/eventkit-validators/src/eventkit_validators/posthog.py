"""PostHog events (the posthog Python client, posthog-js) -> eventkit's typed events.

One PostHog event is ``{"event", "distinct_id", "uuid", "timestamp", "properties", "$set",
"$set_once"}`` (posthog-js puts ``distinct_id`` inside ``properties``). The mapping:

================================================  ===============================================
PostHog                                           eventkit (Segment's names)
================================================  ===============================================
``event`` ``$identify``                           ``identify``
``event`` ``$set`` / ``$set_once`` (the Python    ``identify``
client's ``set()`` / ``set_once()``)
``event`` ``$pageview``                           ``page``; ``name`` = ``properties.title``
``event`` ``$screen``                             ``screen``; ``name`` = ``properties.$screen_name``
``event`` ``$create_alias``                       ``alias``; ``userId`` = ``properties.alias``,
                                                  ``previousId`` = ``distinct_id``
``event`` ``$groupidentify``                      ``group``; ``groupId`` = ``properties.$group_key``,
                                                  ``traits`` = ``properties.$group_set``
any other ``event``                               ``track``; ``event`` = the name
``uuid``                                          ``messageId``
``distinct_id`` (top level, else in properties)   ``userId``, or ``anonymousId`` when the event
                                                  is anonymous: ``$user_state`` is
                                                  ``"anonymous"``, ``distinct_id`` equals
                                                  ``$device_id``, or ``$process_person_profile``
                                                  is false
``properties.$anon_distinct_id``, else            ``anonymousId`` of an identified event
``properties.$device_id`` (when not the user)
``$set`` / ``$set_once`` (top level or in         ``traits`` (``$set`` wins over ``$set_once``)
properties)
``timestamp``                                     ``originalTimestamp``
body ``sent_at`` (Python client), query ``_``     ``sentAt`` of the batch (clock-skew correction)
(posthog-js)
``properties``                                    ``properties``, whole
``properties.$lib`` / ``$lib_version``            ``context.library.name`` / ``.version``
================================================  ===============================================

The whole event is kept in ``payload``. An event without ``event`` or ``distinct_id``, an alias
without ``properties.alias``, a group identify without ``$group_key``, or a field of the wrong
type is a dead letter whose reason starts with "PostHog event".
"""

from __future__ import annotations

from typing import Any, Final

import msgspec
from eventkit_core import EVENT_CLASSES, AdaptError, RawEvent, TypedEvent

from eventkit_validators import _vendor as v
from eventkit_validators.core import Message

SOURCE: Final = "PostHog"

#: PostHog's event name -> the Segment call it becomes (any other name is a track).
CALLS: Final[dict[str, str]] = {
    "$identify": "identify",
    "$set": "identify",
    "$set_once": "identify",
    "$pageview": "page",
    "$screen": "screen",
    "$create_alias": "alias",
    "$groupidentify": "group",
}


class _Event(msgspec.Struct):
    event: Any = None
    distinct_id: Any = None
    uuid: Any = None
    timestamp: Any = None
    properties: msgspec.Raw = msgspec.field(default_factory=msgspec.Raw)
    set: msgspec.Raw = msgspec.field(default_factory=msgspec.Raw, name="$set")
    set_once: msgspec.Raw = msgspec.field(default_factory=msgspec.Raw, name="$set_once")


class _Properties(msgspec.Struct):
    distinct_id: Any = None
    anon_distinct_id: Any = msgspec.field(default=None, name="$anon_distinct_id")
    device_id: Any = msgspec.field(default=None, name="$device_id")
    user_state: Any = msgspec.field(default=None, name="$user_state")
    process_person_profile: Any = msgspec.field(default=None, name="$process_person_profile")
    set: msgspec.Raw = msgspec.field(default_factory=msgspec.Raw, name="$set")
    set_once: msgspec.Raw = msgspec.field(default_factory=msgspec.Raw, name="$set_once")
    alias: Any = None
    group_key: Any = msgspec.field(default=None, name="$group_key")
    group_set: msgspec.Raw = msgspec.field(default_factory=msgspec.Raw, name="$group_set")
    screen_name: Any = msgspec.field(default=None, name="$screen_name")
    title: Any = None
    lib: Any = msgspec.field(default=None, name="$lib")
    lib_version: Any = msgspec.field(default=None, name="$lib_version")


class _PeekProperties(msgspec.Struct):
    distinct_id: Any = None


class _Peek(msgspec.Struct):
    event: Any = None
    uuid: Any = None
    distinct_id: Any = None
    # posthog-js puts distinct_id here; a non-object fails the peek (the adapter says why).
    properties: _PeekProperties | None = None


_EVENT: Final = msgspec.json.Decoder(_Event)
_PROPERTIES: Final = msgspec.json.Decoder(_Properties)
_PEEK: Final = msgspec.json.Decoder(_Peek)
_NO_PROPERTIES: Final = _Properties()


def peek(item: bytes) -> tuple[str | None, str | None, str | None]:
    """``(call type, message id, routing key)`` of an event, from one cheap decode.

    The call type is the Segment call the event becomes (its stream follows); the message id is
    its ``uuid``; the routing key ``distinct_id``. ``None`` where the event does not say
    (an unreadable event is dead-lettered by the adapter).
    """
    try:
        p = _PEEK.decode(item)
    except (msgspec.DecodeError, RecursionError):
        return None, None, None
    name = p.event
    kind = CALLS.get(name, "track") if isinstance(name, str) else None
    mid = p.uuid
    key = _text(p.distinct_id)
    if key is None and p.properties is not None:
        key = _text(p.properties.distinct_id)
    return kind, mid if isinstance(mid, str) and mid else None, key


def _text(value: Any) -> str | None:
    if isinstance(value, str):
        return value or None
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)
    return None


def _traits(event: _Event, props: _Properties) -> msgspec.Raw:
    parts = [
        v.obj(event.set_once, "$set_once"),
        v.obj(props.set_once, "properties.$set_once"),
        v.obj(event.set, "$set"),
        v.obj(props.set, "properties.$set"),
    ]
    present = [p for p in parts if p]
    if len(present) == 1:
        return present[0]
    merged: dict[str, Any] = {}
    for part in present:  # $set_once first: $set wins
        merged.update(v.as_dict(part))
    return v.encode(merged)


def _context(props: _Properties) -> msgspec.Raw:
    lib = v.text(props.lib, "properties.$lib")
    if lib is None:
        return msgspec.Raw()
    library = {"name": lib}
    version = props.lib_version
    if isinstance(version, str):
        library["version"] = version
    return v.encode({"library": library})


def _is_anonymous(distinct_id: str, device_id: str | None, props: _Properties) -> bool:
    # PostHog's own rules: posthog-js says so in $user_state; an event whose distinct_id is the
    # device id has not been identified; a personless event (Python, no distinct_id) is anonymous.
    return (
        props.user_state == "anonymous"
        or distinct_id == device_id
        or props.process_person_profile is False
    )


def _identities(msg: Message, event: _Event, props: _Properties) -> str | None:
    """Set userId / anonymousId; return the distinct_id."""
    distinct_id = v.text_id(event.distinct_id, "distinct_id") or v.text_id(
        props.distinct_id, "properties.distinct_id"
    )
    if distinct_id is None:
        return None
    device_id = v.text_id(props.device_id, "properties.$device_id")
    if _is_anonymous(distinct_id, device_id, props):
        msg.anonymousId = distinct_id
        return distinct_id
    msg.userId = distinct_id
    anon = v.text_id(props.anon_distinct_id, "properties.$anon_distinct_id")
    if anon is None and device_id != distinct_id:
        anon = device_id
    msg.anonymousId = anon
    return distinct_id


def _call_fields(msg: Message, kind: str, distinct_id: str | None, props: _Properties) -> None:
    if kind == "alias":
        msg.userId = v.text_id(props.alias, "properties.alias")
        msg.anonymousId = None
        msg.previousId = distinct_id
    elif kind == "group":
        msg.groupId = v.text_id(props.group_key, "properties.$group_key")
        msg.traits = v.obj(props.group_set, "properties.$group_set")
    elif kind == "page":
        title = props.title
        msg.name = title if isinstance(title, str) else None
    elif kind == "screen":
        msg.name = v.text(props.screen_name, "properties.$screen_name")


def to_message(data: msgspec.Raw) -> Message:
    """The event's fields under Segment's names. Raises :class:`~eventkit_validators._vendor.Invalid`."""
    event = _EVENT.decode(data)
    properties = v.obj(event.properties, "properties")
    props = _PROPERTIES.decode(properties) if properties else _NO_PROPERTIES
    name = v.text(event.event, "event")
    kind = CALLS.get(name, "track") if name is not None else None
    msg = Message(
        type=kind,
        messageId=v.text_id(event.uuid, "uuid"),
        originalTimestamp=v.timestamp(event.timestamp, "timestamp"),
        properties=properties,
        context=_context(props),
    )
    if kind == "track":
        msg.event = name
    distinct_id = _identities(msg, event, props)
    msg.traits = _traits(event, props)
    if kind is not None:
        _call_fields(msg, kind, distinct_id, props)
    return msg


class PostHogAdapter(v.VendorAdapter):
    """PostHog events -> typed events, by the table in this module's docstring."""

    SOURCE = SOURCE
    __slots__ = ()

    def to_message(self, data: msgspec.Raw) -> Message:
        return to_message(data)

    def event_class(self, msg: Message, raw: RawEvent) -> type[TypedEvent] | AdaptError:
        kind = msg.type
        if kind is None:
            return v.missing(SOURCE, "event is missing: send the event's name as event")
        if kind == "alias":
            if not msg.userId:
                return v.missing(SOURCE, "$create_alias needs properties.alias (the new id)")
            if not msg.previousId:
                return v.missing(SOURCE, "$create_alias needs distinct_id (the previous id)")
        elif not msg.userId and not msg.anonymousId:
            return v.missing(SOURCE, "distinct_id is required: send the person's distinct_id")
        if kind == "group" and not msg.groupId:
            return v.missing(SOURCE, "$groupidentify needs properties.$group_key")
        return EVENT_CLASSES[kind]
