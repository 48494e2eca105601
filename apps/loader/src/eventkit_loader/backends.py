"""Backends chosen by settings: the event/error stores, the warehouse and the replay adapter.

Heavy clients (google-cloud-*, duckdb) are imported only when their backend is chosen.
"""

from __future__ import annotations

import logging
from typing import Any

from eventkit_core import ConfigurationError
from eventkit_validators import EndpointAdapter
from opentelemetry.metrics import MeterProvider

from eventkit_loader.settings import LoaderSettings

log = logging.getLogger("eventkit_loader")


def event_store(settings: LoaderSettings, meter_provider: MeterProvider | None = None) -> Any:
    """The event store the collector writes to (a directory or a GCS bucket)."""
    return _file_store(settings, meter_provider, dead_letters=False)


def error_store(settings: LoaderSettings, meter_provider: MeterProvider | None = None) -> Any:
    """The dead-letter store beside the event store."""
    return _file_store(settings, meter_provider, dead_letters=True)


def _file_store(
    settings: LoaderSettings, meter_provider: MeterProvider | None, *, dead_letters: bool
) -> Any:
    if settings.event_store == "gcs":
        from eventkit_storage import gcs

        assert settings.gcp_gcs_bucket is not None  # settings.check()
        if dead_letters:
            return gcs.GCSErrorStore(
                settings.gcp_gcs_bucket,
                prefix=settings.gcs_prefix,
                project=settings.gcp_project_id,
                meter_provider=meter_provider,
            )
        return gcs.GCSEventStore(
            settings.gcp_gcs_bucket,
            prefix=settings.gcs_prefix,
            project=settings.gcp_project_id,
            meter_provider=meter_provider,
            payload=settings.parquet_payload,  # replayed events: as the collector writes them
        )
    from eventkit_storage import local

    if dead_letters:
        return local.LocalErrorStore(settings.data_dir, meter_provider=meter_provider)
    return local.LocalEventStore(
        settings.data_dir, meter_provider=meter_provider, payload=settings.parquet_payload
    )


def bigquery_client(settings: LoaderSettings) -> Any:
    """A BigQuery client; with EVENTKIT_BIGQUERY_API_ENDPOINT (an emulator) it talks there."""
    from google.cloud import bigquery

    if not settings.bigquery_api_endpoint:
        return bigquery.Client(project=settings.gcp_project_id, location=settings.bigquery_location)
    import google.auth
    from google.auth.credentials import AnonymousCredentials
    from google.auth.exceptions import DefaultCredentialsError

    credentials: Any
    try:
        credentials, _ = google.auth.default()  # type: ignore[no-untyped-call]
    except DefaultCredentialsError:
        credentials = AnonymousCredentials()  # type: ignore[no-untyped-call]
    return bigquery.Client(
        project=settings.gcp_project_id,
        credentials=credentials,
        location=settings.bigquery_location,
        client_options={"api_endpoint": settings.bigquery_api_endpoint},
    )


def warehouse(settings: LoaderSettings, meter_provider: MeterProvider | None = None) -> Any:
    """The warehouse loader: the embedded DuckDB file, or BigQuery.

    ``meter_provider``: where the loader's own counters go (files processed, errors); the global
    provider when None.
    """
    if settings.warehouse_kind == "bigquery":
        from eventkit_storage.bigquery import BigQueryWarehouseLoader

        assert settings.gcp_project_id is not None  # settings.check()
        return BigQueryWarehouseLoader(
            settings.gcp_project_id,
            settings.gcp_bigquery_dataset,
            settings.warehouse_table,
            client=bigquery_client(settings),
            location=settings.bigquery_location,
            max_files_per_job=settings.loader_batch_files,
            meter_provider=meter_provider,
        )
    from eventkit_storage.duckdb import DuckDBWarehouseLoader

    return DuckDBWarehouseLoader(
        settings.duckdb_path,
        table=settings.warehouse_table,
        lock_timeout=settings.lock_timeout,
        meter_provider=meter_provider,
    )


def replay_adapter(settings: LoaderSettings) -> EndpointAdapter:
    """The adapter a replayed dead letter goes through: the collector's, with the rules file.

    Each event is adapted by its endpoint's adapter (eventkit_validators' endpoint table), and
    the rules file (EVENTKIT_RULES_FILE), when set, applies on top, exactly as in the collector.
    """
    rules_file = settings.rules_file
    if rules_file is not None and not rules_file.is_file():
        raise ConfigurationError(
            f"rules file {str(rules_file)!r} does not exist: fix EVENTKIT_RULES_FILE / --rules-file"
        )
    return EndpointAdapter(max_event_bytes=settings.max_event_bytes, rules_file=rules_file)
