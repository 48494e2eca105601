"""Per-stream validation rules (a TOML rules file), applied on top of a schema adapter.

```toml
[streams.events]
required = ["userId", "properties.plan"]
types = { "properties.price" = "number", userId = "string" }

[streams."*"]            # applies to every stream
required = ["anonymousId"]
```
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping, Sequence
from typing import Any, Final

import msgspec
from eventkit_core import (
    STREAM_RULE,
    AdaptError,
    AdaptResult,
    ConfigurationError,
    RawEvent,
    SchemaAdapter,
    is_valid_stream,
)

from eventkit_validators import codes
from eventkit_validators.validators import (
    RequiredFieldsValidator,
    TimestampValidator,
    TypeCheckValidator,
    ValidationFailure,
    Validator,
)

__all__ = ["ALL_STREAMS", "RULE_TYPES", "RuleSet", "RulesAdapter", "load_rules", "parse_rules"]

#: The stream name whose rules apply to every stream.
ALL_STREAMS: Final = "*"

#: Type names a rules file may use, and the Python types they check.
RULE_TYPES: Final[Mapping[str, type | tuple[type, ...] | None]] = {
    "string": str,
    "number": (int, float),
    "integer": int,
    "boolean": bool,
    "object": dict,
    "array": list,
    "timestamp": None,  # parsed by eventkit_core.parse_timestamp
}

_KEYS: Final = ("required", "types")

Rule = tuple[str, Validator]


class RuleSet:
    """Named validators per stream; those of ``"*"`` run first, for every stream.

    ``streams`` maps a stream name (or ``"*"``) to validators; each validator is one rule, named
    in failure messages by its label (the key in a mapping, else its class name).
    """

    __slots__ = ("_cache", "_rules", "source")

    def __init__(
        self,
        streams: Mapping[str, Sequence[Validator] | Mapping[str, Validator]] | None = None,
        *,
        source: str = "<rules>",
    ) -> None:
        self.source = source
        self._rules: dict[str, tuple[Rule, ...]] = {}
        for stream, validators in (streams or {}).items():
            if stream != ALL_STREAMS and not is_valid_stream(stream):
                raise ConfigurationError(
                    f"{source}: stream {stream!r} is invalid: {STREAM_RULE}, or '*' for all"
                )
            if isinstance(validators, Mapping):
                rules = tuple(validators.items())
            else:
                rules = tuple((type(v).__name__, v) for v in validators)
            self._rules[stream] = rules
        self._cache: dict[str, tuple[Rule, ...]] = {}

    @property
    def streams(self) -> tuple[str, ...]:
        """Streams that have rules (``"*"`` included when set)."""
        return tuple(self._rules)

    def rules_for(self, stream: str) -> tuple[Rule, ...]:
        """``(label, validator)`` pairs that apply to ``stream``, ``"*"`` rules first."""
        rules = self._cache.get(stream)
        if rules is None:
            rules = self._rules.get(ALL_STREAMS, ()) + self._rules.get(stream, ())
            if len(self._cache) < 1024:  # stream names come from clients: bound the cache
                self._cache[stream] = rules
        return rules

    def check(self, stream: str, payload: Mapping[str, Any]) -> AdaptError | None:
        """``None`` when ``payload`` passes every rule of ``stream``, else a ``rule_failed`` error."""
        for label, validator in self.rules_for(stream):
            failure = validator.validate(payload)
            if failure is not None:
                return rule_failed(stream, label, failure)
        return None

    def __repr__(self) -> str:
        return f"RuleSet(source={self.source!r}, streams={list(self._rules)!r})"


def rule_failed(stream: str, label: str, failure: ValidationFailure) -> AdaptError:
    return AdaptError(
        code=codes.RULE_FAILED,
        message=f"stream {stream!r} rule {label} failed: {failure.message}",
    )


def load_rules(path: str | os.PathLike[str]) -> RuleSet:
    """Read a TOML rules file. Raises :class:`~eventkit_core.ConfigurationError` naming the
    file, stream and key of anything wrong."""
    source = os.fspath(path)
    try:
        with open(source, "rb") as f:
            data = f.read()
    except OSError as exc:
        raise ConfigurationError(
            f"rules file {source!r} cannot be read ({exc.strerror or exc}): check the path"
        ) from exc
    return parse_rules(data.decode("utf-8", "replace"), source=source)


def parse_rules(text: str, *, source: str = "<rules>") -> RuleSet:
    """Parse rules from TOML text (``source`` names it in error messages)."""
    where = f"rules file {source!r}"
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigurationError(f"{where} is not valid TOML: {exc}") from exc
    unknown = sorted(set(doc) - {"streams"})
    if unknown:
        raise ConfigurationError(
            f"{where}: unknown top-level key {unknown[0]!r}: put rules under [streams.<name>]"
        )
    streams = doc.get("streams", {})
    if not isinstance(streams, dict):
        raise ConfigurationError(f"{where}: 'streams' must be a table: write [streams.<name>]")
    compiled: dict[str, dict[str, Validator]] = {}
    for stream, table in streams.items():
        at = f"{where}, stream {stream!r}"
        if stream != ALL_STREAMS and not is_valid_stream(stream):
            raise ConfigurationError(f"{at}: the name is invalid: {STREAM_RULE}, or '*' for all")
        if not isinstance(table, dict):
            raise ConfigurationError(f"{at}: must be a table: write [streams.{stream}]")
        compiled[stream] = _compile(table, at)
    return RuleSet(compiled, source=source)


def _compile(table: dict[str, Any], at: str) -> dict[str, Validator]:
    rules: dict[str, Validator] = {}
    for key in table:
        if key not in _KEYS:
            raise ConfigurationError(f"{at}: unknown key {key!r}: use {' or '.join(_KEYS)}")
    required = table.get("required", [])
    if not isinstance(required, list) or not all(isinstance(f, str) for f in required):
        raise ConfigurationError(f"{at}, key 'required': must be a list of field names")
    for field in required:
        rules[f"required {field}"] = _build(at, "required", RequiredFieldsValidator, [field])
    types = table.get("types", {})
    if not isinstance(types, dict):
        raise ConfigurationError(f"{at}, key 'types': must be a table of field = type name")
    for field, type_name in types.items():
        if not isinstance(type_name, str) or type_name not in RULE_TYPES:
            raise ConfigurationError(
                f"{at}, key 'types.{field}': type {type_name!r} is unknown: "
                f"use one of {', '.join(RULE_TYPES)}"
            )
        python_type = RULE_TYPES[type_name]
        label = f"types {field} = {type_name}"
        if python_type is None:
            rules[label] = _build(at, f"types.{field}", TimestampValidator, [field])
        else:
            rules[label] = _build(at, f"types.{field}", TypeCheckValidator, {field: python_type})
    return rules


def _build(at: str, key: str, cls: Any, arg: Any) -> Validator:
    try:
        validator: Validator = cls(arg)
    except ConfigurationError as exc:
        raise ConfigurationError(f"{at}, key {key!r}: {exc}") from exc
    return validator


_DECODER: Final = msgspec.json.Decoder()


class RulesAdapter:
    """Adapts with ``base``, then checks the stream's rules against the original payload."""

    __slots__ = ("base", "rules")

    def __init__(self, base: SchemaAdapter, rules: RuleSet) -> None:
        self.base = base
        self.rules = rules

    def adapt(self, raw: RawEvent) -> AdaptResult:
        result = self.base.adapt(raw)
        event = result.event
        if event is None or result.error is not None:
            return result
        rules = self.rules.rules_for(event.stream)
        if not rules:
            return result
        try:
            payload = _DECODER.decode(event.payload)
        except (msgspec.DecodeError, RecursionError):  # the base adapter decoded it already
            payload = None
        if not isinstance(payload, dict):
            return result
        for label, validator in rules:
            failure = validator.validate(payload)
            if failure is not None:
                return AdaptResult(error=rule_failed(event.stream, label, failure))
        return result

    def adapt_many(self, raws: Sequence[RawEvent]) -> list[AdaptResult]:
        """:meth:`adapt` for each event, in order."""
        adapt = self.adapt
        return [adapt(raw) for raw in raws]
