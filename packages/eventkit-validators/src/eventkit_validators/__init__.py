"""Schema adapters (Segment, Snowplow, schemaless, the endpoint table), rules and validators for eventkit."""

from importlib.metadata import version as _version

from eventkit_validators import codes
from eventkit_validators.amplitude import AmplitudeAdapter
from eventkit_validators.core import AdapterCore, Message
from eventkit_validators.endpoints import (
    AMPLITUDE,
    ENDPOINTS,
    INVALID_BATCH,
    INVALID_SNOWPLOW,
    POSTHOG,
    SNOWPLOW,
    VENDOR_PEEKS,
    AdapterKind,
    Endpoint,
    EndpointAdapter,
    default_stream,
    endpoint_of,
)
from eventkit_validators.generic import GenericAdapter
from eventkit_validators.posthog import PostHogAdapter
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
    "AMPLITUDE",
    "ENDPOINTS",
    "INVALID_BATCH",
    "INVALID_SNOWPLOW",
    "POSTHOG",
    "RULE_TYPES",
    "SNOWPLOW",
    "VENDOR_PEEKS",
    "AdapterCore",
    "AdapterKind",
    "AmplitudeAdapter",
    "Endpoint",
    "EndpointAdapter",
    "GenericAdapter",
    "Message",
    "PostHogAdapter",
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
