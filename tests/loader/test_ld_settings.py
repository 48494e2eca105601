"""Loader settings: environment names, defaults, CLI overrides, derived values."""

from __future__ import annotations

from pathlib import Path

import pytest
from eventkit_core import ConfigurationError
from eventkit_loader.settings import LoaderSettings, load_settings

_ENV_NAMES = (
    "EVENTKIT_DATA_DIR",
    "EVENTKIT_EVENT_STORE",
    "EVENTKIT_WAREHOUSE",
    "EVENTKIT_WAREHOUSE_ENABLED",
    "EVENTKIT_WAREHOUSE_TABLE",
    "GCP_BIGQUERY_TABLE",
    "GCP_PROJECT_ID",
    "GCP_GCS_BUCKET",
    "EVENTKIT_GCS_PREFIX",
    "GCP_BIGQUERY_DATASET",
    "EVENTKIT_LOADER_INTERVAL",
    "EVENTKIT_LOADER_BATCH_FILES",
    "EVENTKIT_METRICS_ENABLED",
    "EVENTKIT_METRICS_PORT",
    "EVENTKIT_RULES_FILE",
    "EVENTKIT_LOG_LEVEL",
)


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in _ENV_NAMES:
        monkeypatch.delenv(name, raising=False)


def test_defaults_are_the_embedded_setup() -> None:
    s = load_settings()
    assert s.data_dir == Path("eventkit-data")
    assert s.event_store == "local"
    assert s.warehouse_kind == "duckdb"
    assert s.duckdb_path == Path("eventkit-data/warehouse.duckdb")
    assert s.warehouse_table == "raw_events"
    assert s.metrics_port == 9091
    assert s.metrics_enabled is True
    assert s.warehouse_enabled is True
    assert s.loader_interval == 60.0
    assert s.loader_batch_files == 500
    s.check()


def test_environment_is_read(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("EVENTKIT_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("EVENTKIT_EVENT_STORE", "gcs")
    monkeypatch.setenv("GCP_GCS_BUCKET", "b")
    monkeypatch.setenv("GCP_PROJECT_ID", "p")
    monkeypatch.setenv("EVENTKIT_GCS_PREFIX", "/pre/")
    monkeypatch.setenv("GCP_BIGQUERY_TABLE", "t1")
    monkeypatch.setenv("EVENTKIT_LOADER_INTERVAL", "2.5")
    monkeypatch.setenv("EVENTKIT_METRICS_ENABLED", "false")
    s = load_settings()
    assert s.data_dir == tmp_path
    assert s.warehouse_kind == "bigquery"  # the default for GCS
    assert s.gcs_prefix == "pre"
    assert s.warehouse_table == "t1"
    assert s.loader_interval == 2.5
    assert s.metrics_enabled is False
    s.check()


def test_eventkit_table_name_wins_over_the_seed_name(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GCP_BIGQUERY_TABLE", "seed")
    monkeypatch.setenv("EVENTKIT_WAREHOUSE_TABLE", "ours")
    assert load_settings().warehouse_table == "ours"


def test_options_win_over_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EVENTKIT_METRICS_PORT", "1234")
    monkeypatch.setenv("EVENTKIT_DATA_DIR", "/from/env")
    s = load_settings(metrics_port=4321, data_dir=Path("/from/cli"), warehouse_table=None)
    assert s.metrics_port == 4321
    assert s.data_dir == Path("/from/cli")
    assert s.warehouse_table == "raw_events"  # None = not given


def test_bare_names_are_not_read(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATA_DIR", "/nope")
    monkeypatch.setenv("WAREHOUSE_TABLE", "nope")
    monkeypatch.setenv("METRICS_PORT", "1")
    s = load_settings()
    assert (s.data_dir, s.warehouse_table, s.metrics_port) == (
        Path("eventkit-data"),
        "raw_events",
        9091,
    )


def test_invalid_values_name_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EVENTKIT_LOADER_BATCH_FILES", "0")
    with pytest.raises(ConfigurationError, match="EVENTKIT_LOADER_BATCH_FILES"):
        load_settings()


def test_gcs_without_bucket_says_what_to_set() -> None:
    with pytest.raises(ConfigurationError, match="GCP_GCS_BUCKET"):
        load_settings(event_store="gcs", gcp_project_id="p").check()


def test_bigquery_over_local_files_is_refused() -> None:
    s = load_settings(warehouse="bigquery", gcp_project_id="p")
    with pytest.raises(ConfigurationError, match="EVENTKIT_WAREHOUSE=duckdb"):
        s.check()


def test_duckdb_over_gcs_is_allowed() -> None:
    s = load_settings(event_store="gcs", gcp_gcs_bucket="b", warehouse="duckdb")
    s.check()
    assert s.warehouse_kind == "duckdb"


def test_every_field_reads_a_documented_variable() -> None:
    readme = (Path(__file__).parents[2] / "apps/loader/README.md").read_text()
    for name, info in LoaderSettings.model_fields.items():
        alias = info.validation_alias
        names = getattr(alias, "choices", [alias])
        for env in names:
            assert f"`{env}`" in readme, f"{name}: {env} is not in the README"
