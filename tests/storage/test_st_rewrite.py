"""Crash-safe file replacement (eventkit_storage.rewrite): local + DuckDB, GCS + BigQuery.

Each crash is made by running the steps of a replacement up to the point of the crash by hand
(the manifest and some outputs), then calling ``recover`` as a rerun of the command would.
The commands built on it (forget, retention, compaction) have their own SIGKILL tests.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
from eventkit_core import TypedEvent
from eventkit_loader.service import LoaderService
from eventkit_storage.duckdb import DuckDBWarehouseLoader
from eventkit_storage.filestore import FileEventStore
from eventkit_storage.gcs import GCSEventStore
from eventkit_storage.local import LocalEventStore
from eventkit_storage.rewrite import (
    Replacement,
    begin,
    output_name,
    pending_paths,
    read_table,
    recover,
    replace,
    sibling_path,
    table_output,
)

from tests.emulators import BigQueryEmulator
from tests.storage.test_wh_conformance import BigQueryBackend

MakeEvent = Callable[..., TypedEvent]


@dataclass
class Place:
    """A store and the warehouse that loads from it: local + DuckDB, or GCS + BigQuery."""

    store: FileEventStore
    warehouse: Any
    count: Callable[[], int]

    @property
    def mark_loaded(self) -> Any:
        return self.warehouse.mark_loaded

    def loaded(self) -> set[str]:
        return set(self.warehouse.loaded_files())


@pytest.fixture(params=["local", pytest.param("gcs", marks=pytest.mark.integration)])
def place(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Place]:
    if request.param == "local":
        duck = DuckDBWarehouseLoader(tmp_path / "wh.duckdb")

        def count() -> int:
            return int(duck.query("SELECT count(*) FROM raw_events")[1][0][0])

        yield Place(LocalEventStore(tmp_path / "data"), duck, count)
        return
    emulator: BigQueryEmulator = request.getfixturevalue("bigquery_emulator")
    bucket = request.getfixturevalue("gcs_bucket")
    bq = BigQueryBackend(emulator, bucket, request.getfixturevalue("bigquery_dataset"))
    with contextlib.closing(bq.client):
        store = GCSEventStore(bucket, client=emulator.gcs.client())
        yield Place(store, bq.loader, lambda: len(bq.rows("raw_events", "message_id", "1")))


async def _two_loaded_files(
    store: FileEventStore, warehouse: Any, make_event: MakeEvent
) -> list[str]:
    """Two files of one hour, both loaded; their store-relative paths."""
    paths = []
    for _ in range(2):
        (stored,) = await store.store_batch([make_event() for _ in range(3)])
        paths.append(stored.path)
    report = await warehouse.load_files([store.uri(p) for p in paths])
    assert len(report.loaded) == 2
    return paths


async def _merged(store: FileEventStore, paths: list[str]) -> Replacement:
    """Compaction of ``paths`` into one output in their folder."""
    tables = [read_table(await store.read_bytes(p)) for p in paths]
    output = table_output(
        sibling_path(paths[0], output_name("compact", paths)), pa.concat_tables(tables)
    )
    assert output is not None
    return Replacement(reason="compact", inputs=tuple(paths), outputs=(output,))


async def _paths(store: FileEventStore) -> set[str]:
    return {f.path for f in await store.list_files()}


async def test_replace_swaps_files_and_records_the_output_as_loaded(
    place: Place, make_event: MakeEvent
) -> None:
    store, warehouse = place.store, place.warehouse
    paths = await _two_loaded_files(store, warehouse, make_event)
    replacement = await _merged(store, paths)

    report = await replace(store.backend, replacement, warehouse.mark_loaded)

    (output,) = replacement.outputs
    assert (report.outcome, report.inputs_deleted, report.outputs_created) == ("done", 2, 1)
    assert await _paths(store) == {output.path}
    assert read_table(await store.read_bytes(output.path)).num_rows == 6
    assert await pending_paths(store.backend) == set()  # the manifest is gone
    # The output's rows are in the warehouse already: a load pass loads nothing.
    service = LoaderService(store, warehouse)
    result = await service.run_pass()
    assert (result.pending, result.loaded, result.error) == (0, 0, None)
    assert place.count() == 6


async def test_a_run_killed_before_every_output_exists_is_undone(
    place: Place, make_event: MakeEvent
) -> None:
    store, warehouse = place.store, place.warehouse
    paths = await _two_loaded_files(store, warehouse, make_event)
    half = await _merged(store, paths)
    second = table_output(
        sibling_path(paths[0], "other-output"), read_table(await store.read_bytes(paths[0]))
    )
    assert second is not None
    replacement = Replacement(reason="compact", inputs=half.inputs, outputs=(*half.outputs, second))
    # Killed after the manifest and the first output.
    await begin(store.backend, replacement, warehouse.mark_loaded)
    await store.backend.create(half.outputs[0].path, half.outputs[0].data)
    assert await pending_paths(store.backend) == {*paths, half.outputs[0].path, second.path}

    (report,) = await recover(store.backend, warehouse.mark_loaded)

    assert report.outcome == "undone"
    assert await _paths(store) == set(paths)  # as before the run
    assert await pending_paths(store.backend) == set()
    assert store.uri(half.outputs[0].path) not in place.loaded()


async def test_a_run_killed_after_the_outputs_is_finished(
    place: Place, make_event: MakeEvent
) -> None:
    store, warehouse = place.store, place.warehouse
    paths = await _two_loaded_files(store, warehouse, make_event)
    replacement = await _merged(store, paths)
    await begin(store.backend, replacement, warehouse.mark_loaded)
    (output,) = replacement.outputs
    await store.backend.create(output.path, output.data)
    await store.backend.delete(paths[0])  # killed while deleting the inputs

    (report,) = await recover(store.backend, warehouse.mark_loaded)

    assert (report.outcome, report.inputs_deleted) == ("done", 1)
    assert await _paths(store) == {output.path}
    result = await LoaderService(store, warehouse).run_pass()
    assert (result.loaded, result.error) == (0, None)
    assert place.count() == 6


async def test_a_load_pass_leaves_out_the_files_of_an_unfinished_replacement(
    place: Place, make_event: MakeEvent
) -> None:
    """Unloaded inputs: their output is loaded normally, once, after the replacement."""
    store, warehouse = place.store, place.warehouse
    paths = []
    for _ in range(2):
        (stored,) = await store.store_batch([make_event() for _ in range(2)])
        paths.append(stored.path)
    merged = await _merged(store, paths)
    replacement = Replacement(
        reason="compact", inputs=merged.inputs, outputs=merged.outputs, loaded=False
    )
    await begin(store.backend, replacement, warehouse.mark_loaded)
    await store.backend.create(merged.outputs[0].path, merged.outputs[0].data)
    service = LoaderService(store, warehouse)

    during = await service.run_pass()
    assert (during.listed, during.loaded) == (0, 0)

    (report,) = await recover(store.backend, None)  # nothing to mark: the inputs were unloaded
    assert report.outcome == "done"
    after = await service.run_pass()
    assert (after.loaded, after.rows) == (1, 4)
    assert place.count() == 4


async def test_an_output_cannot_be_an_input(place: Place, make_event: MakeEvent) -> None:
    store = place.store
    (stored,) = await store.store_batch([make_event()])
    output = table_output(stored.path, read_table(await store.read_bytes(stored.path)))
    assert output is not None
    with pytest.raises(ValueError, match="cannot be one of its inputs"):
        await replace(
            store.backend, Replacement(reason="x", inputs=(stored.path,), outputs=(output,)), None
        )
    assert await _paths(store) == {stored.path}


async def test_delete_is_idempotent(place: Place, make_event: MakeEvent) -> None:
    store = place.store
    (stored,) = await store.store_batch([make_event()])
    assert await store.backend.delete(stored.path) is True
    assert await store.backend.delete(stored.path) is False
    assert await _paths(store) == set()
