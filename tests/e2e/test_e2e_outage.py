"""Outages: a backend goes away under load, and comes back.

Each test starts an emulator of its own (the session's are shared by every test) and takes it
down with :class:`tests.emulators.EmulatorControl`:

- GCS (fake-gcs-server stopped: connections refused) under the collector in GCS mode: 200 while
  the ring buffer has room, then 503 with Retry-After, never 500 and never a silent drop; the
  collector's memory stays bounded while it refuses; once the emulator is back everything
  drains and every acknowledged event is in the bucket.
- Pub/Sub (the emulator frozen with SIGSTOP: its state is in memory, so a stop would lose the
  topic; a frozen server is an outage where connections hang) under the collector in Pub/Sub
  mode: the same promises.
- BigQuery (local-bigquery stopped) under ``eventkit-loader run``: the loader backs off, resumes
  once it is back, and loads each file once.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import subprocess
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from eventkit_storage.gcs import GCSEventStore

from tests.e2e.conftest import CollectorProcess, StartCollector, wait_until
from tests.e2e.faults import Books, LoadGen, rss_bytes, stored_ids
from tests.emulators import (
    BigQueryEmulator,
    EmulatorControl,
    GcsEmulator,
    PubSubEmulator,
    run_bigquery,
    run_gcs,
    run_pubsub,
    short_retry,
)
from tests.loader.ld_support import (
    in_files,
    loader_argv,
    loader_env,
    run_loader,
    scratch_dir,
    track_events,
)

pytestmark = [pytest.mark.integration, pytest.mark.slow]

#: A small ring buffer (requests), so that an outage fills it within seconds.
RING_ENTRIES = "150"
MiB = 1024 * 1024


def _control(emulator: GcsEmulator | PubSubEmulator | BigQueryEmulator) -> EmulatorControl:
    assert emulator.control is not None
    return emulator.control


@pytest.fixture
def own_gcs(tmp_path: Path) -> Iterator[GcsEmulator]:
    with run_gcs(tmp_path / "own-gcs") as emulator:
        yield emulator


def _refuse_then_drain(
    cp: CollectorProcess, outage: EmulatorControl, pause: bool
) -> tuple[Books, list[int]]:
    """Load; the backend goes down until 503s come; RSS sampled; back up; load until 200s."""
    rss: list[int] = []
    with LoadGen(lambda: cp.url, batch=20, rate=20) as gen:
        wait_until(lambda: gen.status_count(200) >= 20, 60, "200s before the outage")
        outage.pause() if pause else outage.stop()
        wait_until(lambda: gen.status_count(503) >= 1, 120, "503 once the ring buffer is full")
        refused = gen.status_count(503)
        # Refusing for a while (~150 more requests): memory must not grow with what it refuses.
        while gen.status_count(503) < refused + 150:
            rss.append(rss_bytes(cp.proc.pid))
            _more_503s(gen, refused + 15 * len(rss))
        outage.resume() if pause else outage.start()
        ok = gen.status_count(200)
        wait_until(lambda: gen.status_count(200) >= ok + 40, 180, "200s after the outage")
    return gen.snapshot(), rss


def _more_503s(gen: LoadGen, count: int) -> None:
    wait_until(lambda: gen.status_count(503) >= count, 60, f"{count} 503s")


def _check_refusals(books: Books, rss: list[int], cp: CollectorProcess) -> None:
    assert set(books.statuses) <= {200, 503}, books.statuses
    assert books.unanswered_requests == 0, "a request hung or was dropped"
    assert books.retry_after
    assert all(r.isdigit() and int(r) >= 1 for r in books.retry_after)
    assert max(rss) - min(rss) < 64 * MiB, [r // MiB for r in rss]
    assert "Traceback" not in cp.log(), cp.log()[-4000:]


def test_gcs_down_under_load_503_then_drains_and_loses_nothing(
    collector_server: StartCollector, own_gcs: GcsEmulator, tmp_path: Path
) -> None:
    bucket = own_gcs.create_bucket()
    cp = collector_server(
        tmp_path / "data",
        EVENTKIT_EVENT_STORE="gcs",
        GCP_GCS_BUCKET=bucket,
        GCP_PROJECT_ID=own_gcs.project,
        STORAGE_EMULATOR_HOST=own_gcs.endpoint,
        EVENTKIT_FLUSH_MAX_AGE="0.3",
        EVENTKIT_RING_MAX_ENTRIES=RING_ENTRIES,
    )
    books, rss = _refuse_then_drain(cp, _control(own_gcs), pause=False)
    root = own_gcs.root / bucket

    def all_stored() -> bool:
        return books.acked <= set(stored_ids(root))

    wait_until(all_stored, 120, "every acknowledged event in the bucket")
    assert cp.stop() == 0
    _check_refusals(books, rss, cp)
    stored = stored_ids(root)
    assert set(stored) <= books.sent
    assert max(stored.values()) == 1  # nothing was written twice either


def test_pubsub_frozen_under_load_503_then_drains_and_loses_nothing(
    collector_server: StartCollector, tmp_path: Path
) -> None:
    with run_pubsub(tmp_path / "own-pubsub") as own:
        data = tmp_path / "data"
        cp = collector_server(
            data,
            EVENTKIT_QUEUE_MODE="pubsub",
            GCP_PROJECT_ID=own.project,
            PUBSUB_EMULATOR_HOST=own.host,
            EVENTKIT_PUBSUB_TOPIC=own.new_name("outage"),
            EVENTKIT_PUBSUB_SUBSCRIPTION=own.new_name("outage-archive"),
            EVENTKIT_FLUSH_MAX_AGE="0.3",
            EVENTKIT_RING_MAX_ENTRIES=RING_ENTRIES,
        )
        books, rss = _refuse_then_drain(cp, _control(own), pause=True)

        def all_stored() -> bool:
            return books.acked <= set(stored_ids(data))

        wait_until(all_stored, 180, "every acknowledged event through Pub/Sub into the files")
        assert cp.stop() == 0
    _check_refusals(books, rss, cp)
    assert set(stored_ids(data)) <= books.sent


# -- BigQuery under the loader -----------------------------------------------------------------


def _raw_ids(emulator: BigQueryEmulator, dataset: str) -> Counter[str]:
    with contextlib.closing(emulator.client()) as client:
        rows = client.query(
            f"SELECT message_id FROM `{emulator.project}.{dataset}.raw_events`",
            retry=short_retry(),
        ).result(timeout=60)
        return Counter(str(r["message_id"]) for r in rows)


@pytest.mark.timeout(600)  # local-bigquery is slow: seconds per load job on a busy machine
def test_bigquery_down_under_the_loader_backs_off_resumes_and_loads_each_file_once(
    gcs_emulator: GcsEmulator, gcs_bucket: str, tmp_path: Path
) -> None:
    with run_bigquery(tmp_path / "own-bq", gcs_emulator) as bq:
        dataset = bq.create_dataset()
        store = GCSEventStore(gcs_bucket, prefix="pre", client=gcs_emulator.client())

        def write(start: int, count: int) -> None:
            async def go() -> None:
                for events in in_files(track_events(count, start=start), 10):
                    await store.store_batch(events)

            asyncio.run(go())

        write(0, 20)  # 2 files before the outage
        common = [
            *("--event-store", "gcs", "--bucket", gcs_bucket, "--prefix", "pre"),
            *("--project", bq.project, "--dataset", dataset),
        ]
        args = ["run", *common, "--batch-files", "1", "--interval", "0.5", "--metrics-port", "0"]
        env = loader_env(
            EVENTKIT_BIGQUERY_API_ENDPOINT=bq.endpoint, STORAGE_EMULATOR_HOST=gcs_emulator.endpoint
        )
        created = run_loader("create-table", *common, env=env)
        assert created.returncode == 0, created.stderr
        log = tmp_path / "loader.log"
        with log.open("wb") as out:
            loader = subprocess.Popen(
                loader_argv(*args), env=env, cwd=scratch_dir(), stdout=out, stderr=out
            )

        def batches_started(n: int) -> bool:
            return log.read_text().count("batch 1:") >= n

        try:
            wait_until(lambda: sum(_raw_ids(bq, dataset).values()) == 20, 180, "first load")
            write(20, 20)  # 2 more files: the next pass loads them one per batch
            wait_until(lambda: batches_started(2), 180, "the second pass's first batch")
            _control(bq).stop()  # mid-pass: its next batch meets the outage
            time.sleep(5)  # the outage's length (an input of the test, not a wait)
            _control(bq).start()
            wait_until(lambda: sum(_raw_ids(bq, dataset).values()) >= 40, 240, "the rest")
            write(40, 10)  # and a file after the outage still loads
            wait_until(lambda: sum(_raw_ids(bq, dataset).values()) >= 50, 240, "new files")
        finally:
            loader.terminate()
            loader.wait(60)
        raw = _raw_ids(bq, dataset)
        text = log.read_text()
        status = run_loader("status", *common, "--json", env=env)
    assert set(raw) == {f"m-{i}" for i in range(50)}, text[-4000:]
    assert max(raw.values()) == 1, text[-4000:]  # each file loaded once
    assert loader.returncode == 0, text[-4000:]
    assert status.returncode == 0, status.stderr
    info = json.loads(status.stdout)
    assert (info["loaded"], info["pending"]) == (5, 0), info
