"""The collector's adapter: picks the schema adapter by endpoint and applies the rules file."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from eventkit_core import AdaptError, AdaptResult, RawEvent, SchemaAdapter
from eventkit_validators import GenericAdapter, RulesAdapter, SegmentSchemaAdapter, load_rules

#: RawEvent.source of a whole body that is JSON but not of its endpoint's shape.
INVALID_BATCH = "invalid_batch"
_INVALID_BATCH_ERROR = AdaptError(
    code=INVALID_BATCH,
    message="a /v1/batch body must be a JSON object with a 'batch' array of event objects",
)


class CollectorAdapter:
    """``/collect`` events go to :class:`GenericAdapter`, Segment calls to
    :class:`SegmentSchemaAdapter`; both wrapped by :class:`RulesAdapter` when rules are given."""

    __slots__ = ("generic", "segment")

    def __init__(self, *, max_event_bytes: int = 32768, rules_file: Path | None = None) -> None:
        segment: SchemaAdapter = SegmentSchemaAdapter(max_event_bytes=max_event_bytes)
        generic: SchemaAdapter = GenericAdapter(max_event_bytes=max_event_bytes)
        if rules_file is not None:
            rules = load_rules(rules_file)
            segment = RulesAdapter(segment, rules)
            generic = RulesAdapter(generic, rules)
        self.segment = segment
        self.generic = generic

    def adapt(self, raw: RawEvent) -> AdaptResult:
        source = raw.source
        if source == "collect":
            return self.generic.adapt(raw)
        if source == INVALID_BATCH:
            return AdaptResult(error=_INVALID_BATCH_ERROR)
        return self.segment.adapt(raw)

    def adapt_many(self, raws: Sequence[RawEvent]) -> list[AdaptResult]:
        adapt = self.adapt
        return [adapt(raw) for raw in raws]
