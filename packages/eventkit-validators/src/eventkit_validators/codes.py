"""Stable error codes of validators and adapters (the ``reason_code`` of a dead letter)."""

from __future__ import annotations

from typing import Final

#: The event is not a JSON object (a bare number, an array, a string...).
NOT_AN_OBJECT: Final = "not_an_object"
#: The bytes are not JSON msgspec can decode (bad UTF-8, NaN, nesting too deep...).
INVALID_JSON: Final = "invalid_json"
#: ``type`` is missing or is not one of Segment's calls.
INVALID_TYPE: Final = "invalid_type"
#: A required field is absent or null.
MISSING_FIELD: Final = "missing_field"
#: A field has the wrong JSON type.
WRONG_TYPE: Final = "wrong_type"
#: A timestamp field cannot be parsed.
INVALID_TIMESTAMP: Final = "invalid_timestamp"
#: ``messageId`` is longer than the adapter allows (100 characters by default).
INVALID_MESSAGE_ID: Final = "invalid_message_id"
#: The event's JSON is bigger than the adapter allows (32 KB by default).
EVENT_TOO_LARGE: Final = "event_too_large"
#: A per-stream rule (rules file or :class:`~eventkit_validators.RuleSet`) failed.
RULE_FAILED: Final = "rule_failed"

ALL_CODES: Final = (
    NOT_AN_OBJECT,
    INVALID_JSON,
    INVALID_TYPE,
    MISSING_FIELD,
    WRONG_TYPE,
    INVALID_TIMESTAMP,
    INVALID_MESSAGE_ID,
    EVENT_TOO_LARGE,
    RULE_FAILED,
)
