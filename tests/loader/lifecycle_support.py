"""What the lifecycle commands' tests share (compact, retention): a place (local + DuckDB, or
GCS + BigQuery emulators), a real SIGKILL at an exact point, and reads of files and rows.

The kill: a small script patches the store backend's ``delete`` to kill its own process at the
second call (one input of a replacement deleted, the other not), then runs the loader's
``main``. No hook in the product.
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
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest
from eventkit_storage.filestore import FileBackend
from eventkit_storage.gcs import GCSErrorStore, GCSEventStore
from eventkit_storage.local import LocalErrorStore, LocalEventStore

from tests.emulators import BigQueryEmulator
from tests.loader.ld_support import loader_env, run_loader, scratch_dir
from tests.storage.test_wh_conformance import BigQueryBackend

KILLER = """
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

#: Fills an event store and an error store (the test's data).
Fill = Callable[[Any, Any], None]


@dataclass
class Place:
    args: list[str]
    env: dict[str, str]
    backend: FileBackend
    killer: str
    bq: BigQueryBackend | None = None

    def rows(self, table: str = "raw_events", columns: str = "message_id") -> Counter[str]:
        """The rows of ``table`` (``columns`` joined by ``/``) -> copies."""
        if self.bq is not None:
            found = self.bq.rows(table, columns, "1")
            return Counter("/".join(str(v) for v in r) for r in found)
        done = run_loader(
            "query", *self.args, "--json", f"SELECT {columns} FROM {table}", env=self.env
        )
        assert done.returncode == 0, done.stderr
        return Counter("/".join(str(v) for v in r.values()) for r in json.loads(done.stdout))

    def killed(self, command: str) -> None:
        """Run ``command`` until the kill; check it died by SIGKILL."""
        done = subprocess.run(
            [sys.executable, "-c", self.killer, command, *self.args],
            env=self.env,
            cwd=scratch_dir(),
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        assert done.returncode == -signal.SIGKILL, done.stdout + done.stderr


def make_place(
    request: pytest.FixtureRequest, tmp_path: Path, fill: Fill, **env: str
) -> Iterator[Place]:
    """The place of ``request.param`` (``local`` or ``gcs``), filled by ``fill``."""
    if request.param == "local":
        data = tmp_path / "data"
        events = LocalEventStore(data)
        fill(events, LocalErrorStore(data))
        killer = KILLER.format(module="eventkit_storage.local", cls="LocalFiles")
        yield Place(["--data-dir", str(data)], loader_env(**env), events.backend, killer)
        return
    emulator: BigQueryEmulator = request.getfixturevalue("bigquery_emulator")
    bucket: str = request.getfixturevalue("gcs_bucket")
    dataset: str = request.getfixturevalue("bigquery_dataset")
    client = emulator.gcs.client()
    store = GCSEventStore(bucket, prefix="pre", client=client)
    fill(store, GCSErrorStore(bucket, prefix="pre", client=client))
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
                **env,
            ),
            store.backend,
            KILLER.format(module="eventkit_storage.gcs", cls="GCSFiles"),
            bq,
        )


async def parquet_files(backend: FileBackend, prefix: str) -> list[str]:
    return sorted(f.path for f in await backend.scan(prefix) if f.path.endswith(".parquet"))


def ids_in_files(backend: FileBackend, paths: list[str]) -> Counter[str]:
    """message_id -> copies across ``paths``."""

    async def read() -> Counter[str]:
        found: Counter[str] = Counter()
        for path in paths:
            table = pq.read_table(io.BytesIO(await backend.read(path)))
            found.update(str(m) for m in table.column("message_id").to_pylist())
        return found

    return asyncio.run(read())
