"""Every setting of the loader, read from the environment here and nowhere else.

Command-line options win over environment variables: :func:`load_settings` takes them as
overrides keyed by field name. Each field reads exactly the variable(s) named in its alias
(never a bare ``TABLE`` or ``PORT``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from eventkit_core import ConfigurationError
from eventkit_storage.retention import RetentionPolicy, parse_stream_days
from pydantic import AliasChoices, Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_DATA_DIR = Path("eventkit-data")
DUCKDB_FILE = "warehouse.duckdb"
STATE_FILE = "loader-state.sqlite"


class LoaderSettings(BaseSettings):
    """The loader's settings. Field docs are the README's table (keep them in step)."""

    model_config = SettingsConfigDict(env_ignore_empty=True, extra="ignore", frozen=True)

    data_dir: Path = Field(DEFAULT_DATA_DIR, validation_alias="EVENTKIT_DATA_DIR")
    event_store: Literal["local", "gcs"] = Field("local", validation_alias="EVENTKIT_EVENT_STORE")
    warehouse: Literal["duckdb", "bigquery"] | None = Field(
        None, validation_alias="EVENTKIT_WAREHOUSE"
    )
    warehouse_enabled: bool = Field(True, validation_alias="EVENTKIT_WAREHOUSE_ENABLED")
    warehouse_table: str = Field(
        "raw_events",
        validation_alias=AliasChoices("EVENTKIT_WAREHOUSE_TABLE", "GCP_BIGQUERY_TABLE"),
    )
    gcp_project_id: str | None = Field(None, validation_alias="GCP_PROJECT_ID")
    gcp_gcs_bucket: str | None = Field(None, validation_alias="GCP_GCS_BUCKET")
    gcs_prefix: str = Field("", validation_alias="EVENTKIT_GCS_PREFIX")
    parquet_payload: Literal["extras", "full"] = Field(
        "extras", validation_alias="EVENTKIT_PARQUET_PAYLOAD"
    )
    gcp_bigquery_dataset: str = Field("events", validation_alias="GCP_BIGQUERY_DATASET")
    bigquery_location: str | None = Field(None, validation_alias="EVENTKIT_BIGQUERY_LOCATION")
    bigquery_api_endpoint: str | None = Field(
        None, validation_alias="EVENTKIT_BIGQUERY_API_ENDPOINT"
    )
    loader_interval: float = Field(60.0, gt=0, validation_alias="EVENTKIT_LOADER_INTERVAL")
    loader_batch_files: int = Field(
        500, ge=1, le=10_000, validation_alias="EVENTKIT_LOADER_BATCH_FILES"
    )
    lock_timeout: float = Field(10.0, ge=0, validation_alias="EVENTKIT_LOCK_TIMEOUT")
    metrics_enabled: bool = Field(True, validation_alias="EVENTKIT_METRICS_ENABLED")
    metrics_host: str = Field("127.0.0.1", validation_alias="EVENTKIT_METRICS_HOST")
    metrics_port: int = Field(9091, ge=0, le=65535, validation_alias="EVENTKIT_METRICS_PORT")
    rules_file: Path | None = Field(None, validation_alias="EVENTKIT_RULES_FILE")
    max_event_bytes: int = Field(32 * 1024, ge=1, validation_alias="EVENTKIT_MAX_EVENT_BYTES")
    log_level: str = Field("INFO", validation_alias="EVENTKIT_LOG_LEVEL")
    profiles_port: int | None = Field(
        None, ge=0, le=65535, validation_alias="EVENTKIT_PROFILES_PORT"
    )
    profiles_host: str = Field("127.0.0.1", validation_alias="EVENTKIT_PROFILES_HOST")
    profiles_token: str | None = Field(None, validation_alias="EVENTKIT_PROFILES_TOKEN")
    retention_days: int | None = Field(None, ge=1, validation_alias="EVENTKIT_RETENTION_DAYS")
    stream_retention_days: str = Field("", validation_alias="EVENTKIT_STREAM_RETENTION_DAYS")

    @field_validator("log_level")
    @classmethod
    def _known_level(cls, value: str) -> str:
        level = value.upper()
        if level not in {"DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"}:
            raise ConfigurationError("use one of DEBUG, INFO, WARNING, ERROR, CRITICAL")
        return level

    @field_validator("gcs_prefix")
    @classmethod
    def _clean_prefix(cls, value: str) -> str:
        return value.strip("/")

    # -- derived values -------------------------------------------------------------------

    @property
    def warehouse_kind(self) -> Literal["duckdb", "bigquery"]:
        """The warehouse in use: the explicit setting, else DuckDB for local, BigQuery for GCS."""
        if self.warehouse is not None:
            return self.warehouse
        return "bigquery" if self.event_store == "gcs" else "duckdb"

    @property
    def retention(self) -> RetentionPolicy:
        """EVENTKIT_RETENTION_DAYS with the EVENTKIT_STREAM_RETENTION_DAYS overrides."""
        return RetentionPolicy(self.retention_days, parse_stream_days(self.stream_retention_days))

    @property
    def duckdb_path(self) -> Path:
        return self.data_dir / DUCKDB_FILE

    @property
    def state_path(self) -> Path:
        """The loader's own small state file (failed files, replay ledger)."""
        return self.data_dir / STATE_FILE

    def check(self) -> None:
        """Raise :class:`ConfigurationError` for combinations that cannot work."""
        if self.event_store == "gcs" and not self.gcp_gcs_bucket:
            raise ConfigurationError(
                "EVENTKIT_EVENT_STORE=gcs needs a bucket: set GCP_GCS_BUCKET or pass --bucket"
            )
        if self.warehouse_kind == "bigquery" and not self.gcp_project_id:
            raise ConfigurationError(
                "the BigQuery warehouse needs a project: set GCP_PROJECT_ID or pass --project"
            )
        if self.profiles_port is not None and not self.profiles_token:
            raise ConfigurationError(
                "the Profile API (EVENTKIT_PROFILES_PORT / --profiles-port) needs a token: set "
                "EVENTKIT_PROFILES_TOKEN (clients send it as the Basic auth user name)"
            )
        if self.warehouse_kind == "bigquery" and self.event_store == "local":
            raise ConfigurationError(
                "BigQuery loads files from GCS: with EVENTKIT_EVENT_STORE=local use "
                "EVENTKIT_WAREHOUSE=duckdb (or store events in GCS)"
            )


def _alias_of(name: str) -> str:
    alias = LoaderSettings.model_fields[name].validation_alias
    if isinstance(alias, AliasChoices):
        first = alias.choices[0]
        assert isinstance(first, str)
        return first
    assert isinstance(alias, str)
    return alias


def load_settings(**overrides: Any) -> LoaderSettings:
    """Settings from the environment, with ``overrides`` (field name -> value; None = unset) on top.

    Raises :class:`ConfigurationError` with the variable names when a value is invalid.
    """
    given = {_alias_of(k): v for k, v in overrides.items() if v is not None}
    try:
        settings = LoaderSettings(**given)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in exc.errors()
        )
        raise ConfigurationError(f"invalid loader settings: {problems}") from exc
    return settings
