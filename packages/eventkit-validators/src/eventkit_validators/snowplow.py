"""Snowplow's tracker protocol (tp2) -> eventkit's typed events.

Snowplow trackers (snowplow-tracker for Python, the JavaScript browser tracker, ...) send events
as flat maps of short parameter names, in the ``data`` array of a ``payload_data`` body (``POST
/com.snowplowanalytics.snowplow/tp2``) or as the query parameters of a pixel (``GET /i``). Each
such map is one event; :class:`SnowplowAdapter` maps it onto Segment's names and keeps the rest.

=====================  ==========================================================================
tp2 parameter          where it goes
=====================  ==========================================================================
``e=pv``               a **page** (stream ``pages``); ``name`` = the page title; properties
                       ``url``, ``title``, ``referrer``, ``path``, ``search``
``e=se``               a **track** named by ``se_ac``; properties ``category`` (``se_ca``),
                       ``label`` (``se_la``), ``property`` (``se_pr``), ``value`` (``se_va``, a
                       number)
``e=ue``               a **track** named by the self-describing event's schema name
                       (``iglu:com.acme/checkout/jsonschema/1-0-0`` -> ``checkout``); properties
                       = the event's ``data``; its full schema URI in
                       ``context.snowplow.event_schema``. From ``ue_px`` (base64url) or ``ue_pr``
                       (JSON)
``e=pp``               a **track** ``"Page Ping"``; properties ``min_x``, ``max_x``, ``min_y``,
                       ``max_y`` (``pp_mix``, ``pp_max``, ``pp_miy``, ``pp_may``)
``e=tr`` / ``e=ti``    a **track** ``"Transaction"`` / ``"Transaction Item"``; properties from
                       ``tr_*`` / ``ti_*`` (see :data:`TRANSACTION` and :data:`TRANSACTION_ITEM`)
``eid``                ``messageId``
``uid``                ``userId``
``duid``, ``nuid``,    ``anonymousId``: ``duid``, else ``nuid``, else ``tnuid`` (all three are also
``tnuid``              kept: ``context.snowplow.domain_userid``, ``network_userid``,
                       ``tracker_network_userid``)
``dtm``                ``originalTimestamp`` (milliseconds since the epoch)
``stm``                ``sentAt`` (clock-skew correction, as for Segment's ``sentAt``)
``ttm``                the "true timestamp" a caller sets explicitly: when present it is the
                       ``originalTimestamp`` and no skew correction applies (Snowplow's
                       ``derived_tstamp`` rule); ``dtm`` / ``stm`` stay in ``context.snowplow``
``url``, ``page``,     ``context.page.url``, ``.title``, ``.referrer`` (and ``.path``, ``.search``
``refr``               from the URL)
``ua``, ``ip``         ``context.userAgent``, ``context.ip`` (else filled from the request)
``lang``, ``tz``       ``context.locale``, ``context.timezone``
``tv``                 ``context.library`` = ``{"name": "snowplow", "version": tv}``
``cx`` / ``co``        the context entities, ``context.snowplow.contexts`` (a list of
                       ``{"schema", "data"}``), from ``cx`` (base64url) or ``co`` (JSON)
other known fields     ``context.snowplow`` under Snowplow's canonical (atomic event) names:
                       ``aid`` -> ``app_id``, ``p`` -> ``platform``, ``tna`` -> ``name_tracker``,
                       ``sid`` -> ``domain_sessionid``, ``vid`` -> ``domain_sessionidx``,
                       ``res`` -> ``screen_resolution``, ``vp`` -> ``viewport_size``, ``ds`` ->
                       ``document_size``, ... (:data:`KEPT`)
anything else          ``context.snowplow.params``, under its own name
=====================  ==========================================================================

The whole original map is the event's ``payload``. An event without any id is accepted (Snowplow's
server-side trackers often send none); ``userId`` and ``anonymousId`` are then empty. What cannot
be mapped -- no ``e`` or an unknown one, an ``se`` without ``se_ac``, a ``ue`` without a schema,
undecodable ``cx`` / ``ue_px``, a timestamp that is not milliseconds -- is an error whose message
starts with ``snowplow:``, ready for the dead letters.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any, Final
from urllib.parse import urlsplit

import msgspec
from eventkit_core import EVENT_CLASSES, AdaptError, EventkitError, RawEvent, TypedEvent

from eventkit_validators import codes
from eventkit_validators.core import AdapterCore, Message
from eventkit_validators.validators import json_type_name

#: The schema of a tp2 POST body (``{"schema": PAYLOAD_DATA_SCHEMA, "data": [events]}``).
PAYLOAD_DATA_SCHEMA: Final = "iglu:com.snowplowanalytics.snowplow/payload_data/jsonschema/1-0-4"

#: tp2 ``e`` -> the call type the event becomes (its stream follows from it, as for Segment).
EVENT_TYPES: Final[dict[str, str]] = {
    "pv": "page",
    "se": "track",
    "ue": "track",
    "pp": "track",
    "tr": "track",
    "ti": "track",
}

#: Known tp2 fields without a Segment home -> their name in ``context.snowplow``.
KEPT: Final[dict[str, str]] = {
    "aid": "app_id",
    "p": "platform",
    "tna": "name_tracker",
    "tv": "v_tracker",
    "duid": "domain_userid",
    "nuid": "network_userid",
    "tnuid": "tracker_network_userid",
    "sid": "domain_sessionid",
    "vid": "domain_sessionidx",
    "res": "screen_resolution",
    "vp": "viewport_size",
    "ds": "document_size",
    "cd": "color_depth",
    "cs": "doc_charset",
    "cookie": "br_cookies",
    "fp": "user_fingerprint",
    "mac": "mac_address",
    "dtm": "dvce_created_tstamp",
    "stm": "dvce_sent_tstamp",
    "ttm": "true_tstamp",
}

#: ``e=tr`` fields -> the ``"Transaction"`` track's properties.
TRANSACTION: Final[dict[str, str]] = {
    "tr_id": "order_id",
    "tr_af": "affiliation",
    "tr_tt": "total",
    "tr_tx": "tax",
    "tr_sh": "shipping",
    "tr_ci": "city",
    "tr_st": "state",
    "tr_co": "country",
    "tr_cu": "currency",
}
#: ``e=ti`` fields -> the ``"Transaction Item"`` track's properties.
TRANSACTION_ITEM: Final[dict[str, str]] = {
    "ti_id": "order_id",
    "ti_sk": "sku",
    "ti_nm": "name",
    "ti_ca": "category",
    "ti_pr": "price",
    "ti_qu": "quantity",
    "ti_cu": "currency",
}
_NUMBERS: Final = frozenset({"tr_tt", "tr_tx", "tr_sh", "ti_pr", "ti_qu"})
_PAGE_PING: Final = {"pp_mix": "min_x", "pp_max": "max_x", "pp_miy": "min_y", "pp_may": "max_y"}

#: Fields read by the mapping itself (never copied to ``context.snowplow.params``).
_MAPPED: Final = frozenset(
    {"e", "eid", "uid", "url", "page", "refr", "ua", "ip", "lang", "tz"}
    | {"cx", "co", "ue_px", "ue_pr", "se_ca", "se_ac", "se_la", "se_pr", "se_va"}
    | set(_PAGE_PING)
    | set(TRANSACTION)
    | set(TRANSACTION_ITEM)
    | set(KEPT)
)
_TYPES_HINT: Final = "send one of " + ", ".join(EVENT_TYPES)
_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
_ANY: Final = msgspec.json.Decoder()
_ENCODE: Final = msgspec.json.Encoder().encode
_B64_STANDARD: Final = bytes.maketrans(b"+/", b"-_")


def call_type(e: object) -> str | None:
    """The call type of a tp2 event type (``"pv"`` -> ``"page"``); ``None`` when not mapped."""
    return EVENT_TYPES.get(e) if isinstance(e, str) else None


class _Bad(EventkitError, ValueError):
    """An event that cannot be mapped; caught in :meth:`SnowplowAdapter.map_fields`."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message, code=code)
        self.error = AdaptError(code=code, message="snowplow: " + message)


def _text(event: dict[str, Any], name: str) -> str | None:
    """A field as text (trackers send strings; numbers are accepted); ``None`` when absent."""
    value = event.get(name)
    if value is None or value == "":
        return None
    if isinstance(value, str):
        return value
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)
    raise _Bad(codes.WRONG_TYPE, f"{name} must be a string, got {json_type_name(value)}")


def _number(event: dict[str, Any], name: str) -> float | int | None:
    text = _text(event, name)
    if text is None:
        return None
    try:
        return int(text)
    except ValueError:
        pass
    try:
        value = float(text)
    except ValueError:
        raise _Bad(codes.WRONG_TYPE, f"{name} {text[:40]!r} is not a number") from None
    if value != value or value in (float("inf"), float("-inf")):
        raise _Bad(codes.WRONG_TYPE, f"{name} {text[:40]!r} is not a finite number")
    return value


def _millis(event: dict[str, Any], name: str) -> datetime | None:
    text = _text(event, name)
    if text is None:
        return None
    try:
        return _EPOCH + timedelta(milliseconds=int(text))
    except (ValueError, OverflowError):
        raise _Bad(
            codes.INVALID_TIMESTAMP,
            f"{name} {text[:40]!r} is not a timestamp: send milliseconds since the epoch",
        ) from None


def _json_field(event: dict[str, Any], encoded: str, plain: str) -> Any:
    """The JSON of a field sent base64url-encoded (``encoded``) or as JSON text (``plain``)."""
    b64 = _text(event, encoded)
    if b64 is not None:
        try:
            data = b64.encode("ascii").translate(_B64_STANDARD)
            data = base64.urlsafe_b64decode(data + b"=" * (-len(data) % 4))
            return _ANY.decode(data)
        except (
            UnicodeEncodeError,
            binascii.Error,
            ValueError,
            msgspec.DecodeError,
            RecursionError,
        ):
            raise _Bad(codes.INVALID_JSON, f"{encoded} is not base64url-encoded JSON") from None
    text = _text(event, plain)
    if text is None:
        return None
    try:
        return _ANY.decode(text)
    except (msgspec.DecodeError, RecursionError):
        raise _Bad(codes.INVALID_JSON, f"{plain} is not JSON") from None


def _schema_name(schema: str) -> str:
    """``iglu:vendor/name/format/version`` -> ``name`` (any other text stays as it is)."""
    parts = schema.removeprefix("iglu:").split("/")
    return parts[1] if len(parts) == 4 and parts[1] else schema


def _self_describing(event: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """``(schema, data)`` of an ``e=ue`` event's self-describing JSON."""
    value = _json_field(event, "ue_px", "ue_pr")
    if value is None:
        raise _Bad(codes.MISSING_FIELD, "ue_px or ue_pr is required for e=ue: send the event")
    # The unstruct_event envelope wraps the event itself: {"schema": ..., "data": {event}}.
    if isinstance(value, dict) and "/unstruct_event/" in str(value.get("schema", "")):
        value = value.get("data")
    if not isinstance(value, dict):
        raise _Bad(codes.WRONG_TYPE, "the self-describing event must be a JSON object")
    schema, data = value.get("schema"), value.get("data", {})
    if not isinstance(schema, str) or not schema:
        raise _Bad(codes.MISSING_FIELD, "the self-describing event has no schema: send its URI")
    if not isinstance(data, dict):
        raise _Bad(codes.WRONG_TYPE, f"the data of {schema} must be a JSON object")
    return schema, data


def _contexts(event: dict[str, Any]) -> list[Any] | None:
    value = _json_field(event, "cx", "co")
    if value is None:
        return None
    entities = value.get("data") if isinstance(value, dict) else value
    if not isinstance(entities, list):
        raise _Bad(codes.WRONG_TYPE, "the contexts (cx / co) must hold an array of entities")
    return entities


def _present(pairs: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in pairs.items() if v is not None}


def _page(event: dict[str, Any]) -> dict[str, Any]:
    url = _text(event, "url")
    page: dict[str, Any] = {"url": url, "title": _text(event, "page")}
    page["referrer"] = _text(event, "refr")
    if url is not None:
        parts = urlsplit(url)
        page["path"] = parts.path or None
        page["search"] = "?" + parts.query if parts.query else None
    return _present(page)


def _renamed(event: dict[str, Any], names: dict[str, str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for field, name in names.items():
        value = _number(event, field) if field in _NUMBERS else _text(event, field)
        if value is not None:
            out[name] = value
    return out


def _struct(event: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    action = _text(event, "se_ac")
    if action is None:
        raise _Bad(codes.MISSING_FIELD, "se_ac is required for e=se: send the action")
    props: dict[str, Any] = {"category": _text(event, "se_ca"), "label": _text(event, "se_la")}
    props["property"] = _text(event, "se_pr")
    props["value"] = _number(event, "se_va")
    return action, _present(props)


def _page_ping(event: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    return "Page Ping", _present({name: _number(event, f) for f, name in _PAGE_PING.items()})


def _page_view(event: dict[str, Any]) -> tuple[str | None, dict[str, Any]]:
    return _text(event, "page"), _page(event)


#: tp2 ``e`` -> ``(event or page name, properties)`` of the event (``ue`` is handled apart).
_BODIES: Final[dict[str, Callable[[dict[str, Any]], tuple[str | None, dict[str, Any]]]]] = {
    "pv": _page_view,
    "se": _struct,
    "pp": _page_ping,
    "tr": lambda event: ("Transaction", _renamed(event, TRANSACTION)),
    "ti": lambda event: ("Transaction Item", _renamed(event, TRANSACTION_ITEM)),
}


def _snowplow_context(event: dict[str, Any]) -> dict[str, Any]:
    kept: dict[str, Any] = {}
    for field, name in KEPT.items():
        value = event.get(field)
        if value is not None and value != "":
            kept[name] = value
    params = {k: v for k, v in event.items() if k not in _MAPPED}
    if params:
        kept["params"] = params
    contexts = _contexts(event)
    if contexts is not None:
        kept["contexts"] = contexts
    return kept


def _context(event: dict[str, Any], snowplow: dict[str, Any]) -> dict[str, Any]:
    context: dict[str, Any] = {}
    page = _page(event)
    if page:
        context["page"] = page
    for field, name in (("ua", "userAgent"), ("ip", "ip"), ("lang", "locale"), ("tz", "timezone")):
        value = _text(event, field)
        if value is not None:
            context[name] = value
    version = _text(event, "tv")
    if version is not None:
        context["library"] = {"name": "snowplow", "version": version}
    context["snowplow"] = snowplow
    return context


def _ids(event: dict[str, Any]) -> tuple[str | None, str | None, str | None]:
    """``(messageId, userId, anonymousId)``."""
    anonymous = _text(event, "duid") or _text(event, "nuid") or _text(event, "tnuid")
    return _text(event, "eid"), _text(event, "uid"), anonymous


def _times(event: dict[str, Any]) -> tuple[datetime | None, datetime | None]:
    """``(originalTimestamp, sentAt)``; a true timestamp (``ttm``) is taken as it is."""
    created, sent, true = _millis(event, "dtm"), _millis(event, "stm"), _millis(event, "ttm")
    if true is not None:
        return true, None
    return created, sent


def _raw(value: dict[str, Any]) -> msgspec.Raw:
    return msgspec.Raw(_ENCODE(value))


def map_event(event: dict[str, Any]) -> Message:
    """One tp2 event (a decoded map) as a :class:`Message`; raises ``_Bad`` when unmappable."""
    e = _text(event, "e")
    if e is None:
        raise _Bad(codes.MISSING_FIELD, f"e (the event type) is missing: {_TYPES_HINT}")
    kind = EVENT_TYPES.get(e)
    if kind is None:
        raise _Bad(codes.INVALID_TYPE, f"event type e={e[:40]!r} is not mapped: {_TYPES_HINT}")
    snowplow = _snowplow_context(event)
    if e == "ue":
        schema, properties = _self_describing(event)
        name: str | None = _schema_name(schema)
        snowplow["event_schema"] = schema
    else:
        name, properties = _BODIES[e](event)
    message_id, user_id, anonymous_id = _ids(event)
    original, sent_at = _times(event)
    msg = Message(
        type=kind,
        messageId=message_id,
        userId=user_id,
        anonymousId=anonymous_id,
        originalTimestamp=original,
        sentAt=sent_at,
        properties=_raw(properties),
        context=_raw(_context(event, snowplow)),
    )
    if kind == "page":
        msg.name = name
    else:
        msg.event = name
    return msg


class SnowplowAdapter(AdapterCore):
    """Maps Snowplow tp2 events (one parameter map each) onto typed events; never raises.

    See the module's table for where each parameter goes. ``max_event_bytes`` and
    ``max_message_id_length`` as for every adapter.
    """

    __slots__ = ()
    strict = True

    def map_fields(self, data: msgspec.Raw) -> Message | AdaptError:
        try:
            event = _ANY.decode(data)
        except (msgspec.DecodeError, RecursionError):
            return AdaptError(code=codes.INVALID_JSON, message="snowplow: the event is not JSON")
        if not isinstance(event, dict):
            return AdaptError(
                code=codes.NOT_AN_OBJECT,
                message=f"snowplow: an event must be a JSON object of tp2 parameters, "
                f"got {json_type_name(event)}",
            )
        try:
            return map_event(event)
        except _Bad as bad:
            return bad.error

    def event_class(self, msg: Message, raw: RawEvent) -> type[TypedEvent] | AdaptError:
        return EVENT_CLASSES[msg.type or "track"]
