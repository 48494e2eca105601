"""What the adapters of other vendors' formats (PostHog, Amplitude) share.

Each of them decodes an event of its own shape into a small :mod:`msgspec` struct, then builds
the :class:`~eventkit_validators.core.Message` the shared core expects (Segment's names). These
helpers do the small conversions (ids, timestamps, JSON objects) and name the source in every
error, so a dead letter says which format it came in.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar, Final

import msgspec
from eventkit_core import AdaptError, AdaptResult, EventkitError, RawEvent, parse_timestamp

from eventkit_validators import codes
from eventkit_validators.core import AdapterCore, Message
from eventkit_validators.validators import json_type_name

_ANY: Final = msgspec.json.Decoder()
_ENCODER: Final = msgspec.json.Encoder()
_EMPTY: Final = msgspec.Raw()
_BRACE: Final = ord("{")


class Invalid(EventkitError, ValueError):
    """A field a vendor adapter cannot map; becomes the event's :class:`AdaptError`.

    Under eventkit's one error root, like every library error (it never leaves the adapter).
    """

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message, code=code)


def text_id(value: Any, field: str) -> str | None:
    """An id as text: strings as they are, numbers stringified, empty and null as ``None``."""
    if value is None or isinstance(value, str):
        return value or None
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)
    raise Invalid(
        codes.WRONG_TYPE,
        f"{field} must be a string or a number, got {json_type_name(value)}: send it as a string",
    )


def text(value: Any, field: str) -> str | None:
    """A string field; ``None`` when absent; an error for another JSON type."""
    if value is None or isinstance(value, str):
        return value
    raise Invalid(
        codes.WRONG_TYPE,
        f"{field} must be a string, got {json_type_name(value)}: send it as a string",
    )


def timestamp(value: Any, field: str) -> Any:
    """An aware UTC datetime from ISO 8601 text or Unix seconds / milliseconds; ``None`` if absent."""
    if value is None:
        return None
    parsed = parse_timestamp(value)
    if parsed is None:
        shown = repr(value) if len(repr(value)) <= 60 else repr(value)[:57] + "..."
        raise Invalid(
            codes.INVALID_TIMESTAMP,
            f"{field} {shown} is not a timestamp: send ISO 8601 or Unix milliseconds",
        )
    return parsed


def obj(raw: msgspec.Raw, field: str) -> msgspec.Raw:
    """A nested JSON object kept undecoded; an empty Raw when absent or null."""
    if not raw:
        return _EMPTY
    data = bytes(raw).lstrip()
    if data[:1] == b"{":
        return raw
    if data == b"null":
        return _EMPTY
    raise Invalid(
        codes.WRONG_TYPE,
        f"{field} must be a JSON object, got {json_type_name(_ANY.decode(raw))}: "
        "send it as an object",
    )


def as_dict(raw: msgspec.Raw) -> dict[str, Any]:
    """A JSON object (already checked by :func:`obj`) as a dict; ``{}`` when absent."""
    if not raw:
        return {}
    value = _ANY.decode(raw)
    return value if isinstance(value, dict) else {}


def encode(value: dict[str, Any]) -> msgspec.Raw:
    """A dict as a Raw JSON object; an empty Raw (absent) when it is empty."""
    return msgspec.Raw(_ENCODER.encode(value)) if value else _EMPTY


class VendorAdapter(AdapterCore):
    """An :class:`AdapterCore` for another vendor's event shape.

    Subclasses implement :meth:`to_message`; :class:`Invalid` raised there, and every error of
    the shared steps, becomes an error whose message starts with :attr:`SOURCE`.
    """

    #: The format's name, at the start of every error message ("PostHog", "Amplitude").
    SOURCE: ClassVar[str] = ""
    __slots__ = ()
    strict = True

    def to_message(self, data: msgspec.Raw) -> Message:
        raise NotImplementedError

    def map_fields(self, data: msgspec.Raw) -> Message | AdaptError:
        try:
            return self.to_message(data)
        except Invalid as exc:
            return AdaptError(code=exc.code, message=exc.message)
        except msgspec.ValidationError:  # the top level is not an object
            try:
                kind = json_type_name(_ANY.decode(data))
            except (msgspec.DecodeError, RecursionError):  # pragma: no cover - checked at the edge
                kind = "invalid JSON"
            return AdaptError(
                code=codes.NOT_AN_OBJECT,
                message=f"event must be a JSON object, got {kind}: send one object per event",
            )
        except (msgspec.DecodeError, RecursionError) as exc:
            return AdaptError(code=codes.INVALID_JSON, message=f"event is not valid JSON ({exc})")

    def _named(self, result: AdaptResult) -> AdaptResult:
        error = result.error
        if error is None or error.message.startswith(self.SOURCE):
            return result
        return AdaptResult(
            error=AdaptError(code=error.code, message=f"{self.SOURCE} event: {error.message}")
        )

    def adapt(self, raw: RawEvent) -> AdaptResult:
        return self._named(super().adapt(raw))

    def adapt_many(self, raws: Sequence[RawEvent]) -> list[AdaptResult]:
        named = self._named
        return [named(result) for result in super().adapt_many(raws)]


def missing(source: str, message: str) -> AdaptError:
    return AdaptError(code=codes.MISSING_FIELD, message=f"{source} event: {message}")
