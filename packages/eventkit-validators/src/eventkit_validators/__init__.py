"""Schema adapters (Segment, Snowplow, schemaless, the endpoint table), rules and validators for eventkit."""

from importlib.metadata import version as _version

from eventkit_validators import codes
from eventkit_validators.core import AdapterCore, Message
from eventkit_validators.endpoints import (
    ENDPOINTS,
    INVALID_BATCH,
    INVALID_SNOWPLOW,
    SNOWPLOW,
    AdapterKind,
    Endpoint,
    EndpointAdapter,
    default_stream,
    endpoint_of,
)
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
from eventkit_validators.snowplow import SnowplowAdapter
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
    "ENDPOINTS",
    "INVALID_BATCH",
    "INVALID_SNOWPLOW",
    "RULE_TYPES",
    "SNOWPLOW",
    "AdapterCore",
    "AdapterKind",
    "Endpoint",
    "EndpointAdapter",
    "GenericAdapter",
    "Message",
    "RequiredFieldsValidator",
    "RuleSet",
    "RulesAdapter",
    "SegmentSchemaAdapter",
    "SnowplowAdapter",
    "TimestampValidator",
    "TypeCheckValidator",
    "ValidationFailure",
    "ValidationPipeline",
    "Validator",
    "__version__",
    "codes",
    "default_stream",
    "endpoint_of",
    "json_type_name",
    "load_rules",
    "lookup",
    "parse_rules",
]
