"""BigQuery warehouse: Parquet files in GCS loaded with load jobs (extra ``[bigquery]``).

Exactly once, without transactions across a load job and a ledger write:

1. The ledger table (``_eventkit_loaded_files``, append-only) is read first: files with a
   ``loaded`` row are skipped.
2. Files go in batches (up to ``max_files_per_job`` URIs per load job). Before a batch's job is
   submitted, one ``pending`` row per file names the batch (the id of its first attempt), so that a
   restarted loader rebuilds exactly the same batch, whatever other files arrived meanwhile.
3. Job ids are deterministic: :func:`~eventkit_storage.warehouse.batch_load_job_id` of the
   batch's ``(uri, generation)`` pairs and an attempt number. Submitting an id that exists answers
   409 Conflict: the loader then fetches that job (``client.get_job``) and waits for it instead of
   loading again. A job that failed makes the loader try ``attempt + 1``; attempt ``n + 1`` is only
   ever submitted after attempt ``n`` was seen failed, so walking the attempts from 0 always finds
   the one job that may have loaded the batch.
4. When the job is done, one ``loaded`` row per file is appended.

A loader killed anywhere leaves either nothing, or ``pending`` rows whose batch is redone on the
next pass (its job found by id: loaded once), or ``loaded`` rows. The ``events`` view removes the
duplicates that at-least-once storage can still produce (one event in two files).

One loader per table at a time: two loaders loading the same files concurrently may both load a
batch composed differently by each.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final

from eventkit_core.errors import ConfigurationError, WarehouseError, WarehouseMissingError
from eventkit_core.protocols import LoadReport
from google.api_core import exceptions as api_exceptions
from google.cloud import bigquery
from opentelemetry.metrics import MeterProvider

from eventkit_storage.identity import IdentityConfig, PassStats, run_identity_pass
from eventkit_storage.schema import BIGQUERY_TYPES, EVENT_SCHEMA
from eventkit_storage.warehouse import (
    ADDED_COLUMNS,
    BIGQUERY_LEDGER_FIELDS,
    DEAD_LETTER_COLUMNS,
    DEAD_LETTERS_TABLE,
    IDENTITY_TABLES,
    LEDGER_TABLE,
    LoaderMetrics,
    batch_load_job_id,
    check_dataset_name,
    check_project_id,
    check_table_name,
    split_generation,
    views_sql,
)

__all__ = ["BigQueryWarehouseLoader"]

#: A batch whose load jobs failed this many times is reported failed without a new attempt.
MAX_ATTEMPTS: Final = 20
_HTTP_TIMEOUT: Final = 60.0

Key = tuple[str, str]  # (uri without #generation, generation or "")


@dataclass
class _Pass:
    """What one load pass did, by file key."""

    loaded: list[Key] = field(default_factory=list)
    failed: list[Key] = field(default_factory=list)
    rows: int = 0


class BigQueryWarehouseLoader:
    """Loads Parquet files from GCS into ``project_id.dataset.table`` (a WarehouseLoader).

    URIs are ``gs://bucket/object``, optionally ``gs://bucket/object#generation`` (the GCS object
    generation then enters the job id and the ledger; the job loads ``gs://bucket/object``).
    """

    def __init__(
        self,
        project_id: str,
        dataset: str,
        table: str = "raw_events",
        *,
        client: bigquery.Client | None = None,
        location: str | None = None,
        ledger_table: str = LEDGER_TABLE,
        job_timeout: float = 300.0,
        partition_and_cluster: bool = True,
        max_files_per_job: int = 1000,
        retry_deadline: float = 60.0,
        meter_provider: MeterProvider | None = None,
    ) -> None:
        if not 1 <= max_files_per_job <= 10_000:
            raise ConfigurationError(
                f"max_files_per_job must be 1-10000 (BigQuery's limit), not {max_files_per_job}"
            )
        if job_timeout <= 0 or retry_deadline <= 0:
            raise ConfigurationError("job_timeout and retry_deadline must be > 0 seconds")
        self.project_id = check_project_id(project_id)
        self.dataset = check_dataset_name(dataset)
        self.table = check_table_name(table)
        if ledger_table != LEDGER_TABLE:
            check_table_name(ledger_table)
        self.ledger_table = ledger_table
        self.location = location
        self.job_timeout = job_timeout
        self.partition_and_cluster = partition_and_cluster
        self.max_files_per_job = max_files_per_job
        self.dataset_ref = f"{self.project_id}.{self.dataset}"
        self.table_ref = f"{self.dataset_ref}.{self.table}"
        self.ledger_ref = f"{self.dataset_ref}.{self.ledger_table}"
        self._client = client
        self.retry_deadline = retry_deadline
        self._retry = bigquery.DEFAULT_RETRY.with_deadline(retry_deadline)
        self._metrics = LoaderMetrics("bigquery", meter_provider)
        self._pass_lock = threading.Lock()
        self._schema_ready = False
        # The table the current pass loads into (set under _pass_lock): raw or dead letters.
        self._target_ref = self.table_ref

    @property
    def client(self) -> bigquery.Client:
        """The BigQuery client (made on first use with the default credentials if none given)."""
        if self._client is None:
            self._client = bigquery.Client(project=self.project_id, location=self.location)
        return self._client

    # ---------------------------------------------------------------------------------- schema

    async def ensure_schema(self) -> None:
        """Create the dataset, the table, the ledger and the views when missing (idempotent).

        The table is partitioned by day on ``timestamp`` and clustered by ``stream, type``
        (unless ``partition_and_cluster=False``). A view whose definition differs from this
        version's is replaced.
        """
        await asyncio.to_thread(self._locked_ensure_schema)

    def _locked_ensure_schema(self) -> None:
        with self._pass_lock:
            self._ensure_schema_sync()

    def _ensure_schema_sync(self) -> None:
        client = self.client
        try:
            dataset = bigquery.Dataset(self.dataset_ref)
            if self.location:
                dataset.location = self.location
            client.create_dataset(dataset, exists_ok=True, retry=self._retry, timeout=_HTTP_TIMEOUT)

            table = bigquery.Table(self.table_ref, schema=_event_schema())
            table.description = "eventkit events: one row per stored row; see the events view"
            if self.partition_and_cluster:
                table.time_partitioning = bigquery.TimePartitioning(
                    type_=bigquery.TimePartitioningType.DAY, field="timestamp"
                )
                table.clustering_fields = ["stream", "type"]
            client.create_table(table, exists_ok=True, retry=self._retry, timeout=_HTTP_TIMEOUT)
            self._migrate_table(client)

            ledger = bigquery.Table(
                self.ledger_ref,
                schema=[
                    bigquery.SchemaField(name, type_, mode=mode)
                    for name, type_, mode in BIGQUERY_LEDGER_FIELDS
                ],
            )
            ledger.description = "eventkit: files loaded into the raw table (append-only)"
            client.create_table(ledger, exists_ok=True, retry=self._retry, timeout=_HTTP_TIMEOUT)
            self._create_identity_tables(client)
            dead = bigquery.Table(
                f"{self.dataset_ref}.{DEAD_LETTERS_TABLE}",
                schema=[
                    bigquery.SchemaField(name, type_, mode=mode)
                    for name, type_, mode in DEAD_LETTER_COLUMNS
                ],
            )
            dead.description = "eventkit dead letters: one row per stored dead letter"
            client.create_table(dead, exists_ok=True, retry=self._retry, timeout=_HTTP_TIMEOUT)

            # Views through DDL, not the tables API: local-bigquery (the emulator the tests use)
            # keeps an updated `view_query` as metadata only; `CREATE OR REPLACE VIEW` works on
            # both. Views depend on `events`, which comes first.
            for view, select in views_sql("bigquery", self.table_ref).items():
                ref = f"{self.dataset_ref}.{view}"
                try:
                    existing = client.get_table(ref, retry=self._retry, timeout=_HTTP_TIMEOUT)
                except api_exceptions.NotFound:
                    existing = None
                if existing is not None and (existing.view_query or "").strip() == select:
                    continue
                self._run_query(f"CREATE OR REPLACE VIEW `{ref}` AS\n{select}")
        except api_exceptions.GoogleAPIError as exc:
            self._metrics.error()
            raise WarehouseError(
                f"cannot create the BigQuery schema in {self.dataset_ref}: {exc}. Check that the "
                "project exists and the credentials may create datasets, tables and views "
                "(or run the DDL of eventkit_storage.warehouse.bigquery_ddl() yourself)"
            ) from exc
        self._schema_ready = True

    def _migrate_table(self, client: bigquery.Client) -> None:
        """Bring a raw table made by an older version to today's columns: ``extras`` added,
        ``payload`` NULLABLE (both allowed by a schema update; the rows stay as they are)."""
        table = client.get_table(self.table_ref, retry=self._retry, timeout=_HTTP_TIMEOUT)
        wanted = {f.name: f for f in _event_schema()}
        schema: list[bigquery.SchemaField] = []
        changed = False
        for existing in table.schema:
            target = wanted.get(existing.name)
            if target is not None and existing.mode == "REQUIRED" and target.mode == "NULLABLE":
                existing = bigquery.SchemaField(
                    existing.name,
                    existing.field_type,
                    mode="NULLABLE",
                    description=existing.description,
                )
                changed = True
            schema.append(existing)
        present = {f.name for f in schema}
        for name in ADDED_COLUMNS:
            if name not in present:
                schema.append(wanted[name])
                changed = True
        if changed:
            table.schema = schema
            client.update_table(table, ["schema"], retry=self._retry, timeout=_HTTP_TIMEOUT)

    def _create_identity_tables(self, client: bigquery.Client) -> None:
        from eventkit_storage.identity_bigquery import identity_schema

        for name in IDENTITY_TABLES:  # before the views: `events` joins `identities`
            table = bigquery.Table(f"{self.dataset_ref}.{name}", schema=identity_schema(name))
            table.description = f"eventkit identity resolution: {name}"
            client.create_table(table, exists_ok=True, retry=self._retry, timeout=_HTTP_TIMEOUT)

    # ------------------------------------------------------------------------------ identities

    async def resolve_identities(
        self, config: IdentityConfig | None = None, *, chunk_events: int = 5_000
    ) -> PassStats:
        """The identity pass (see :mod:`eventkit_storage.identity`) over this dataset."""
        return await asyncio.to_thread(self._resolve_sync, config, chunk_events)

    def _resolve_sync(self, config: IdentityConfig | None, chunk_events: int) -> PassStats:
        from eventkit_storage.identity_bigquery import BigQueryIdentityStore

        with self._pass_lock:
            if not self._schema_ready:
                self._ensure_schema_sync()
            try:
                return run_identity_pass(
                    BigQueryIdentityStore(self), config, chunk_events=chunk_events
                )
            except api_exceptions.GoogleAPIError as exc:
                self._metrics.error()
                raise WarehouseError(f"identity pass on {self.dataset_ref} failed: {exc}") from exc

    # ----------------------------------------------------------------------------------- loads

    async def load_files(self, uris: Sequence[str]) -> LoadReport:
        """Load each ``gs://`` Parquet file not loaded yet, once (WRITE_APPEND batch loads).

        Batches left ``pending`` by a killed loader are finished first (their files are reported
        as loaded by this pass). Files whose load fails are reported in ``failed``; errors reaching
        BigQuery itself (ledger, schema) raise :class:`~eventkit_core.WarehouseError`.
        """
        return await asyncio.to_thread(self._load_files_sync, list(uris))

    async def load_dead_letter_files(self, uris: Sequence[str]) -> LoadReport:
        """Load dead-letter files into ``dead_letters`` like :meth:`load_files` (same ledger:
        each file once, a killed pass's batch finished by the next one)."""
        target = f"{self.dataset_ref}.{DEAD_LETTERS_TABLE}"
        return await asyncio.to_thread(self._load_files_sync, list(uris), target)

    def _load_files_sync(self, uris: list[str], target: str | None = None) -> LoadReport:
        given: dict[Key, list[str]] = {}
        failed_uris: list[str] = []
        for uri in uris:
            base, generation = split_generation(uri)
            if not base.startswith("gs://") or len(base) <= len("gs://") or "/" not in base[5:]:
                failed_uris.append(uri)
                self._metrics.error()
                continue
            given.setdefault((base, generation), []).append(uri)
        with self._pass_lock:
            if not self._schema_ready:
                self._ensure_schema_sync()
            self._target_ref = self.table_ref if target is None else target
            try:
                done = self._run_pass(list(given))
            except api_exceptions.GoogleAPIError as exc:
                self._metrics.error()
                raise WarehouseError(f"load pass into {self._target_ref} failed: {exc}") from exc
            finally:
                self._target_ref = self.table_ref

        def uris_of(keys: Sequence[Key]) -> list[str]:
            out: list[str] = []
            for key in keys:
                out += given.get(key) or [key[0] + (f"#{key[1]}" if key[1] else "")]
            return out

        loaded = uris_of(done.loaded)
        failed = failed_uris + uris_of(done.failed)
        handled = set(loaded) | set(failed)
        skipped = [uri for uri in uris if uri not in handled]
        return LoadReport(
            loaded=tuple(loaded), skipped=tuple(skipped), failed=tuple(failed), rows=done.rows
        )

    def _run_pass(self, keys: list[Key]) -> _Pass:
        result = _Pass()
        state = self._ledger_state([uri for uri, _ in keys])
        # 1. Finish the batches a previous loader left pending (same batch -> same job ids).
        pending: dict[str, list[Key]] = {}
        for key, (status, job_id) in state.items():
            if status == "pending":
                pending.setdefault(job_id, []).append(key)
        for batch in pending.values():
            self._load_batch(sorted(batch), result, intent_recorded=True)
        busy = set(result.loaded) | set(result.failed)
        # 2. New files, in batches.
        todo = [
            key
            for key in dict.fromkeys(keys)
            if key not in busy and state.get(key, ("", ""))[0] != "loaded"
        ]
        for start in range(0, len(todo), self.max_files_per_job):
            self._load_batch(todo[start : start + self.max_files_per_job], result)
        return result

    def _load_batch(
        self, batch: list[Key], result: _Pass, *, intent_recorded: bool = False
    ) -> None:
        """Load ``batch`` once; on a failed job, retry its files one per job (a bad file)."""
        if not intent_recorded:
            self._record(batch, batch_load_job_id(batch), "pending")
        outcome, rows = self._run_job(batch)
        if outcome == "done":
            self._record(batch, batch_load_job_id(batch), "loaded", rows)
            result.loaded += batch
            result.rows += rows
            self._metrics.loaded(len(batch))
        elif outcome == "failed" and len(batch) > 1:
            for key in batch:
                self._load_batch([key], result)
        else:
            if outcome == "failed":  # "running": left pending, the next pass waits for it
                self._record(batch, batch_load_job_id(batch), "failed")
            result.failed += batch
            self._metrics.error(len(batch))

    def _run_job(self, batch: list[Key]) -> tuple[str, int]:
        """Walk the attempts of ``batch``'s job id: ("done", rows), ("failed", 0), ("running", 0)."""
        config = bigquery.LoadJobConfig(
            source_format=bigquery.SourceFormat.PARQUET,
            write_disposition=bigquery.WriteDisposition.WRITE_APPEND,
            create_disposition=bigquery.CreateDisposition.CREATE_NEVER,
        )
        # Newest folder (hour) first: a job mixing files written before ``extras`` existed with
        # newer ones then starts with a new one (local-bigquery takes the first file's columns
        # for the whole job; BigQuery maps each Parquet file's columns by name).
        sources = sorted((uri for uri, _ in batch), reverse=True)
        for attempt in range(MAX_ATTEMPTS):
            job_id = batch_load_job_id(batch, attempt)
            submitted = True
            job: bigquery.LoadJob | bigquery.QueryJob | bigquery.CopyJob | Any
            try:
                job = self.client.load_table_from_uri(
                    sources,
                    self._target_ref,
                    job_id=job_id,
                    job_config=config,
                    location=self.location,
                    retry=self._retry,
                    timeout=_HTTP_TIMEOUT,
                )
            except api_exceptions.Conflict:
                # This batch was submitted before (a loader killed before its ledger update):
                # wait for that job rather than loading the files again.
                submitted = False
                job = self.client.get_job(
                    job_id, location=self.location, retry=self._retry, timeout=_HTTP_TIMEOUT
                )
            try:
                job.result(retry=self._retry, timeout=self.job_timeout)
            except concurrent.futures.TimeoutError:
                return "running", 0
            except api_exceptions.GoogleAPICallError:
                pass  # the job failed: error_result says why
            if job.error_result is None and job.state == "DONE":
                rows = int(getattr(job, "output_rows", None) or 0)
                return "done", rows
            if submitted:
                return "failed", 0  # a new attempt failed: report it, try again next pass
        return "failed", 0

    async def mark_loaded(self, files: Mapping[str, int]) -> None:
        """Record ``files`` (``gs://`` URI -> row count) as loaded without loading them.

        For files whose rows the table holds already: what a lifecycle rewrite
        (:mod:`eventkit_storage.rewrite`) makes of files that were loaded. Idempotent: the
        ledger keeps the ``loaded`` row of a file however often it is recorded.
        """
        await asyncio.to_thread(self._mark_loaded_sync, dict(files))

    def _mark_loaded_sync(self, files: dict[str, int]) -> None:
        with self._pass_lock:
            if not self._schema_ready:
                self._ensure_schema_sync()
            for uri, count in sorted(files.items()):
                key = split_generation(uri)
                self._record([key], f"mark-{batch_load_job_id([key])}", "loaded", count)

    async def delete_received_before(self, cutoffs: Mapping[str, datetime]) -> dict[str, int]:
        """Retention: delete each stream's rows (events and dead letters) received before its
        cutoff (one DML statement per table). Rows deleted per table."""
        return await asyncio.to_thread(self._delete_before_sync, dict(cutoffs))

    def _delete_before_sync(self, cutoffs: dict[str, datetime]) -> dict[str, int]:
        with self._pass_lock:
            if not self._schema_ready:
                self._ensure_schema_sync()
            refs = {
                self.table: self.table_ref,
                DEAD_LETTERS_TABLE: f"{self.dataset_ref}.{DEAD_LETTERS_TABLE}",
            }
            return {
                name: sum(self._delete_stream(ref, s, c) for s, c in sorted(cutoffs.items()))
                for name, ref in refs.items()
            }

    def _delete_stream(self, ref: str, stream: str, cutoff: datetime) -> int:
        config = bigquery.QueryJobConfig(
            query_parameters=[
                bigquery.ScalarQueryParameter("stream", "STRING", stream),
                bigquery.ScalarQueryParameter("cutoff", "TIMESTAMP", cutoff),
            ]
        )
        job = self.client.query(
            f"DELETE FROM `{ref}` WHERE stream = @stream AND received_at < @cutoff",
            job_config=config,
            location=self.location,
            retry=self._retry,
            timeout=_HTTP_TIMEOUT,
        )
        job.result(retry=self._retry, timeout=self.job_timeout)
        return int(job.num_dml_affected_rows or 0)

    def _record(
        self, batch: Sequence[Key], job_id: str, state: str, rows: int | None = None
    ) -> None:
        files = [
            bigquery.StructQueryParameter(
                None,
                bigquery.ScalarQueryParameter("uri", "STRING", uri),
                bigquery.ScalarQueryParameter("generation", "STRING", generation),
            )
            for uri, generation in batch
        ]
        self._run_query(
            f"INSERT INTO `{self.ledger_ref}` "
            "(uri, generation, job_id, state, job_rows, recorded_at)\n"
            "SELECT f.uri, f.generation, @job_id, @state, @job_rows, CURRENT_TIMESTAMP()\n"
            "FROM UNNEST(@files) AS f",
            [
                bigquery.ArrayQueryParameter("files", "STRUCT", files),
                bigquery.ScalarQueryParameter("job_id", "STRING", job_id),
                bigquery.ScalarQueryParameter("state", "STRING", state),
                bigquery.ScalarQueryParameter("job_rows", "INT64", rows),
            ],
        )

    def _ledger_state(self, uris: list[str]) -> dict[Key, tuple[str, str]]:
        """(state, job_id) of the given files and of every file with a pending row."""
        rows = self._run_query(
            "SELECT uri, generation, state, job_id,\n"
            "  ROW_NUMBER() OVER (PARTITION BY uri, generation\n"
            "    ORDER BY state = 'loaded' DESC, recorded_at DESC) AS n\n"
            f"FROM `{self.ledger_ref}`\n"
            "WHERE uri IN UNNEST(@uris)\n"
            f"  OR uri IN (SELECT uri FROM `{self.ledger_ref}` WHERE state = 'pending')",
            [bigquery.ArrayQueryParameter("uris", "STRING", uris)],
        )
        return {
            (str(row["uri"]), str(row["generation"])): (str(row["state"]), str(row["job_id"]))
            for row in rows
            if row["n"] == 1
        }

    def loaded_files(self) -> set[str]:
        """Every loaded file: ``gs://`` URIs (with ``#generation`` when loaded with one).

        Raises :class:`~eventkit_core.WarehouseMissingError` when the dataset or the ledger is
        not created yet.
        """
        try:
            rows = self._run_query(
                f"SELECT DISTINCT uri, generation FROM `{self.ledger_ref}` WHERE state = 'loaded'"
            )
        except api_exceptions.NotFound as exc:
            raise WarehouseMissingError(
                f"{self.ledger_ref} does not exist yet: run a load pass or create the table"
            ) from exc
        return {
            str(row["uri"]) + (f"#{row['generation']}" if row["generation"] else "") for row in rows
        }

    # ---------------------------------------------------------------------------------- helpers

    def _run_query(self, sql: str, parameters: Sequence[Any] = ()) -> list[bigquery.Row]:
        config = bigquery.QueryJobConfig(query_parameters=list(parameters))
        job = self.client.query(
            sql,
            job_config=config,
            location=self.location,
            retry=self._retry,
            job_retry=None,
            timeout=_HTTP_TIMEOUT,
        )
        return list(job.result(retry=self._retry, timeout=self.job_timeout))

    def health_check(self) -> bool:
        """True when the dataset answers (a short metadata call)."""
        try:
            self.client.get_dataset(
                self.dataset_ref,
                retry=self._retry.with_deadline(min(10.0, self.retry_deadline)),
                timeout=10.0,
            )
        except Exception:
            return False
        return True


def _event_schema() -> list[bigquery.SchemaField]:
    return [
        bigquery.SchemaField(
            f.name, BIGQUERY_TYPES[f.name], mode="NULLABLE" if f.nullable else "REQUIRED"
        )
        for f in EVENT_SCHEMA
    ]
