"""Amplitude events (HTTP V2 API, Batch API; the amplitude-analytics clients) -> typed events.

A request is ``{"api_key", "events": [...], "options"}``; one event is
``{"event_type", "user_id", "device_id", "time", "insert_id", "event_properties",
"user_properties", ...}``. The mapping:

=========================================  ======================================================
Amplitude                                  eventkit (Segment's names)
=========================================  ======================================================
``event_type`` ``$identify``               ``identify``
``event_type`` ``$groupidentify``          ``group``; ``groupId`` = the first value of
                                           ``groups``, ``traits`` from ``group_properties``
any other ``event_type``                   ``track``; ``event`` = the ``event_type``
                                           (``revenue_amount`` from ``revenue()`` included)
``insert_id``                              ``messageId``
``user_id``                                ``userId``
``device_id``                              ``anonymousId``
``time`` (Unix milliseconds)               ``originalTimestamp``
``event_properties``                       ``properties``; the top-level revenue fields
                                           (``revenue``, ``price``, ``quantity``, ``productId``,
                                           ``revenueType``, ``currency``) are added when present
``user_properties``                        ``traits``: ``$setOnce`` then ``$set`` applied (``$set``
                                           wins); properties without an operation are set as they
                                           are. The other operations (``$add``, ``$unset``,
                                           ``$append``, ``$prepend``, ``$preInsert``,
                                           ``$postInsert``, ``$remove``, ``$clearAll``) are not
                                           applied: they stay in the stored event (``payload``)
``library``                                ``context.library`` (``"amplitude-python/1.3.0"`` ->
                                           name and version)
``platform``, ``os_name``, ``os_version``  ``context.os`` / ``context.device`` / ``context.app``
``device_*``, ``app_version``, ``ip``,     ``.ip``, ``.locale``, ``.location``
``language``, ``country``, ``city``,
``region``, ``location_lat/lng``
=========================================  ======================================================

The whole event is kept in ``payload``. An event without ``event_type``, or with neither
``user_id`` nor ``device_id``, or with a field of the wrong type is a dead letter whose reason
starts with "Amplitude event".
"""

from __future__ import annotations

from typing import Any, Final

import msgspec
from eventkit_core import AdaptError, GroupEvent, IdentifyEvent, RawEvent, TrackEvent, TypedEvent

from eventkit_validators import _vendor as v
from eventkit_validators.core import Message

SOURCE: Final = "Amplitude"

#: Amplitude's event type -> the Segment call it becomes (any other type is a track).
CALLS: Final[dict[str, str]] = {"$identify": "identify", "$groupidentify": "group"}
_CLASSES: Final[dict[str, type[TypedEvent]]] = {
    "identify": IdentifyEvent,
    "group": GroupEvent,
    "track": TrackEvent,
}
#: User-property operations that set values (applied to traits, in this order).
APPLIED: Final = ("$setOnce", "$set")
REVENUE_FIELDS: Final = ("revenue", "price", "quantity", "productId", "revenueType", "currency")


class _Event(msgspec.Struct):
    event_type: Any = None
    user_id: Any = None
    device_id: Any = None
    time: Any = None
    insert_id: Any = None
    event_properties: msgspec.Raw = msgspec.field(default_factory=msgspec.Raw)
    user_properties: msgspec.Raw = msgspec.field(default_factory=msgspec.Raw)
    groups: msgspec.Raw = msgspec.field(default_factory=msgspec.Raw)
    group_properties: msgspec.Raw = msgspec.field(default_factory=msgspec.Raw)
    library: Any = None
    platform: Any = None
    os_name: Any = None
    os_version: Any = None
    device_brand: Any = None
    device_manufacturer: Any = None
    device_model: Any = None
    app_version: Any = None
    ip: Any = None
    language: Any = None
    country: Any = None
    region: Any = None
    city: Any = None
    location_lat: Any = None
    location_lng: Any = None
    revenue: Any = None
    price: Any = None
    quantity: Any = None
    productId: Any = None
    revenueType: Any = None
    currency: Any = None


class _Peek(msgspec.Struct):
    event_type: Any = None
    insert_id: Any = None
    user_id: Any = None
    device_id: Any = None


_EVENT: Final = msgspec.json.Decoder(_Event)
_PEEK: Final = msgspec.json.Decoder(_Peek)


def peek(item: bytes) -> tuple[str | None, str | None, str | None]:
    """``(call type, message id, routing key)`` of an event, from one cheap decode.

    The call type is the Segment call the event becomes (its stream follows); the message id is
    its ``insert_id``; the routing key ``user_id``, else ``device_id``. ``None`` where the event does not say
    (an unreadable event is dead-lettered by the adapter).
    """
    try:
        p = _PEEK.decode(item)
    except (msgspec.DecodeError, RecursionError):
        return None, None, None
    name = p.event_type
    kind = CALLS.get(name, "track") if isinstance(name, str) else None
    mid = p.insert_id
    return (
        kind,
        mid if isinstance(mid, str) and mid else None,
        _text(p.user_id) or _text(p.device_id),
    )


def _text(value: Any) -> str | None:
    if isinstance(value, str):
        return value or None
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)
    return None


def user_traits(user_properties: dict[str, Any]) -> dict[str, Any]:
    """The traits of ``user_properties``: ``$setOnce`` then ``$set`` applied, plain keys set."""
    traits: dict[str, Any] = {}
    for key, value in user_properties.items():
        if not key.startswith("$"):
            traits[key] = value
    for op in APPLIED:
        values = user_properties.get(op)
        if isinstance(values, dict):
            traits.update(values)
    return traits


def _properties(event: _Event) -> msgspec.Raw:
    properties = v.obj(event.event_properties, "event_properties")
    extra = {f: getattr(event, f) for f in REVENUE_FIELDS if getattr(event, f) is not None}
    if not extra:
        return properties
    merged = extra
    merged.update(v.as_dict(properties))  # the event's own properties win
    return v.encode(merged)


def _library(value: Any) -> dict[str, str] | None:
    name = v.text(value, "library")
    if not name:
        return None
    lib, _, version = name.partition("/")
    return {"name": lib, "version": version} if version else {"name": lib}


def _put(out: dict[str, Any], section: str, key: str, value: Any) -> None:
    if value is not None:
        out.setdefault(section, {})[key] = value


def _context(e: _Event) -> msgspec.Raw:
    out: dict[str, Any] = {}
    library = _library(e.library)
    if library is not None:
        out["library"] = library
    _put(out, "os", "name", e.os_name)
    _put(out, "os", "version", e.os_version)
    _put(out, "device", "manufacturer", e.device_manufacturer or e.device_brand)
    _put(out, "device", "model", e.device_model)
    _put(out, "app", "version", e.app_version)
    _put(out, "location", "country", e.country)
    _put(out, "location", "region", e.region)
    _put(out, "location", "city", e.city)
    _put(out, "location", "latitude", e.location_lat)
    _put(out, "location", "longitude", e.location_lng)
    if isinstance(e.platform, str):
        out["platform"] = e.platform
    if isinstance(e.ip, str):
        out["ip"] = e.ip
    if isinstance(e.language, str):
        out["locale"] = e.language
    return v.encode(out)


def _group(msg: Message, event: _Event) -> None:
    groups = v.as_dict(v.obj(event.groups, "groups"))
    for value in groups.values():
        msg.groupId = v.text_id(value[0] if isinstance(value, list) and value else value, "groups")
        break
    msg.traits = v.encode(user_traits(v.as_dict(v.obj(event.group_properties, "group_properties"))))


def to_message(data: msgspec.Raw) -> Message:
    """The event's fields under Segment's names. Raises :class:`~eventkit_validators._vendor.Invalid`."""
    event = _EVENT.decode(data)
    name = v.text(event.event_type, "event_type")
    kind = CALLS.get(name, "track") if name is not None else None
    user_properties = v.obj(event.user_properties, "user_properties")
    msg = Message(
        type=kind,
        messageId=v.text_id(event.insert_id, "insert_id"),
        userId=v.text_id(event.user_id, "user_id"),
        anonymousId=v.text_id(event.device_id, "device_id"),
        originalTimestamp=v.timestamp(event.time, "time"),
        properties=_properties(event),
        traits=v.encode(user_traits(v.as_dict(user_properties))),
        context=_context(event),
    )
    if kind == "track":
        msg.event = name
    elif kind == "group":
        _group(msg, event)
    return msg


class AmplitudeAdapter(v.VendorAdapter):
    """Amplitude events -> typed events, by the table in this module's docstring."""

    SOURCE = SOURCE
    __slots__ = ()

    def to_message(self, data: msgspec.Raw) -> Message:
        return to_message(data)

    def event_class(self, msg: Message, raw: RawEvent) -> type[TypedEvent] | AdaptError:
        kind = msg.type
        if kind is None:
            return v.missing(SOURCE, "event_type is missing: send the event's name as event_type")
        if not msg.userId and not msg.anonymousId:
            return v.missing(SOURCE, "user_id or device_id is required: send at least one")
        if kind == "group" and not msg.groupId:
            return v.missing(SOURCE, "$groupidentify needs groups (group type -> group name)")
        return _CLASSES[kind]
