"""Settings (environment names, the seed's example), the CLI, and mounting the router."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from eventkit_collector.app import Collector
from eventkit_collector.cli import build_parser, main, settings_from_args
from eventkit_collector.settings import Settings
from litestar import Litestar
from litestar.testing import AsyncTestClient
from pydantic import ValidationError


def test_seed_settings_construct_as_written() -> None:
    settings = Settings(
        gcp_project_id="your-project",
        gcp_gcs_bucket="your-events-bucket",
        gcp_bigquery_dataset="events",
        gcp_bigquery_table="raw_events",
        eventkit_event_store="gcs",
        eventkit_warehouse_enabled=True,
        eventkit_metrics_enabled=True,
        eventkit_metrics_port=9090,
    )
    assert settings.eventkit_event_store == "gcs"
    assert settings.gcp_gcs_bucket == "your-events-bucket"


def test_defaults_are_the_embedded_default(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(__import__("os").environ):
        if name.startswith(("EVENTKIT_", "GCP_")):
            monkeypatch.delenv(name)
    s = Settings()
    assert s.eventkit_event_store == "local"
    assert s.eventkit_queue_mode == "async"
    assert s.eventkit_data_dir == Path("./eventkit-data")
    assert (s.eventkit_port, s.eventkit_metrics_port) == (8000, 9090)
    assert s.eventkit_write_keys == []
    assert not s.auth_enabled
    assert s.eventkit_cors_origins == ["*"]
    assert s.eventkit_type_streams["identify"] == "users"
    assert (s.eventkit_flush_max_events, s.eventkit_flush_max_age) == (10_000, 5.0)


def test_environment_names(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EVENTKIT_WRITE_KEYS", "a, b,,c")
    monkeypatch.setenv("EVENTKIT_CORS_ORIGINS", '["https://x.example"]')
    monkeypatch.setenv("EVENTKIT_TRUSTED_PROXIES", "10.0.0.0/8")
    monkeypatch.setenv("EVENTKIT_TYPE_STREAMS", '{"track": "tracks"}')
    monkeypatch.setenv("EVENTKIT_PARTITIONS", "4")
    monkeypatch.setenv("EVENTKIT_RING_DURABILITY", "full")
    monkeypatch.setenv("EVENTKIT_DATA_DIR", "/tmp/x")
    s = Settings()
    assert s.eventkit_write_keys == ["a", "b", "c"]
    assert s.auth_enabled
    assert s.eventkit_cors_origins == ["https://x.example"]
    assert s.eventkit_trusted_proxies == ["10.0.0.0/8"]
    assert s.eventkit_type_streams["track"] == "tracks"
    assert s.eventkit_type_streams["page"] == "pages"
    assert s.eventkit_partitions == 4
    assert s.eventkit_ring_durability == "full"
    assert s.ring_dir == Path("/tmp/x/ring")


def test_bad_settings_say_what_to_do(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("GCP_GCS_BUCKET", raising=False)
    with pytest.raises(ValidationError, match="GCP_GCS_BUCKET"):
        Settings(eventkit_event_store="gcs")
    with pytest.raises(ValidationError, match="invalid"):
        Settings(eventkit_type_streams={"track": "../x"})


def test_cli_options_win_over_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EVENTKIT_PORT", "1234")
    monkeypatch.setenv("EVENTKIT_HOST", "0.0.0.0")
    args = build_parser().parse_args(["serve", "--port", "9999", "--data-dir", "/tmp/d"])
    s = settings_from_args(args)
    assert s.eventkit_port == 9999
    assert s.eventkit_host == "0.0.0.0"
    assert s.eventkit_data_dir == Path("/tmp/d")
    # options before the subcommand work too
    s = settings_from_args(build_parser().parse_args(["--metrics-port", "9191"]))
    assert s.eventkit_metrics_port == 9191


def test_cli_rejects_bad_settings(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["serve", "--queue-mode", "kafka"]) == 2
    assert "queue_mode" in capsys.readouterr().err


def test_help_lists_the_options() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "eventkit_collector.cli", "serve", "--help"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    for option in ("--host", "--port", "--data-dir", "--metrics-port", "--workers"):
        assert option in out
    assert "EVENTKIT_DATA_DIR" in out


async def test_router_mounts_in_a_users_app(tmp_path: Path) -> None:
    collector = Collector(
        Settings(eventkit_data_dir=tmp_path / "data", eventkit_metrics_enabled=False)
    )
    app = Litestar(route_handlers=[collector.router(path="/api")], lifespan=[collector.lifespan])
    async with AsyncTestClient(app) as client:
        r = await client.post("/api/v1/identify", json={"userId": "u", "traits": {"a": 1}})
        assert r.status_code == 200
        assert r.json() == {"success": True}
        r = await client.post("/api/collect/users", json=[{"a": 1}])
        assert r.status_code == 200
        assert (await client.get("/api/health")).status_code == 200
    assert collector.pipeline.accepted_requests == 2
    files: list[Any] = list((tmp_path / "data" / "events").rglob("*.parquet"))
    assert len(files) == 1  # both events in stream 'users', flushed on shutdown


def test_a_bad_rules_file_stops_the_start_with_its_message(tmp_path: Path) -> None:
    rules = tmp_path / "rules.toml"
    rules.write_text("[streams.events]\nrequired = 5\n")
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "eventkit_collector.cli",
            "--rules-file",
            str(rules),
            "--data-dir",
            str(tmp_path / "d"),
            "--no-metrics",
            "--port",
            "0",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 3
    assert "required" in proc.stderr
    assert "Traceback" not in proc.stderr
