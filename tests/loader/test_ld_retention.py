"""``eventkit-loader retention``: local + DuckDB and GCS + BigQuery (emulators), killed midway.

Old data (June 2024) in stream ``events`` and in stream ``keep`` (kept forever by an override),
recent data in ``events``. With 30 days: the old ``events`` files and rows go, the rest stays.
The kill is a real SIGKILL at the second file deletion (after the warehouse rows went), made as
in ``lifecycle_support``.
"""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgspec
import pytest
from eventkit_core import utcnow
from eventkit_storage.local import LocalEventStore

from tests.loader.ld_support import in_files, run_loader, track_events
from tests.loader.lifecycle_support import Place, ids_in_files, make_place, parquet_files
from tests.loader.test_ld_compact import _dead_letter

POLICY = {"EVENTKIT_RETENTION_DAYS": "30", "EVENTKIT_STREAM_RETENTION_DAYS": "keep:0"}


#: The properties of every row retention removes; no byte of a kept file may hold it after.
RETIRED = msgspec.Raw(b'{"note":"retired-row-marker"}')


def _holding(root: Path, marker: bytes = b"retired-row-marker") -> list[str]:
    files = (p for p in root.rglob("*") if p.is_file())
    return sorted(str(p.relative_to(root)) for p in files if marker in p.read_bytes())


def _fill(events: Any, errors: Any) -> None:
    async def write() -> None:
        for stream in ("events", "keep"):
            for hour in range(2):
                batch = track_events(6, start=hour * 3600, stream=stream)
                if stream == "events":  # a marker for the raw-bytes check: only old `events`
                    batch = [msgspec.structs.replace(e, properties=RETIRED) for e in batch]
                for chunk in in_files(batch, 3):
                    await events.store_batch(chunk)
        recent = track_events(4, start=10**6)
        await events.store_batch([msgspec.structs.replace(e, received_at=utcnow()) for e in recent])
        await errors.store_errors([_dead_letter(0)])  # old, stream events

    asyncio.run(write())


@pytest.fixture(params=["local", pytest.param("gcs", marks=pytest.mark.integration)])
def place(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Place]:
    yield from make_place(request, tmp_path, _fill, **POLICY)


def test_retention_killed_midway_then_rerun(place: Place) -> None:
    loaded = run_loader("once", *place.args, "--json", env=place.env)
    assert loaded.returncode == 0, loaded.stderr
    rows = place.rows(columns="stream, message_id")
    old = {k for k in rows if k.startswith("events/") and not k.startswith("events/m-1000")}
    assert len(old) == 12
    assert len(rows) == 12 + 12 + 4
    kept_files = [
        p
        for p in asyncio.run(parquet_files(place.backend, "events/"))
        if "/keep/" in p or "/2024/" not in p
    ]

    dry = run_loader("retention", *place.args, "--dry-run", "--json", env=place.env)
    assert dry.returncode == 0, dry.stderr
    plan = json.loads(dry.stdout)
    assert plan["files_deleted"] == 4 + 1  # 4 old event files of `events`, 1 dead-letter file
    assert set(plan["cutoffs"]) == {"events"}  # `keep` is kept forever
    assert place.rows(columns="stream, message_id") == rows  # a dry run changes nothing
    data = Path(place.args[1]) if place.args[0] == "--data-dir" else None
    if data is not None:  # the check can fail: the marker is in the files and the warehouse
        assert "warehouse.duckdb" in _holding(data)
        assert any(p.startswith("events/") for p in _holding(data))

    place.killed("retention")
    assert asyncio.run(place.backend.scan("rewrites/"))  # left behind by the kill

    rerun = run_loader("retention", *place.args, "--json", env=place.env)
    assert rerun.returncode == 0, rerun.stderr
    assert [r["outcome"] for r in json.loads(rerun.stdout)["recovered"]] == ["done"]

    assert sorted(asyncio.run(parquet_files(place.backend, "events/"))) == sorted(kept_files)
    assert asyncio.run(parquet_files(place.backend, "dead-letters/")) == []
    assert asyncio.run(place.backend.scan("rewrites/")) == []
    assert place.rows(columns="stream, message_id") == Counter(
        {k: n for k, n in rows.items() if k not in old}
    )
    assert place.rows("dead_letters", "stream, message_id") == Counter()
    in_files_now = ids_in_files(place.backend, kept_files)
    assert sum(in_files_now.values()) == 12 + 4
    again = run_loader("once", *place.args, "--json", env=place.env)
    assert json.loads(again.stdout.strip().splitlines()[-1])["loaded"] == 0
    if data is not None:  # gone from every byte under the data dir, the DuckDB file included
        assert _holding(data) == []


async def test_run_calls_between_after_each_pass_and_survives_its_failure(tmp_path: Path) -> None:
    """``run`` hands retention its turn between passes; a failing turn does not stop the loop."""
    import asyncio as aio

    from eventkit_loader.service import LoaderService
    from eventkit_storage.duckdb import DuckDBWarehouseLoader

    service = LoaderService(
        LocalEventStore(tmp_path / "data"), DuckDBWarehouseLoader(tmp_path / "w.duckdb")
    )
    stop = aio.Event()
    calls: list[int] = []

    async def between() -> None:
        calls.append(len(calls))
        if len(calls) == 1:
            raise RuntimeError("retention failed once")
        stop.set()

    await aio.wait_for(service.run(0.01, stop, between=between), timeout=60)
    assert calls == [0, 1]
