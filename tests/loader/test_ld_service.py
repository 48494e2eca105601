"""The pass and the loop: batching, the ledger, failures, stop between batches.

These use a small in-memory warehouse that keeps the protocol's promises (a file loads once,
its ledger entry recorded with it); the real DuckDB and BigQuery warehouses run the same passes in
test_ld_duckdb.py and test_ld_bigquery.py (and end to end in tests/e2e/test_e2e_loader.py).
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest
from eventkit_core import LoadReport
from eventkit_loader.service import LoaderService
from eventkit_loader.telemetry import Telemetry

T0 = datetime(2024, 6, 1, 12, 0, tzinfo=UTC)


@dataclass(frozen=True)
class F:
    path: str
    uri: str
    size: int
    updated: datetime | None


class Lister:
    def __init__(self, files: list[F]) -> None:
        self.files = files
        self.calls: list[tuple[str, datetime | None]] = []
        self.times: list[float] = []
        self.third_call = asyncio.Event()

    def list_files(self, kind: str = "events", since: datetime | None = None) -> list[F]:
        self.calls.append((kind, since))
        self.times.append(time.monotonic())
        if len(self.calls) >= 3:
            self.third_call.set()
        return list(self.files)


class MemoryWarehouse:
    def __init__(self, rows_per_file: int = 10, bad: frozenset[str] = frozenset()) -> None:
        self.ledger: set[str] = set()
        self.batches: list[list[str]] = []
        self.rows_per_file = rows_per_file
        self.bad = bad
        self.schema_calls = 0
        self.gate: asyncio.Event | None = None
        self.entered = asyncio.Event()
        self.raise_on_load: Exception | None = None

    async def ensure_schema(self) -> None:
        self.schema_calls += 1

    async def load_files(self, uris: Sequence[str]) -> LoadReport:
        self.entered.set()
        if self.gate is not None:
            await self.gate.wait()
        if self.raise_on_load is not None:
            raise self.raise_on_load
        self.batches.append(list(uris))
        loaded = [u for u in uris if u not in self.ledger and u not in self.bad]
        skipped = [u for u in uris if u in self.ledger]
        failed = [u for u in uris if u in self.bad]
        self.ledger.update(loaded)
        return LoadReport(
            loaded=tuple(loaded),
            skipped=tuple(skipped),
            failed=tuple(failed),
            rows=len(loaded) * self.rows_per_file,
        )

    async def loaded_files(self) -> set[str]:
        return set(self.ledger)

    def health_check(self) -> bool:
        return True


def _files(n: int) -> list[F]:
    return [
        F(f"events/e/2024/06/01/12/{i:04d}.parquet", f"mem://{i:04d}", 1, T0 + timedelta(seconds=i))
        for i in range(n)
    ]


async def test_pass_loads_everything_in_batches_oldest_first() -> None:
    files = _files(7)
    wh = MemoryWarehouse()
    service = LoaderService(Lister(list(reversed(files))), wh, batch_files=3)
    result = await service.run_pass()
    assert result.ok
    assert result.loaded == 7
    assert result.rows == 70
    assert result.batches == 3
    assert [len(b) for b in wh.batches] == [3, 3, 1]
    assert [u for b in wh.batches for u in b] == [f.uri for f in files]
    again = await service.run_pass()
    assert again.pending == 0
    assert again.batches == 0
    assert len(wh.batches) == 3
    assert wh.schema_calls == 1


async def test_failed_files_are_reported_counted_and_retried() -> None:
    files = _files(4)
    wh = MemoryWarehouse(bad=frozenset({files[1].uri}))
    telemetry = Telemetry()
    try:
        service = LoaderService(Lister(files), wh, batch_files=10, metrics=telemetry.metrics)
        result = await service.run_pass()
        assert not result.ok
        assert result.failed == [files[1].uri]
        assert result.loaded == 3
        assert (
            telemetry.metrics.oldest_unloaded_age(now=(T0 + timedelta(seconds=11)).timestamp())
            == 10.0
        )
        wh.bad = frozenset()
        result = await service.run_pass()
        assert result.ok
        assert result.loaded == 1
        assert telemetry.metrics.oldest_unloaded_age() == 0.0
    finally:
        telemetry.shutdown()


async def test_a_failing_backend_is_reported_not_raised() -> None:
    wh = MemoryWarehouse()
    wh.raise_on_load = OSError("warehouse unreachable")
    telemetry = Telemetry()
    service = LoaderService(Lister(_files(2)), wh, metrics=telemetry.metrics)
    result = await service.run_pass()
    text = telemetry.exposition().decode()
    telemetry.shutdown()
    assert 'stage="pass"' in text
    assert "eventkit_warehouse_loader_errors_total{" in text
    assert result.error == "OSError: warehouse unreachable"
    assert not result.ok
    ok, detail = service.health()
    assert not ok
    assert detail["last_pass"]["error"] == "OSError: warehouse unreachable"


async def test_stop_is_honoured_between_batches_never_inside_one() -> None:
    wh = MemoryWarehouse()
    wh.gate = asyncio.Event()
    service = LoaderService(Lister(_files(6)), wh, batch_files=2)
    stop = asyncio.Event()
    task = asyncio.create_task(service.run(interval=3600, stop=stop))
    await asyncio.wait_for(wh.entered.wait(), 10)
    stop.set()  # arrives while the first batch is in the warehouse
    wh.gate.set()
    await asyncio.wait_for(task, 10)
    assert wh.batches == [[f"mem://{i:04d}" for i in range(2)]]  # finished, then stopped
    assert service.last_pass is not None
    assert service.last_pass.interrupted


async def test_loop_runs_passes_at_the_interval_until_stopped() -> None:
    lister = Lister(_files(1))
    service = LoaderService(lister, MemoryWarehouse())
    stop = asyncio.Event()
    interval = 0.05
    task = asyncio.create_task(service.run(interval=interval, stop=stop))
    await asyncio.wait_for(lister.third_call.wait(), 30)
    stop.set()
    await asyncio.wait_for(task, 10)
    assert len(lister.calls) >= 3
    assert set(lister.calls) == {("events", None)}  # every pass lists the whole store again
    # Start to start, never sooner than the interval (a busy machine only makes them later);
    # the small slack is the event loop's clock resolution.
    gaps = [b - a for a, b in itertools.pairwise(lister.times)]
    assert min(gaps) >= interval - 0.005, gaps
    # And the wait is cut short by stop: a pass an hour away does not hold the task.
    wh = MemoryWarehouse()
    slow = LoaderService(Lister(_files(1)), wh)
    stop = asyncio.Event()
    task = asyncio.create_task(slow.run(interval=3600, stop=stop))
    await asyncio.wait_for(wh.entered.wait(), 30)
    stop.set()
    await asyncio.wait_for(task, 10)


def test_batch_size_must_be_positive() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        LoaderService(Lister([]), MemoryWarehouse(), batch_files=0)
