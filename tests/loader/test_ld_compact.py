"""``eventkit-loader compact``: local + DuckDB and GCS + BigQuery (emulators), killed midway.

The kill is a real SIGKILL of the command's process at an exact point: a small script patches
the store backend's ``delete`` to kill its own process at the second call (one input of the
first merge deleted, the other not), then runs the loader's ``main``. No hook in the product.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import signal
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import msgspec
import pyarrow.parquet as pq
import pytest
from eventkit_core import DeadLetter, utcnow
from eventkit_storage.filestore import FileBackend
from eventkit_storage.gcs import GCSErrorStore, GCSEventStore
from eventkit_storage.local import LocalErrorStore, LocalEventStore

from tests.emulators import BigQueryEmulator
from tests.loader.ld_support import T0, in_files, loader_env, run_loader, scratch_dir, track_events
from tests.storage.test_wh_conformance import BigQueryBackend

#: Three finished hours of 4 files each (5 events a file) and one file in the current hour.
HOURS, FILES, PER_FILE = 3, 4, 5

_KILLER = """
import os, signal, sys
from {module} import {cls} as B
calls = [0]
original = B.delete
async def delete(self, path):
    calls[0] += 1
    if calls[0] == 2:
        os.kill(os.getpid(), signal.SIGKILL)
    return await original(self, path)
B.delete = delete
from eventkit_loader.cli import main
sys.exit(main(sys.argv[1:]))
"""


@dataclass
class Place:
    args: list[str]
    env: dict[str, str]
    backend: FileBackend
    killer: str
    bq: BigQueryBackend | None = None

    def rows(self) -> Counter[str]:
        """message_id -> copies in raw_events."""
        if self.bq is not None:
            return Counter(str(r[0]) for r in self.bq.rows("raw_events", "message_id", "1"))
        done = run_loader(
            "query", *self.args, "--json", "SELECT message_id FROM raw_events", env=self.env
        )
        assert done.returncode == 0, done.stderr
        return Counter(str(r["message_id"]) for r in json.loads(done.stdout))


@pytest.fixture(params=["local", pytest.param("gcs", marks=pytest.mark.integration)])
def place(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Place]:
    if request.param == "local":
        data = tmp_path / "data"
        events, errors = LocalEventStore(data), LocalErrorStore(data)
        killer = _KILLER.format(module="eventkit_storage.local", cls="LocalFiles")
        _fill(events, errors)
        yield Place(["--data-dir", str(data)], loader_env(), events.backend, killer)
        return
    emulator: BigQueryEmulator = request.getfixturevalue("bigquery_emulator")
    bucket: str = request.getfixturevalue("gcs_bucket")
    dataset: str = request.getfixturevalue("bigquery_dataset")
    client = emulator.gcs.client()
    gevents = GCSEventStore(bucket, prefix="pre", client=client)
    _fill(gevents, GCSErrorStore(bucket, prefix="pre", client=client))
    bq = BigQueryBackend(emulator, bucket, dataset)
    with contextlib.closing(bq.client):
        yield Place(
            [
                *("--event-store", "gcs", "--bucket", bucket, "--prefix", "pre"),
                *("--project", emulator.project, "--dataset", dataset),
            ],
            loader_env(
                EVENTKIT_BIGQUERY_API_ENDPOINT=emulator.endpoint,
                STORAGE_EMULATOR_HOST=emulator.gcs.endpoint,
            ),
            gevents.backend,
            _KILLER.format(module="eventkit_storage.gcs", cls="GCSFiles"),
            bq,
        )


def _fill(events: Any, errors: Any) -> None:
    """Finished hours of events, two dead-letter files, one file of the current hour."""

    async def write() -> None:
        for hour in range(HOURS):
            batch = track_events(FILES * PER_FILE, start=hour * 3600)
            for chunk in in_files(batch, PER_FILE):
                await events.store_batch(chunk)
        for n in range(2):
            await errors.store_errors([_dead_letter(n)])
        (now,) = track_events(1, start=10**6)
        await events.store_batch([msgspec.structs.replace(now, received_at=utcnow())])

    asyncio.run(write())


def _dead_letter(n: int) -> DeadLetter:
    return DeadLetter(
        stream="events",
        reason_code="invalid_type",
        reason=f"type must be a string ({n})",
        payload=json.dumps({"type": n}),
        received_at=T0 + timedelta(minutes=n),
        message_id=f"d-{n}",
        source="batch",
    )


async def _files(backend: FileBackend, prefix: str) -> list[str]:
    return sorted(f.path for f in await backend.scan(prefix) if f.path.endswith(".parquet"))


def _ids_in_files(backend: FileBackend, paths: list[str]) -> Counter[str]:
    async def read() -> Counter[str]:
        found: Counter[str] = Counter()
        for path in paths:
            table = pq.read_table(io.BytesIO(await backend.read(path)))
            found.update(str(m) for m in table.column("message_id").to_pylist())
        return found

    return asyncio.run(read())


def _once(place: Place) -> dict[str, Any]:
    done = run_loader("once", *place.args, "--json", env=place.env)
    assert done.returncode == 0, done.stdout + done.stderr
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def test_compact_killed_midway_then_rerun(place: Place) -> None:
    first = _once(place)
    assert first["loaded"] == HOURS * FILES + 1
    before_rows = place.rows()
    before_files = asyncio.run(_files(place.backend, "events/"))
    before_ids = _ids_in_files(place.backend, before_files)
    dead_before = asyncio.run(_files(place.backend, "dead-letters/"))
    assert len(dead_before) == 2

    dry = run_loader("compact", *place.args, "--dry-run", "--json", env=place.env)
    assert dry.returncode == 0, dry.stderr
    plan = json.loads(dry.stdout)
    # three hours of events and one hour of dead letters; the current hour is left alone
    assert (plan["merges"], plan["files_merged"]) == (HOURS + 1, HOURS * FILES + 2)
    assert asyncio.run(_files(place.backend, "events/")) == before_files  # nothing changed

    killed = subprocess.run(
        [sys.executable, "-c", place.killer, "compact", *place.args],
        env=place.env,
        cwd=scratch_dir(),
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert killed.returncode == -signal.SIGKILL, killed.stdout + killed.stderr
    assert asyncio.run(place.backend.scan("rewrites/"))  # a manifest is left behind
    # A load pass meanwhile loads nothing: the half-done merge's files are left out.
    assert _once(place)["loaded"] == 0

    rerun = run_loader("compact", *place.args, "--json", env=place.env)
    assert rerun.returncode == 0, rerun.stderr
    done = json.loads(rerun.stdout)
    assert [r["outcome"] for r in done["recovered"]] == ["done"]
    assert done["merges"] == HOURS  # the recovered one was finished, the others made now

    after_files = asyncio.run(_files(place.backend, "events/"))
    assert len(after_files) == HOURS + 1  # one file per finished hour + the current hour's
    assert len(asyncio.run(_files(place.backend, "dead-letters/"))) == 1
    assert asyncio.run(place.backend.scan("rewrites/")) == []
    assert _ids_in_files(place.backend, after_files) == before_ids  # no row lost or doubled
    assert _once(place)["loaded"] == 0  # nothing loaded twice
    assert place.rows() == before_rows
    again = run_loader("compact", *place.args, "--json", env=place.env)
    assert json.loads(again.stdout)["merges"] == 0  # idempotent
