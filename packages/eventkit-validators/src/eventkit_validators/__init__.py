"""Composable validators, ValidationPipeline and Segment schema adapters for eventkit."""

from importlib.metadata import version as _version

from eventkit_validators import codes
from eventkit_validators.generic import GenericAdapter
from eventkit_validators.rules import (
    ALL_STREAMS,
    RULE_TYPES,
    RulesAdapter,
    RuleSet,
    load_rules,
    parse_rules,
)
from eventkit_validators.segment import SegmentSchemaAdapter
from eventkit_validators.validators import (
    RequiredFieldsValidator,
    TimestampValidator,
    TypeCheckValidator,
    ValidationFailure,
    ValidationPipeline,
    Validator,
    json_type_name,
    lookup,
)

__version__ = _version("eventkit-validators")

__all__ = [
    "ALL_STREAMS",
    "RULE_TYPES",
    "GenericAdapter",
    "RequiredFieldsValidator",
    "RuleSet",
    "RulesAdapter",
    "SegmentSchemaAdapter",
    "TimestampValidator",
    "TypeCheckValidator",
    "ValidationFailure",
    "ValidationPipeline",
    "Validator",
    "__version__",
    "codes",
    "json_type_name",
    "load_rules",
    "lookup",
    "parse_rules",
]
