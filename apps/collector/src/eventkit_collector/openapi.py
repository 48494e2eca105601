"""The request bodies of the ingest endpoints in the OpenAPI document (``/schema``).

The handlers read the raw body (any JSON is accepted, what does not fit is dead-lettered), so
Litestar sees no ``data`` parameter and would document no body. These operation classes add the
body each endpoint expects, so clients, and schemathesis, know what to send.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from litestar.openapi.spec import OpenAPIMediaType, OpenAPIType, Operation, RequestBody, Schema

from eventkit_collector.edge import Kind

_OBJECT: Final = Schema(type=OpenAPIType.OBJECT, additional_properties=True)
_SCHEMAS: Final = {
    Kind.SINGLE: _OBJECT,
    Kind.BATCH: Schema(
        type=OpenAPIType.OBJECT,
        required=["batch"],
        properties={
            "batch": Schema(type=OpenAPIType.ARRAY, items=_OBJECT, max_items=2500),
            "context": _OBJECT,
            "integrations": _OBJECT,
            "sentAt": Schema(type=OpenAPIType.STRING),
        },
    ),
    Kind.COLLECT: Schema(
        one_of=[_OBJECT, Schema(type=OpenAPIType.ARRAY, items=_OBJECT, max_items=2500)]
    ),
    Kind.SNOWPLOW: Schema(
        type=OpenAPIType.OBJECT,
        required=["data"],
        properties={
            "schema": Schema(type=OpenAPIType.STRING),
            "data": Schema(type=OpenAPIType.ARRAY, items=_OBJECT, max_items=2500),
        },
    ),
    Kind.POSTHOG: Schema(
        one_of=[_OBJECT, Schema(type=OpenAPIType.ARRAY, items=_OBJECT, max_items=2500)]
    ),
    Kind.AMPLITUDE: Schema(
        type=OpenAPIType.OBJECT,
        required=["events"],
        properties={
            "api_key": Schema(type=OpenAPIType.STRING),
            "events": Schema(type=OpenAPIType.ARRAY, items=_OBJECT, max_items=2500),
        },
    ),
}


def operation_class(kind: Kind) -> type[Operation]:
    """An :class:`Operation` that documents the body of an endpoint of this kind.

    A kind without its own schema (PostHog's and Amplitude's shared ``/batch``) is documented as
    any JSON object.
    """
    body = RequestBody(
        required=True,
        content={"application/json": OpenAPIMediaType(schema=_SCHEMAS.get(kind, _OBJECT))},
        description=(
            "JSON; the same as text/plain (beacons) or in a form field; gzip or deflate; any "
            "JSON is accepted (what does not fit is dead-lettered)"
        ),
    )

    @dataclass
    class IngestOperation(Operation):
        def __post_init__(self) -> None:
            if self.request_body is None:
                self.request_body = body

    IngestOperation.__name__ = f"{kind.name.title()}Operation"
    return IngestOperation
