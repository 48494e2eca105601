"""BigQuery loader failure paths, against local-bigquery reading gs:// from fake-gcs-server.

A job that outlasts ``job_timeout`` is left pending and finished by the next pass; the attempts
of a batch run out; errors of BigQuery itself become ``WarehouseError``; a file that failed
loads on a later pass. The emulator runs every job to completion before answering, so a job
"still running" is made by :class:`HeldJobsClient`: the real client, talking to the emulator,
reporting chosen load jobs as RUNNING for as long as the test holds them.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import pytest
from eventkit_core import EventkitError, WarehouseError
from eventkit_storage.bigquery import MAX_ATTEMPTS, BigQueryWarehouseLoader
from eventkit_storage.warehouse import batch_load_job_id
from google.api_core.exceptions import GoogleAPICallError
from google.cloud import bigquery

from tests.emulators import BigQueryEmulator, short_retry
from tests.emulators._common import anonymous_credentials, free_port
from tests.storage.test_wh_bigquery import raw_ids, start_load
from tests.storage.test_wh_conformance import BigQueryBackend, event_row, event_table

pytestmark = pytest.mark.integration

# job_timeout while a job is held: the held job is polled this long. It also bounds the
# ledger queries of that pass, which the emulator answers slowly on a busy machine: not less.
HELD_TIMEOUT = 5.0


def load_job_id(uri: str, generation: int | str = "", attempt: int = 0) -> str:
    """The job id of a one-file batch (what the loader uses when it retries a file alone)."""
    return batch_load_job_id([(uri, generation)], attempt)


class HeldJobsClient(bigquery.Client):
    """A BigQuery client whose answers about the jobs in ``held`` say RUNNING (the emulator has
    in fact run them): the loader sees a job outlasting its timeout."""

    def __init__(self, emulator: BigQueryEmulator) -> None:
        super().__init__(
            project=emulator.project,
            credentials=anonymous_credentials(),
            client_options={"api_endpoint": emulator.endpoint},
        )
        self.held: set[str] = set()
        self.polls = 0

    def _call_api(  # type: ignore[override]
        self, retry: Any, span_name: Any = None, **kwargs: Any
    ) -> Any:
        response = super()._call_api(retry, span_name, **kwargs)
        if isinstance(response, dict) and "/jobs" in str(kwargs.get("path", "")):
            job_id = response.get("jobReference", {}).get("jobId")
            if job_id in self.held:
                self.polls += 1
                response = {**response, "status": {"state": "RUNNING"}}
        return response


@pytest.fixture
def held(
    bigquery_emulator: BigQueryEmulator, gcs_bucket: str, bigquery_dataset: str
) -> Iterator[tuple[BigQueryBackend, HeldJobsClient]]:
    backend = BigQueryBackend(bigquery_emulator, gcs_bucket, bigquery_dataset)
    client = HeldJobsClient(bigquery_emulator)
    backend.loader = BigQueryWarehouseLoader(
        bigquery_emulator.project, bigquery_dataset, client=client, job_timeout=HELD_TIMEOUT
    )
    with contextlib.closing(backend.client), contextlib.closing(client):
        yield backend, client


@pytest.fixture
def backend(
    bigquery_emulator: BigQueryEmulator, gcs_bucket: str, bigquery_dataset: str
) -> Iterator[BigQueryBackend]:
    chosen = BigQueryBackend(bigquery_emulator, gcs_bucket, bigquery_dataset)
    with contextlib.closing(chosen.client):
        yield chosen


async def test_a_job_outlasting_its_timeout_is_left_pending_then_finished(
    held: tuple[BigQueryBackend, HeldJobsClient],
) -> None:
    backend, client = held
    loader = backend.loader
    await loader.ensure_schema()
    a = backend.put("a.parquet", event_table([event_row("a1"), event_row("a2")]))
    client.held.add(load_job_id(a))

    report = await loader.load_files([a])

    assert report.failed == (a,)  # not loaded as far as this pass knows
    assert report.loaded == ()
    assert client.polls >= 2  # submitted, then polled until job_timeout
    assert loader._ledger_state([a]) == {(a, ""): ("pending", load_job_id(a))}
    assert loader.loaded_files() == set()

    client.held.clear()  # the job "finishes"
    loader.job_timeout = 60.0  # nothing is held any more: the usual patience
    b = backend.put("b.parquet", event_table([event_row("b1")]))
    report = await loader.load_files([b])  # the pending batch first, then the new file

    assert set(report.loaded) == {a, b}
    assert report.rows == 3
    assert raw_ids(backend) == ["a1", "a2", "b1"]  # the held job's rows once: found by its id
    assert loader.loaded_files() == {a, b}
    assert (await loader.load_files([a, b])).skipped == (a, b)


async def test_when_every_attempt_failed_the_file_is_reported_failed(
    backend: BigQueryBackend,
) -> None:
    await backend.loader.ensure_schema()
    uri = f"gs://{backend.bucket}/events/never.parquet"
    for attempt in range(MAX_ATTEMPTS):  # earlier loaders tried while the file was missing
        job = start_load(backend, [uri], load_job_id(uri, "", attempt))
        with pytest.raises(GoogleAPICallError):
            job.result(timeout=60)
    backend.put("never.parquet", event_table([event_row("m1")]))

    report = await backend.loader.load_files([uri])

    assert report.failed == (uri,)
    assert report.loaded == ()
    assert raw_ids(backend) == []
    state, _job = backend.loader._ledger_state([uri])[(uri, "")]
    assert state == "failed"
    with pytest.raises(GoogleAPICallError):  # no attempt past the last one was submitted
        backend.client.get_job(load_job_id(uri, "", MAX_ATTEMPTS), retry=short_retry())


async def test_a_failed_file_loads_on_a_later_pass_and_its_batch_mate_at_once(
    backend: BigQueryBackend,
) -> None:
    await backend.loader.ensure_schema()
    good = backend.put("good.parquet", event_table([event_row("g1")]))
    late = f"gs://{backend.bucket}/events/late.parquet"  # not written yet

    first = await backend.loader.load_files([good, late])

    # The batch's job failed; its files were retried one per job: only the bad one failed.
    assert first.loaded == (good,)
    assert first.failed == (late,)
    batch = sorted([(good, ""), (late, "")])
    failed_batch = backend.client.get_job(batch_load_job_id(batch), retry=short_retry())
    assert failed_batch.error_result is not None
    assert backend.loader._ledger_state([late])[(late, "")][0] == "failed"

    backend.put("late.parquet", event_table([event_row("l1"), event_row("l2")]))
    second = await backend.loader.load_files([good, late])

    assert second.loaded == (late,)
    assert second.skipped == (good,)
    assert second.rows == 2
    assert raw_ids(backend) == ["g1", "l1", "l2"]
    assert backend.loader.loaded_files() == {good, late}
    retried = backend.client.get_job(load_job_id(late, "", 1), retry=short_retry())
    assert (retried.state, retried.error_result) == ("DONE", None)


async def test_bigquery_errors_during_a_pass_raise_warehouse_error(
    backend: BigQueryBackend, bigquery_emulator: BigQueryEmulator
) -> None:
    await backend.loader.ensure_schema()
    a = backend.put("a.parquet", event_table([event_row("a1")]))
    # The dataset goes away behind the loader's back: the ledger read answers 404.
    backend.client.delete_dataset(
        backend.dataset, delete_contents=True, not_found_ok=True, retry=short_retry()
    )

    with pytest.raises(WarehouseError, match=r"load pass into .* failed") as raised:
        await backend.loader.load_files([a])

    assert isinstance(raised.value, EventkitError)
    assert isinstance(raised.value.__cause__, GoogleAPICallError)


async def test_an_unreachable_bigquery_raises_warehouse_error() -> None:
    client = bigquery.Client(
        project="test-project",
        credentials=anonymous_credentials(),
        client_options={"api_endpoint": f"http://127.0.0.1:{free_port()}"},
    )
    loader = BigQueryWarehouseLoader("test-project", "d", client=client, retry_deadline=1.0)
    with contextlib.closing(client), pytest.raises(WarehouseError, match="schema"):
        await loader.load_files(["gs://bucket/events/a.parquet"])
