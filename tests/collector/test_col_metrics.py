"""CollectorMetrics through an SDK reader: bounded reason labels, component_health, a broken
probe; and the metrics server's /health and 404 answers."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any

import pytest
from eventkit_collector.metrics import _MAX_REASONS, CollectorMetrics, MetricsServer
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader


def points(reader: InMemoryMetricReader, name: str) -> dict[frozenset[tuple[str, Any]], float]:
    data = reader.get_metrics_data()
    out: dict[frozenset[tuple[str, Any]], float] = {}
    assert data is not None
    for resource in data.resource_metrics:
        for scope in resource.scope_metrics:
            for metric in scope.metrics:
                if metric.name == name:
                    for p in metric.data.data_points:
                        out[frozenset((p.attributes or {}).items())] = p.value  # type: ignore[union-attr]
    return out


def collector_metrics(health: Any = None) -> tuple[CollectorMetrics, InMemoryMetricReader]:
    reader = InMemoryMetricReader()
    return CollectorMetrics(health, MeterProvider(metric_readers=[reader])), reader


def test_reasons_past_the_cap_fold_into_other() -> None:
    m, reader = collector_metrics()
    codes = [f"code_{i}" for i in range(_MAX_REASONS + 6)]
    m.failed(dict.fromkeys(codes, 2))
    m.failed({"code_0": 1, "code_70": 1, "bad label!": 3, "x" * 60: 4})
    got = {dict(k)["reason"]: v for k, v in points(reader, "eventkit_events_failed").items()}
    kept = codes[:_MAX_REASONS]
    assert set(got) == {*kept, "other"}  # bounded: the cap plus one
    assert got["code_0"] == 3  # a known reason keeps its label after the cap is reached
    assert all(got[c] == 2 for c in kept[1:])
    assert got["other"] == 6 * 2 + 1 + 3 + 4  # the 6 past the cap, code_70, two unfit labels


def test_event_types_outside_the_known_set_are_other() -> None:
    m, reader = collector_metrics()
    m.processed({"track": 2, "page": 1, "made_up": 5, "another": 1})
    got = {dict(k)["event_type"]: v for k, v in points(reader, "eventkit_events_processed").items()}
    assert got == {"track": 2, "page": 1, "other": 6}


def test_component_health_reports_both_statuses_per_component() -> None:
    status = {"ring_buffer": True, "storage": False}
    _metrics, reader = collector_metrics(lambda: dict(status))
    got = points(reader, "eventkit_component_health")
    assert got == {
        frozenset({("component", "ring_buffer"), ("status", "healthy")}): 1,
        frozenset({("component", "ring_buffer"), ("status", "unhealthy")}): 0,
        frozenset({("component", "storage"), ("status", "healthy")}): 0,
        frozenset({("component", "storage"), ("status", "unhealthy")}): 1,
    }
    status["storage"] = True
    got = points(reader, "eventkit_component_health")
    assert got[frozenset({("component", "storage"), ("status", "healthy")})] == 1
    assert got[frozenset({("component", "storage"), ("status", "unhealthy")})] == 0


def test_a_broken_health_probe_does_not_break_the_scrape(caplog: pytest.LogCaptureFixture) -> None:
    def broken() -> dict[str, bool]:
        raise RuntimeError("probe down")

    m, reader = collector_metrics(broken)
    m.received(3)
    assert points(reader, "eventkit_component_health") == {}
    assert points(reader, "eventkit_events_received") == {frozenset(): 3}
    assert "health probe failed" in caplog.text


def _get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=10) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def test_metrics_server_health_follows_the_probe() -> None:
    healthy = [True]
    server = MetricsServer("127.0.0.1", 0, health=lambda: healthy[0])
    server.start()
    try:
        base = f"http://127.0.0.1:{server.port}"
        assert _get(f"{base}/health") == (200, b'{"status":"ok"}')
        healthy[0] = False
        status, body = _get(f"{base}/health")
        assert (status, json.loads(body)) == (503, {"status": "unhealthy"})
        status, body = _get(f"{base}/nope")
        assert status == 404
        assert json.loads(body)["code"] == "not_found"
        status, _ = _get(f"{base}/metrics")
        assert status == 200
    finally:
        server.stop()
