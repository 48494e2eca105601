"""The scale-out setup: Parquet in GCS (fake-gcs-server) -> BigQuery (local-bigquery).

The loader runs as a real process pointed at both emulators; files are written by the storage
library's GCSEventStore, exactly as the collector writes them.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
from collections import Counter

import pytest
from eventkit_core import TypedEvent
from eventkit_storage.gcs import GCSEventStore

from tests.emulators import BigQueryEmulator, short_retry
from tests.loader.ld_support import in_files, loader_env, loader_process, run_loader, track_events

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def _store(emulator: BigQueryEmulator, bucket: str, files: list[list[TypedEvent]]) -> None:
    store = GCSEventStore(bucket, prefix="pre", client=emulator.gcs.client())

    async def write() -> None:
        for events in files:
            await store.store_batch(events)

    asyncio.run(write())


def _args(emulator: BigQueryEmulator, bucket: str, dataset: str) -> list[str]:
    return [
        *("--event-store", "gcs", "--bucket", bucket, "--prefix", "pre"),
        *("--project", emulator.project, "--dataset", dataset),
    ]


def _env(emulator: BigQueryEmulator) -> dict[str, str]:
    return loader_env(
        EVENTKIT_BIGQUERY_API_ENDPOINT=emulator.endpoint,
        STORAGE_EMULATOR_HOST=emulator.gcs.endpoint,
    )


def _ids(emulator: BigQueryEmulator, dataset: str, view: str) -> Counter[str]:
    with contextlib.closing(emulator.client()) as client:
        rows = client.query(
            f"SELECT message_id FROM `{emulator.project}.{dataset}.{view}`", retry=short_retry()
        ).result(timeout=60)
        return Counter(str(r["message_id"]) for r in rows)


def test_gcs_files_load_into_bigquery_once(
    bigquery_emulator: BigQueryEmulator, gcs_bucket: str, bigquery_dataset: str
) -> None:
    events = track_events(40)
    _store(bigquery_emulator, gcs_bucket, in_files(events, 10))
    _store(bigquery_emulator, gcs_bucket, [[events[0], *track_events(1, start=100)]])  # a dup
    args, env = _args(bigquery_emulator, gcs_bucket, bigquery_dataset), _env(bigquery_emulator)

    status = run_loader("status", *args, "--json", env=env)  # before the table exists
    assert status.returncode == 0, status.stderr
    info = json.loads(status.stdout)
    assert (info["pending"], info["loaded"]) == (5, 0)
    assert "create-table" in info["note"]
    created = run_loader("create-table", *args, env=env)
    assert created.returncode == 0, created.stderr
    status = run_loader("status", *args, "--json", env=env)
    assert status.returncode == 0, status.stderr
    assert json.loads(status.stdout)["pending"] == 5
    assert json.loads(status.stdout)["note"] is None

    done = run_loader("once", *args, "--json", "--batch-files", "2", env=env)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert (result["loaded"], result["rows"], result["batches"]) == (5, 42, 3)

    expected = {e.message_id for e in events} | {"m-100"}
    view = _ids(bigquery_emulator, bigquery_dataset, "events")
    assert set(view) == expected
    assert max(view.values()) == 1
    assert _ids(bigquery_emulator, bigquery_dataset, "raw_events")["m-0"] == 2

    again = run_loader("once", *args, "--json", env=env)
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout)["loaded"] == 0
    status = json.loads(run_loader("status", *args, "--json", env=env).stdout)
    assert (status["loaded"], status["pending"], status["lag_seconds"]) == (5, 0, 0.0)
    assert sum(_ids(bigquery_emulator, bigquery_dataset, "raw_events").values()) == 42


def test_sigkill_mid_pass_then_restart_loads_each_file_once(
    bigquery_emulator: BigQueryEmulator, gcs_bucket: str, bigquery_dataset: str
) -> None:
    events = track_events(300)
    _store(bigquery_emulator, gcs_bucket, in_files(events, 10))  # 30 files
    args, env = _args(bigquery_emulator, gcs_bucket, bigquery_dataset), _env(bigquery_emulator)
    with loader_process("once", *args, "--batch-files", "3", env=env) as loader:
        loader.wait_for_line(lambda line: "batch 2:" in line, within=180)
        loader.signal(signal.SIGKILL)
        assert loader.wait() == -signal.SIGKILL
    status = json.loads(run_loader("status", *args, "--json", env=env).stdout)
    assert 0 < status["loaded"] < 30, status
    done = run_loader("once", *args, "--json", env=env, timeout=300)
    assert done.returncode == 0, done.stderr
    raw = _ids(bigquery_emulator, bigquery_dataset, "raw_events")
    assert set(raw) == {e.message_id for e in events}
    assert max(raw.values()) == 1


def test_query_refuses_bigquery_with_a_hint(
    bigquery_emulator: BigQueryEmulator, gcs_bucket: str
) -> None:
    args = _args(bigquery_emulator, gcs_bucket, "d")
    done = run_loader("query", *args, "--json", "select 1", env=_env(bigquery_emulator))
    assert done.returncode == 2
    assert done.stdout == ""
    assert "bq query" in done.stderr
