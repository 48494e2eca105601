"""``eventkit-loader compact``: local + DuckDB and GCS + BigQuery (emulators), killed midway.

The kill is a real SIGKILL at the second file deletion (one input of the first merge deleted,
the other not), made by ``lifecycle_support.KILLER``. No hook in the product.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import msgspec
import pytest
from eventkit_core import DeadLetter, utcnow

from tests.loader.ld_support import T0, in_files, run_loader, track_events
from tests.loader.lifecycle_support import Place, ids_in_files, make_place, parquet_files

#: Three finished hours of 4 files each (5 events a file) and one file in the current hour.
HOURS, FILES, PER_FILE = 3, 4, 5


@pytest.fixture(params=["local", pytest.param("gcs", marks=pytest.mark.integration)])
def place(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Place]:
    yield from make_place(request, tmp_path, _fill)


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


def _once(place: Place) -> dict[str, Any]:
    done = run_loader("once", *place.args, "--json", env=place.env)
    assert done.returncode == 0, done.stdout + done.stderr
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def test_compact_killed_midway_then_rerun(place: Place) -> None:
    first = _once(place)
    assert first["loaded"] == HOURS * FILES + 1
    before_rows = place.rows()
    before_files = asyncio.run(parquet_files(place.backend, "events/"))
    before_ids = ids_in_files(place.backend, before_files)
    dead_before = asyncio.run(parquet_files(place.backend, "dead-letters/"))
    assert len(dead_before) == 2

    dry = run_loader("compact", *place.args, "--dry-run", "--json", env=place.env)
    assert dry.returncode == 0, dry.stderr
    plan = json.loads(dry.stdout)
    # three hours of events and one hour of dead letters; the current hour is left alone
    assert (plan["merges"], plan["files_merged"]) == (HOURS + 1, HOURS * FILES + 2)
    assert asyncio.run(parquet_files(place.backend, "events/")) == before_files  # nothing changed

    place.killed("compact")
    assert asyncio.run(place.backend.scan("rewrites/"))  # a manifest is left behind
    # A load pass meanwhile loads nothing: the half-done merge's files are left out.
    assert _once(place)["loaded"] == 0

    rerun = run_loader("compact", *place.args, "--json", env=place.env)
    assert rerun.returncode == 0, rerun.stderr
    done = json.loads(rerun.stdout)
    assert [r["outcome"] for r in done["recovered"]] == ["done"]
    assert done["merges"] == HOURS  # the recovered one was finished, the others made now

    after_files = asyncio.run(parquet_files(place.backend, "events/"))
    assert len(after_files) == HOURS + 1  # one file per finished hour + the current hour's
    assert len(asyncio.run(parquet_files(place.backend, "dead-letters/"))) == 1
    assert asyncio.run(place.backend.scan("rewrites/")) == []
    assert ids_in_files(place.backend, after_files) == before_ids  # no row lost or doubled
    assert _once(place)["loaded"] == 0  # nothing loaded twice
    assert place.rows() == before_rows
    again = run_loader("compact", *place.args, "--json", env=place.env)
    assert json.loads(again.stdout)["merges"] == 0  # idempotent
