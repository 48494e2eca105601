"""Backends chosen by settings: the event/error stores, the warehouse and the replay adapters.

Heavy clients (google-cloud-*, duckdb) are imported only when their backend is chosen.
"""

from __future__ import annotations

import logging
from typing import Any

from eventkit_core import AdaptError, AdaptResult, ConfigurationError, RawEvent, SchemaAdapter
from opentelemetry.metrics import MeterProvider

from eventkit_loader.settings import LoaderSettings

log = logging.getLogger("eventkit_loader")


def event_store(settings: LoaderSettings, meter_provider: MeterProvider | None = None) -> Any:
    """The event store the collector writes to (a directory or a GCS bucket)."""
    if settings.event_store == "gcs":
        from eventkit_storage.gcs import GCSEventStore

        assert settings.gcp_gcs_bucket is not None  # settings.check()
        return GCSEventStore(
            settings.gcp_gcs_bucket,
            prefix=settings.gcs_prefix,
            project=settings.gcp_project_id,
            meter_provider=meter_provider,
        )
    from eventkit_storage.local import LocalEventStore

    return LocalEventStore(settings.data_dir, meter_provider=meter_provider)


def error_store(settings: LoaderSettings, meter_provider: MeterProvider | None = None) -> Any:
    """The dead-letter store beside the event store."""
    if settings.event_store == "gcs":
        from eventkit_storage.gcs import GCSErrorStore

        assert settings.gcp_gcs_bucket is not None  # settings.check()
        return GCSErrorStore(
            settings.gcp_gcs_bucket,
            prefix=settings.gcs_prefix,
            project=settings.gcp_project_id,
            meter_provider=meter_provider,
        )
    from eventkit_storage.local import LocalErrorStore

    return LocalErrorStore(settings.data_dir, meter_provider=meter_provider)


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


#: RawEvent.source the collector gives a whole body that was JSON but not of its endpoint's shape.
INVALID_BATCH = "invalid_batch"


class ReplayAdapter:
    """Adapts a replayed raw event the way the collector did when it first arrived.

    ``/collect/{stream}`` events (source ``collect``) go through the GenericAdapter, Segment calls
    through the SegmentSchemaAdapter; the rules file (EVENTKIT_RULES_FILE), when set, is applied
    on top of both, exactly as the collector applies it. A body that was not of its endpoint's
    shape (source ``invalid_batch``) cannot pass: it keeps failing with that code.
    """

    def __init__(self, settings: LoaderSettings) -> None:
        from eventkit_validators import (
            GenericAdapter,
            RulesAdapter,
            SegmentSchemaAdapter,
            load_rules,
        )

        limit = settings.max_event_bytes
        self._generic: SchemaAdapter = GenericAdapter(max_event_bytes=limit)
        self._segment: SchemaAdapter = SegmentSchemaAdapter(max_event_bytes=limit)
        if settings.rules_file is not None:
            if not settings.rules_file.is_file():
                raise ConfigurationError(
                    f"rules file {str(settings.rules_file)!r} does not exist: fix "
                    "EVENTKIT_RULES_FILE / --rules-file"
                )
            rules = load_rules(settings.rules_file)
            self._generic = RulesAdapter(self._generic, rules)
            self._segment = RulesAdapter(self._segment, rules)
        self._invalid = _Refuse(
            AdaptError(
                code=INVALID_BATCH,
                message="a /v1/batch body must be a JSON object with a 'batch' array of event "
                "objects",
            )
        )

    def adapter_for(self, raw: RawEvent) -> SchemaAdapter:
        if raw.source == "collect":
            return self._generic
        if raw.source == INVALID_BATCH:
            return self._invalid
        return self._segment


class _Refuse:
    def __init__(self, error: AdaptError) -> None:
        self._result = AdaptResult(error=error)

    def adapt(self, raw: RawEvent) -> AdaptResult:
        return self._result
