"""Which adapter and which default stream serve each ingest endpoint, in one table.

The collector adapts events as they arrive and the loader adapts dead letters again when they are
replayed; both go through :class:`EndpointAdapter`, so a replayed event is judged exactly as it
was on arrival. A :class:`~eventkit_core.RawEvent`'s ``source`` names its endpoint: ``collect``
(``/collect[/{stream}]``), ``batch`` (``/v1/batch``), a Segment call (``/v1/track``, ...), or
:data:`INVALID_BATCH` for a whole body that was JSON but not of its endpoint's shape.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from enum import Enum
from types import MappingProxyType
from typing import Final

from eventkit_core import (
    DEFAULT_STREAM,
    DEFAULT_TYPE_STREAMS,
    AdaptError,
    AdaptResult,
    RawEvent,
    SchemaAdapter,
)

from eventkit_validators import amplitude, posthog
from eventkit_validators.amplitude import AmplitudeAdapter
from eventkit_validators.generic import GenericAdapter
from eventkit_validators.posthog import PostHogAdapter
from eventkit_validators.rules import RulesAdapter, RuleSet, load_rules
from eventkit_validators.segment import SegmentSchemaAdapter
from eventkit_validators.snowplow import SnowplowAdapter

#: ``RawEvent.source`` of a whole body that is JSON but not of its endpoint's shape (a
#: ``/v1/batch`` body without a ``batch`` array of objects). It is a dead letter, and stays one
#: when replayed.
INVALID_BATCH: Final = "invalid_batch"

INVALID_BATCH_ERROR: Final = AdaptError(
    code=INVALID_BATCH,
    message="a /v1/batch body must be a JSON object with a 'batch' array of event objects",
)

#: ``RawEvent.source`` of a Snowplow tp2 event (``POST /com.snowplowanalytics.snowplow/tp2``,
#: ``GET /i``).
SNOWPLOW: Final = "snowplow"
#: ``RawEvent.source`` of a Snowplow body that is JSON but not ``{"schema", "data": [...]}``.
INVALID_SNOWPLOW: Final = "invalid_snowplow"

INVALID_SNOWPLOW_ERROR: Final = AdaptError(
    code=INVALID_SNOWPLOW,
    message="snowplow: a tp2 body must be a JSON object "
    '{"schema": "iglu:com.snowplowanalytics.snowplow/payload_data/jsonschema/1-0-4", '
    '"data": [event objects]}',
)


class AdapterKind(Enum):
    """The adapter an endpoint's events go through."""

    SEGMENT = "segment"
    GENERIC = "generic"
    REFUSE = "refuse"
    SNOWPLOW = "snowplow"
    REFUSE_SNOWPLOW = "refuse_snowplow"
    POSTHOG = "posthog"
    AMPLITUDE = "amplitude"


@dataclass(frozen=True, slots=True)
class Endpoint:
    """How the events of one endpoint are adapted and where they go by default."""

    adapter: AdapterKind
    #: The stream of every event of the endpoint, unless the request names one; ``None``: each
    #: event's own ``type`` picks it (``/v1/batch``, see :func:`default_stream`).
    stream: str | None


def _table() -> Mapping[str, Endpoint]:
    table = {
        call: Endpoint(AdapterKind.SEGMENT, stream) for call, stream in DEFAULT_TYPE_STREAMS.items()
    }
    table["batch"] = Endpoint(AdapterKind.SEGMENT, None)
    table["collect"] = Endpoint(AdapterKind.GENERIC, DEFAULT_STREAM)
    table[INVALID_BATCH] = Endpoint(AdapterKind.REFUSE, DEFAULT_STREAM)
    _add_snowplow(table)
    # Other vendors' formats: each event goes by the call it maps to (see VENDOR_PEEKS).
    table[POSTHOG] = Endpoint(AdapterKind.POSTHOG, None)
    table[AMPLITUDE] = Endpoint(AdapterKind.AMPLITUDE, None)
    return MappingProxyType(table)


def _add_snowplow(table: dict[str, Endpoint]) -> None:
    # Each tp2 event goes by its call type (see eventkit_validators.snowplow.call_type).
    table[SNOWPLOW] = Endpoint(AdapterKind.SNOWPLOW, None)
    table[INVALID_SNOWPLOW] = Endpoint(AdapterKind.REFUSE_SNOWPLOW, DEFAULT_STREAM)


#: ``RawEvent.source`` of PostHog's endpoints (``/batch/``, ``/capture/``, ``/e/``, ``/i/v0/e/``).
POSTHOG: Final = "posthog"
#: ``RawEvent.source`` of Amplitude's endpoints (``/2/httpapi``, ``/batch``).
AMPLITUDE: Final = "amplitude"


#: Reads what the collector needs of a vendor's event before adapting it: ``(the Segment call
#: it becomes, its message id, its routing key)``, each ``None`` when the event does not say.
VendorPeek = Callable[[bytes], tuple[str | None, str | None, str | None]]

#: Source -> its :data:`VendorPeek` (the sources whose events are not Segment's shape).
VENDOR_PEEKS: Final[Mapping[str, VendorPeek]] = MappingProxyType(
    {POSTHOG: posthog.peek, AMPLITUDE: amplitude.peek}
)


#: ``RawEvent.source`` -> its :class:`Endpoint`. A source not listed is treated as a Segment call.
ENDPOINTS: Final[Mapping[str, Endpoint]] = _table()
_SEGMENT_ENDPOINT: Final = Endpoint(AdapterKind.SEGMENT, None)


def endpoint_of(source: str) -> Endpoint:
    """The :class:`Endpoint` of a ``RawEvent.source``."""
    return ENDPOINTS.get(source, _SEGMENT_ENDPOINT)


def default_stream(
    source: str,
    call_type: object = None,
    type_streams: Mapping[str, str] = DEFAULT_TYPE_STREAMS,
) -> str:
    """The stream an event of ``source`` goes to when the request names none.

    ``call_type``: the event's own ``type`` (used where the endpoint does not fix the stream,
    i.e. ``/v1/batch``). ``type_streams``: call type -> stream, as configured.
    """
    if source in type_streams:  # /v1/<call>: the configured stream of that call
        return type_streams[source]
    fixed = endpoint_of(source).stream
    if fixed is not None:
        return fixed
    if isinstance(call_type, str):
        return type_streams.get(call_type, DEFAULT_STREAM)
    return DEFAULT_STREAM


class _Refuse:
    """The adapter of a body that could not be split into events: always the same error."""

    __slots__ = ("_result",)

    def __init__(self, error: AdaptError) -> None:
        self._result = AdaptResult(error=error)

    def adapt(self, raw: RawEvent) -> AdaptResult:
        return self._result

    def adapt_many(self, raws: Sequence[RawEvent]) -> list[AdaptResult]:
        return [self._result] * len(raws)


def _vendor_adapters(
    max_event_bytes: int, rules: RuleSet | None
) -> tuple[SchemaAdapter, SchemaAdapter]:
    """The PostHog and Amplitude adapters, under the same rules as Segment's."""
    posthog_adapter: SchemaAdapter = PostHogAdapter(max_event_bytes=max_event_bytes)
    amplitude_adapter: SchemaAdapter = AmplitudeAdapter(max_event_bytes=max_event_bytes)
    if rules is not None:
        posthog_adapter = RulesAdapter(posthog_adapter, rules)
        amplitude_adapter = RulesAdapter(amplitude_adapter, rules)
    return posthog_adapter, amplitude_adapter


class EndpointAdapter:
    """Adapts each event with the adapter of its endpoint (``RawEvent.source``).

    Segment calls go to :class:`SegmentSchemaAdapter`, ``/collect`` events to
    :class:`GenericAdapter`, Snowplow tp2 events to :class:`SnowplowAdapter`, PostHog's and
    Amplitude's to :class:`PostHogAdapter` and :class:`AmplitudeAdapter`, all wrapped by
    :class:`RulesAdapter` when rules are given (``rules``, or a TOML ``rules_file``); an
    :data:`INVALID_BATCH` body keeps failing.
    """

    __slots__ = ("_by_kind", "amplitude", "generic", "posthog", "segment", "snowplow")

    def __init__(
        self,
        *,
        max_event_bytes: int = 32768,
        rules: RuleSet | None = None,
        rules_file: str | os.PathLike[str] | None = None,
    ) -> None:
        if rules is None and rules_file is not None:
            rules = load_rules(rules_file)
        segment: SchemaAdapter = SegmentSchemaAdapter(max_event_bytes=max_event_bytes)
        generic: SchemaAdapter = GenericAdapter(max_event_bytes=max_event_bytes)
        snowplow: SchemaAdapter = SnowplowAdapter(max_event_bytes=max_event_bytes)
        if rules is not None:
            segment = RulesAdapter(segment, rules)
            generic = RulesAdapter(generic, rules)
            snowplow = RulesAdapter(snowplow, rules)
        self.segment = segment
        self.generic = generic
        self.snowplow = snowplow
        self.posthog, self.amplitude = _vendor_adapters(max_event_bytes, rules)
        self._by_kind: dict[AdapterKind, SchemaAdapter] = {
            AdapterKind.SEGMENT: segment,
            AdapterKind.GENERIC: generic,
            AdapterKind.REFUSE: _Refuse(INVALID_BATCH_ERROR),
            AdapterKind.SNOWPLOW: snowplow,
            AdapterKind.REFUSE_SNOWPLOW: _Refuse(INVALID_SNOWPLOW_ERROR),
            AdapterKind.POSTHOG: self.posthog,
            AdapterKind.AMPLITUDE: self.amplitude,
        }

    def adapter_for(self, raw: RawEvent) -> SchemaAdapter:
        """The adapter that serves ``raw``'s endpoint."""
        return self._by_kind[endpoint_of(raw.source).adapter]

    def adapt(self, raw: RawEvent) -> AdaptResult:
        return self._by_kind[endpoint_of(raw.source).adapter].adapt(raw)

    def adapt_many(self, raws: Sequence[RawEvent]) -> list[AdaptResult]:
        """:meth:`adapt` for each event, in order."""
        by_kind = self._by_kind
        get = ENDPOINTS.get
        fallback = _SEGMENT_ENDPOINT
        return [by_kind[get(raw.source, fallback).adapter].adapt(raw) for raw in raws]
