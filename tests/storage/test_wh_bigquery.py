"""BigQuery warehouse specifics, against local-bigquery reading gs:// from fake-gcs-server."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import pytest
from eventkit_core import ConfigurationError
from eventkit_storage.bigquery import BigQueryWarehouseLoader
from eventkit_storage.warehouse import VIEW_NAMES, batch_load_job_id, bigquery_ddl
from google.api_core.exceptions import GoogleAPICallError
from google.cloud import bigquery

from tests.emulators import BigQueryEmulator, short_retry
from tests.storage.test_wh_conformance import BigQueryBackend, event_row, event_table


@pytest.fixture
def backend(
    bigquery_emulator: BigQueryEmulator, gcs_bucket: str, bigquery_dataset: str
) -> Iterator[BigQueryBackend]:
    chosen = BigQueryBackend(bigquery_emulator, gcs_bucket, bigquery_dataset)
    with contextlib.closing(chosen.client):
        yield chosen


def raw_ids(backend: BigQueryBackend) -> list[str]:
    return [str(row[0]) for row in backend.rows("raw_events", "message_id", "message_id")]


def start_load(backend: BigQueryBackend, uris: list[str], job_id: str) -> Any:
    """Submit a load job with ``job_id`` the way the loader would (nothing in the ledger)."""
    return backend.client.load_table_from_uri(
        uris,
        backend.loader.table_ref,
        job_id=job_id,
        job_config=bigquery.LoadJobConfig(
            source_format=bigquery.SourceFormat.PARQUET,
            write_disposition=bigquery.WriteDisposition.WRITE_APPEND,
        ),
        retry=short_retry(),
    )


@pytest.mark.integration
async def test_ensure_schema_partitions_by_day_and_clusters(backend: BigQueryBackend) -> None:
    await backend.loader.ensure_schema()
    table = backend.client.get_table(backend.loader.table_ref, retry=short_retry())
    assert table.time_partitioning.type_ == "DAY"
    assert table.time_partitioning.field == "timestamp"
    assert table.clustering_fields == ["stream", "type"]
    modes = {field.name: field.mode for field in table.schema}
    assert (modes["message_id"], modes["user_id"]) == ("REQUIRED", "NULLABLE")
    ledger = backend.client.get_table(backend.loader.ledger_ref, retry=short_retry())
    assert [field.name for field in ledger.schema][:4] == ["uri", "generation", "job_id", "state"]
    for view in VIEW_NAMES:
        got = backend.client.get_table(f"{backend.loader.dataset_ref}.{view}", retry=short_retry())
        assert got.table_type == "VIEW", view


@pytest.mark.integration
async def test_a_batch_left_pending_is_rebuilt_as_it_was_even_with_new_files(
    backend: BigQueryBackend,
) -> None:
    """Killed after submitting a batch and before recording it; the next pass gets more files."""
    await backend.loader.ensure_schema()
    a = backend.put("a.parquet", event_table([event_row("a1"), event_row("a2")]))
    b = backend.put("b.parquet", event_table([event_row("b1")]))
    c = backend.put("c.parquet", event_table([event_row("c1")]))
    batch = [(a, ""), (b, "")]
    backend.loader._record(batch, batch_load_job_id(batch), "pending")
    start_load(backend, [a, b], batch_load_job_id(batch)).result(timeout=60)

    report = await backend.loader.load_files([c, b])  # a different batch would be [b, c]

    assert set(report.loaded) == {a, b, c}
    assert report.rows == 4
    assert raw_ids(backend) == ["a1", "a2", "b1", "c1"]
    assert backend.loader.loaded_files() == {a, b, c}
    assert (await backend.loader.load_files([a, b, c])).skipped == (a, b, c)


@pytest.mark.integration
async def test_a_batch_pending_but_never_submitted_is_loaded_once(
    backend: BigQueryBackend,
) -> None:
    await backend.loader.ensure_schema()
    a = backend.put("a.parquet", event_table([event_row("a1")]))
    backend.loader._record([(a, "")], batch_load_job_id([(a, "")]), "pending")

    report = await backend.loader.load_files([])

    assert report.loaded == (a,)
    assert raw_ids(backend) == ["a1"]


@pytest.mark.integration
async def test_a_failed_job_gets_the_next_attempt_id(backend: BigQueryBackend) -> None:
    await backend.loader.ensure_schema()
    uri = f"gs://{backend.bucket}/events/late.parquet"
    failed = start_load(backend, [uri], batch_load_job_id([(uri, "")]))  # the file is not there yet
    with pytest.raises(GoogleAPICallError):
        failed.result(timeout=60)
    assert backend.put("late.parquet", event_table([event_row("m1")])) == uri

    report = await backend.loader.load_files([uri])

    assert report.loaded == (uri,)
    assert raw_ids(backend) == ["m1"]
    retried = backend.client.get_job(batch_load_job_id([(uri, "")], 1), retry=short_retry())
    assert (retried.state, retried.error_result) == ("DONE", None)


@pytest.mark.integration
async def test_uris_with_a_generation_enter_the_job_id_and_the_ledger(
    backend: BigQueryBackend,
) -> None:
    uri = backend.put("gen.parquet", event_table([event_row("m1")]))
    blob = backend.emulator.gcs.client().bucket(backend.bucket).get_blob("events/gen.parquet")
    assert blob is not None
    versioned = f"{uri}#{blob.generation}"

    report = await backend.loader.load_files([versioned])

    assert report.loaded == (versioned,)
    assert backend.loader.loaded_files() == {versioned}
    job = backend.client.get_job(batch_load_job_id([(uri, blob.generation)]), retry=short_retry())
    assert job.state == "DONE"
    assert (await backend.loader.load_files([versioned])).skipped == (versioned,)


@pytest.mark.integration
async def test_uris_that_are_not_gcs_objects_are_reported_failed(
    backend: BigQueryBackend,
) -> None:
    good = backend.put("ok.parquet", event_table([event_row("m1")]))
    report = await backend.loader.load_files(["/tmp/x.parquet", "gs://bucket-only", good])
    assert report.failed == ("/tmp/x.parquet", "gs://bucket-only")
    assert report.loaded == (good,)


@pytest.mark.integration
def test_the_ddl_script_runs_on_the_emulator(
    bigquery_emulator: BigQueryEmulator, bigquery_dataset: str
) -> None:
    client = bigquery_emulator.client()
    dataset = f"{bigquery_dataset}_ddl"
    with contextlib.closing(client):
        run_the_ddl_script(bigquery_emulator, client, dataset)


def run_the_ddl_script(emulator: BigQueryEmulator, client: bigquery.Client, dataset: str) -> None:
    bigquery_emulator = emulator
    try:
        script = bigquery_ddl(bigquery_emulator.project, dataset)
        client.query(script, retry=short_retry(), job_retry=None).result(timeout=60)
        client.query(script, retry=short_retry(), job_retry=None).result(timeout=60)  # again
        table = client.get_table(f"{bigquery_emulator.project}.{dataset}.raw_events")
        assert table.time_partitioning.field == "timestamp"
        assert table.clustering_fields == ["stream", "type"]
        rows = client.query(
            f"SELECT COUNT(*) AS n FROM `{bigquery_emulator.project}.{dataset}.users`",
            retry=short_retry(),
            job_retry=None,
        ).result(timeout=60)
        assert [row["n"] for row in rows] == [0]
    finally:
        client.delete_dataset(dataset, delete_contents=True, not_found_ok=True, retry=short_retry())


def test_health_check_is_false_when_bigquery_does_not_answer() -> None:
    from tests.emulators._common import anonymous_credentials, free_port

    client = bigquery.Client(
        project="test-project",
        credentials=anonymous_credentials(),
        client_options={"api_endpoint": f"http://127.0.0.1:{free_port()}"},
    )
    loader = BigQueryWarehouseLoader("test-project", "d", client=client, retry_deadline=1.0)
    assert loader.health_check() is False


def test_invalid_settings_are_rejected() -> None:
    with pytest.raises(ConfigurationError, match="dataset"):
        BigQueryWarehouseLoader("p-1", "bad-dataset")
    with pytest.raises(ConfigurationError, match="max_files_per_job"):
        BigQueryWarehouseLoader("p-1", "d", max_files_per_job=0)
