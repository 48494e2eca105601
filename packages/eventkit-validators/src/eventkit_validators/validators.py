"""Composable field checks over a decoded JSON object, and a fail-fast pipeline of them.

Fields are named by dotted paths (``"properties.plan"``), split once at construction. A key whose
value is ``null`` counts as absent everywhere: required fields reject it, type and timestamp
checks skip it (combine with :class:`RequiredFieldsValidator` to forbid it).
"""

from __future__ import annotations

import types
import typing
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Protocol, runtime_checkable

import msgspec
from eventkit_core import ConfigurationError, parse_timestamp

from eventkit_validators import codes

__all__ = [
    "RequiredFieldsValidator",
    "TimestampValidator",
    "TypeCheckValidator",
    "ValidationFailure",
    "ValidationPipeline",
    "Validator",
    "json_type_name",
    "lookup",
]

_TS_HINT = "send ISO 8601 (2024-01-31T12:00:00Z) or Unix seconds or milliseconds"


class ValidationFailure(msgspec.Struct, frozen=True, kw_only=True):
    """Why a payload failed a check: a stable ``code``, a ``message`` for people, the ``field``."""

    code: str
    message: str
    field: str | None = None

    def __str__(self) -> str:
        return self.message


@runtime_checkable
class Validator(Protocol):
    """One check over a decoded JSON object: ``None`` when it passes."""

    def validate(self, payload: Mapping[str, Any]) -> ValidationFailure | None: ...


_MISSING: Any = object()


def _split(path: str) -> tuple[str, ...]:
    if not isinstance(path, str) or not path or any(not part for part in path.split(".")):
        raise ConfigurationError(
            f"field path {path!r} is invalid: use key names joined by dots, e.g. 'properties.plan'"
        )
    return tuple(path.split("."))


def _get(payload: Any, parts: tuple[str, ...]) -> Any:
    value = payload
    for part in parts:
        if not isinstance(value, Mapping):
            return _MISSING
        value = value.get(part, _MISSING)
        if value is _MISSING:
            return _MISSING
    return value


def lookup(payload: Mapping[str, Any], path: str, default: Any = None) -> Any:
    """The value at a dotted ``path`` in ``payload``, or ``default`` when any part is missing."""
    value = _get(payload, _split(path))
    return default if value is _MISSING else value


def json_type_name(value: object) -> str:
    """JSON name of a Python value's type: string, integer, number, boolean, object, array, null."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, str):
        return "string"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, Mapping):
        return "object"
    if isinstance(value, list | tuple):
        return "array"
    return type(value).__name__


class RequiredFieldsValidator:
    """Each field must be present and not null."""

    __slots__ = ("_paths",)

    def __init__(self, fields: Iterable[str]) -> None:
        if isinstance(fields, str):
            raise ConfigurationError(
                f"fields must be a list of names, got the string {fields!r}: write [{fields!r}]"
            )
        self._paths = tuple((name, _split(name)) for name in fields)

    def validate(self, payload: Mapping[str, Any]) -> ValidationFailure | None:
        for name, parts in self._paths:
            value = _get(payload, parts)
            if value is _MISSING or value is None:
                return ValidationFailure(
                    code=codes.MISSING_FIELD,
                    message=f"{name} is missing: send {name}"
                    + (" (null counts as missing)" if value is None else ""),
                    field=name,
                )
        return None


_TYPE_NAMES: dict[type, str] = {
    str: "string",
    int: "integer",
    float: "number",
    bool: "boolean",
    dict: "object",
    list: "array",
    type(None): "null",
}

TypeSpec = type | tuple[type, ...] | types.UnionType | Any


def _flatten(spec: Any, where: str) -> tuple[type, ...]:
    if isinstance(spec, tuple):
        return tuple(t for item in spec for t in _flatten(item, where))
    if isinstance(spec, types.UnionType) or typing.get_origin(spec) is typing.Union:
        return _flatten(typing.get_args(spec), where)
    if spec is None:
        return (type(None),)
    if isinstance(spec, type):
        return (spec,)
    origin = typing.get_origin(spec)
    if isinstance(origin, type):  # dict[str, Any] -> dict
        return (origin,)
    raise ConfigurationError(
        f"type for {where} is {spec!r}: use a type, a tuple of types or X | Y (e.g. str | int)"
    )


class TypeCheckValidator:
    """Each present field must be an instance of its type(s). ``bool`` is not an ``int`` here."""

    __slots__ = ("_checks",)

    def __init__(self, field_types: Mapping[str, TypeSpec]) -> None:
        checks = []
        for name, spec in field_types.items():
            allowed = _flatten(spec, repr(name))
            bool_ok = any(issubclass(bool, t) and t not in (int, float) for t in allowed)
            expected = " or ".join(_TYPE_NAMES.get(t, t.__name__) for t in allowed)
            checks.append((name, _split(name), allowed, bool_ok, expected))
        self._checks = tuple(checks)

    def validate(self, payload: Mapping[str, Any]) -> ValidationFailure | None:
        for name, parts, allowed, bool_ok, expected in self._checks:
            value = _get(payload, parts)
            if value is _MISSING or value is None:
                continue
            if isinstance(value, allowed) and (bool_ok or not isinstance(value, bool)):
                continue
            return ValidationFailure(
                code=codes.WRONG_TYPE,
                message=f"{name} must be {expected}, got {json_type_name(value)}: send {name} as {expected}",
                field=name,
            )
        return None


class TimestampValidator:
    """Each present field must parse by :func:`eventkit_core.parse_timestamp`.

    Accepted: ISO 8601 (``Z``, ``+00:00``, fractions; naive is UTC) and Unix seconds or
    milliseconds.
    """

    __slots__ = ("_paths",)

    def __init__(
        self, fields: Iterable[str] = ("timestamp", "originalTimestamp", "sentAt")
    ) -> None:
        if isinstance(fields, str):
            fields = (fields,)
        self._paths = tuple((name, _split(name)) for name in fields)

    def validate(self, payload: Mapping[str, Any]) -> ValidationFailure | None:
        for name, parts in self._paths:
            value = _get(payload, parts)
            if value is _MISSING or value is None:
                continue
            if parse_timestamp(value) is None:
                return ValidationFailure(
                    code=codes.INVALID_TIMESTAMP,
                    message=f"{name} {_show(value)} is not a timestamp: {_TS_HINT}",
                    field=name,
                )
        return None


def _show(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


class ValidationPipeline:
    """Runs validators in order and stops at the first failure."""

    __slots__ = ("validators",)

    def __init__(self, validators: Sequence[Validator]) -> None:
        self.validators = tuple(validators)

    def validate(self, payload: Mapping[str, Any]) -> tuple[bool, ValidationFailure | None]:
        """``(True, None)`` when every validator passes, else ``(False, first failure)``."""
        failure = self.first_failure(payload)
        return failure is None, failure

    def first_failure(self, payload: Mapping[str, Any]) -> ValidationFailure | None:
        """The first failure, or ``None`` when every validator passes."""
        if not isinstance(payload, Mapping):
            return ValidationFailure(
                code=codes.NOT_AN_OBJECT,
                message=f"payload must be a JSON object, got {json_type_name(payload)}: send an object",
            )
        for validator in self.validators:
            failure = validator.validate(payload)
            if failure is not None:
                return failure
        return None
