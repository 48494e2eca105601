"""The endpoint table and EndpointAdapter: the one place that says which adapter serves what."""

from __future__ import annotations

from pathlib import Path

import msgspec
import pytest
from eventkit_core import (
    DEFAULT_TYPE_STREAMS,
    ConfigurationError,
    CustomEvent,
    RawEvent,
    TrackEvent,
)
from eventkit_validators import (
    ENDPOINTS,
    INVALID_BATCH,
    AdapterKind,
    EndpointAdapter,
    default_stream,
    endpoint_of,
    parse_rules,
)


def _raw(payload: bytes, source: str, stream: str = "events") -> RawEvent:
    return RawEvent(payload=msgspec.Raw(payload), source=source, stream=stream)


def test_every_segment_call_is_served_by_the_segment_adapter_with_its_stream() -> None:
    for call, stream in DEFAULT_TYPE_STREAMS.items():
        assert endpoint_of(call).adapter is AdapterKind.SEGMENT
        assert endpoint_of(call).stream == stream
    assert endpoint_of("batch").adapter is AdapterKind.SEGMENT
    assert endpoint_of("collect").adapter is AdapterKind.GENERIC
    assert ENDPOINTS[INVALID_BATCH].adapter is AdapterKind.REFUSE


def test_default_stream_by_endpoint_and_by_call_type() -> None:
    assert default_stream("collect") == "default"
    assert default_stream("track") == "events"
    assert default_stream("track", type_streams={"track": "tracks"}) == "tracks"
    assert default_stream("batch", "identify") == "users"
    assert default_stream("batch", "nonsense") == "default"
    assert default_stream("batch", 5) == "default"
    assert default_stream("batch", "page", {"page": "views"}) == "views"


def test_each_event_goes_to_its_endpoints_adapter() -> None:
    adapter = EndpointAdapter()
    track = b'{"type":"track","userId":"u","event":"e"}'
    results = adapter.adapt_many(
        [_raw(track, "batch"), _raw(b'{"anything":1}', "collect"), _raw(track, INVALID_BATCH)]
    )
    assert isinstance(results[0].event, TrackEvent)
    assert isinstance(results[1].event, CustomEvent)
    assert results[2].error is not None
    assert results[2].error.code == INVALID_BATCH
    assert [r.ok for r in results] == [
        adapter.adapt(r).ok
        for r in [
            _raw(track, "batch"),
            _raw(b'{"anything":1}', "collect"),
            _raw(track, INVALID_BATCH),
        ]
    ]
    # /collect accepts what Segment's spec refuses (no ids); /v1/track does not.
    assert adapter.adapt(_raw(b'{"event":"e"}', "collect")).ok
    refused = adapter.adapt(_raw(b'{"event":"e"}', "track"))
    assert refused.error is not None
    assert refused.error.code == "missing_field"


def test_rules_apply_to_both_adapters(tmp_path: Path) -> None:
    text = '[streams.events]\nrequired = ["properties.plan"]\n'
    rules_file = tmp_path / "rules.toml"
    rules_file.write_text(text)
    for adapter in (
        EndpointAdapter(rules=parse_rules(text)),
        EndpointAdapter(rules_file=rules_file),
    ):
        segment = adapter.adapt(_raw(b'{"type":"track","userId":"u","event":"e"}', "track"))
        generic = adapter.adapt(_raw(b'{"event":"e"}', "collect"))
        assert [segment.error and segment.error.code, generic.error and generic.error.code] == [
            "rule_failed",
            "rule_failed",
        ]
        assert adapter.adapt(_raw(b'{"properties":{"plan":"pro"}}', "collect")).ok


def test_a_missing_rules_file_is_a_configuration_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="cannot be read"):
        EndpointAdapter(rules_file=tmp_path / "nope.toml")


def test_the_collector_and_the_loader_use_the_same_class() -> None:
    from eventkit_collector.adapter import INVALID_BATCH as collector_invalid_batch
    from eventkit_collector.adapter import CollectorAdapter
    from eventkit_loader import backends
    from eventkit_loader.settings import load_settings

    assert CollectorAdapter is EndpointAdapter
    assert collector_invalid_batch == INVALID_BATCH
    assert isinstance(backends.replay_adapter(load_settings()), EndpointAdapter)
