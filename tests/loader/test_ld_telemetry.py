"""Metrics: the exposed names are the seed's, served on /metrics with /health beside."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest
from eventkit_loader.telemetry import MetricsServer, Telemetry
from eventkit_storage.warehouse import LoaderMetrics as StorageLoaderMetrics


@pytest.fixture
def telemetry() -> Iterator[Telemetry]:
    t = Telemetry()
    yield t
    t.shutdown()


def _get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=10) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def _values(text: str, name: str) -> list[float]:
    return [
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith((name + "{", name + " "))
    ]


def test_exposed_names(telemetry: Telemetry) -> None:
    m = telemetry.metrics
    # The storage library's warehouse loaders count files through the provider they are given.
    storage = StorageLoaderMetrics("duckdb", telemetry.provider)
    storage.loaded(3)
    m.errors.add(1, {"warehouse": "duckdb", "stage": "pass"})
    m.rows_loaded.add(30, {"warehouse": "duckdb"})
    m.set_backlog(2, time.time() - 100)
    text = telemetry.exposition().decode()
    assert _values(text, "eventkit_warehouse_loader_files_processed_total") == [3.0]
    assert _values(text, "eventkit_warehouse_loader_errors_total") == [1.0]
    assert _values(text, "eventkit_warehouse_loader_rows_loaded_total") == [30.0]
    assert _values(text, "eventkit_warehouse_loader_pending_files") == [2.0]
    [age] = _values(text, "eventkit_warehouse_loader_oldest_unloaded_age_seconds")
    assert 99.0 <= age < 200.0
    assert _values(text, "eventkit_uptime_seconds")
    assert _values(text, "eventkit_info") == [1.0]


def test_age_is_zero_without_backlog(telemetry: Telemetry) -> None:
    telemetry.metrics.set_backlog(0, None)
    text = telemetry.exposition().decode()
    assert _values(text, "eventkit_warehouse_loader_oldest_unloaded_age_seconds") == [0.0]


def test_server_serves_metrics_and_health(telemetry: Telemetry) -> None:
    health: dict[str, Any] = {"ok": True}
    server = MetricsServer(
        telemetry, lambda: (health["ok"], {"last_pass": None}), "127.0.0.1", 0
    ).start()
    try:
        base = f"http://127.0.0.1:{server.port}"
        StorageLoaderMetrics("duckdb", telemetry.provider).loaded(1)
        status, body = _get(base + "/metrics")
        assert status == 200
        assert "eventkit_warehouse_loader_files_processed_total" in body
        status, body = _get(base + "/health")
        assert status == 200
        assert json.loads(body)["status"] == "ok"
        health["ok"] = False
        status, body = _get(base + "/health")
        assert status == 503
        assert json.loads(body)["status"] == "unhealthy"
        assert _get(base + "/nope")[0] == 404
    finally:
        server.stop()
