"""DuckDB warehouse specifics: the file is held only during a pass; readers wait for it."""

from __future__ import annotations

import logging
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import duckdb
import pyarrow.parquet as pq
import pytest
from eventkit_core import ConfigurationError, WarehouseError
from eventkit_storage.duckdb import DuckDBWarehouseLoader, local_path

from tests.storage.test_wh_conformance import event_row, event_table

HOLDER = textwrap.dedent(
    """
    import sys, time
    from eventkit_storage.duckdb import DuckDBWarehouseLoader

    loader = DuckDBWarehouseLoader(sys.argv[1])
    with loader._open() as con:  # what a load pass holds
        print("held", flush=True)
        hold = float(sys.argv[2])
        if hold >= 0:
            time.sleep(hold)  # a pass that takes this long
        else:
            sys.stdin.read()  # until the test closes our stdin
    print("released", flush=True)
    """
)


@pytest.fixture
def loaded(tmp_path: Path) -> DuckDBWarehouseLoader:
    path = tmp_path / "f.parquet"
    pq.write_table(event_table([event_row("m1"), event_row("m2", "page")]), path)
    loader = DuckDBWarehouseLoader(tmp_path / "warehouse.duckdb")
    import asyncio

    asyncio.run(loader.load_files([str(path)]))
    return loader


@pytest.fixture
def holder_factory() -> Iterator[list[subprocess.Popen[str]]]:
    started: list[subprocess.Popen[str]] = []
    yield started
    for process in started:
        if process.poll() is None:
            process.kill()
        process.wait(timeout=30)


def hold(
    database: Path, seconds: float, started: list[subprocess.Popen[str]]
) -> subprocess.Popen[str]:
    """Another process holding the warehouse the way a pass does; returns once it holds it."""
    process = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(database), str(seconds)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    started.append(process)
    assert process.stdout is not None
    assert process.stdout.readline().strip() == "held"
    return process


def test_query_waits_for_a_running_pass_then_succeeds(
    loaded: DuckDBWarehouseLoader,
    holder_factory: list[subprocess.Popen[str]],
    caplog: pytest.LogCaptureFixture,
) -> None:
    reader = DuckDBWarehouseLoader(loaded.database, lock_timeout=60)
    holder = hold(loaded.database, -1, holder_factory)  # until we close its stdin
    caplog.set_level(logging.INFO, logger="eventkit_storage.duckdb")
    result: list[object] = []
    query = threading.Thread(
        target=lambda: result.append(
            reader.query("SELECT message_id FROM events ORDER BY message_id")
        )
    )
    query.start()
    # Release only once the reader has found the file locked: it really waited for the pass,
    # however slowly either side got going.
    deadline = time.monotonic() + 30
    while not any("is locked" in r.getMessage() for r in caplog.records):
        assert time.monotonic() < deadline, "the reader never found the file locked"
        assert not result, "the query ran while a pass held the file"
        time.sleep(0.01)
    assert holder.stdin is not None
    holder.stdin.close()
    assert holder.wait(timeout=30) == 0  # the pass ended normally
    query.join(timeout=60)
    assert result == [(["message_id"], [("m1",), ("m2",)])]


def test_query_fails_clearly_when_the_pass_outlasts_the_timeout(
    loaded: DuckDBWarehouseLoader, holder_factory: list[subprocess.Popen[str]]
) -> None:
    reader = DuckDBWarehouseLoader(loaded.database, lock_timeout=0.3)
    holder = hold(loaded.database, -1, holder_factory)

    started = time.monotonic()
    with pytest.raises(WarehouseError, match=r"stayed locked .* for 0\.3 s") as raised:
        reader.query("SELECT 1")
    assert raised.value.code == "warehouse_busy"
    assert 0.3 <= time.monotonic() - started < 10

    assert holder.stdin is not None
    holder.stdin.close()
    assert holder.wait(timeout=30) == 0
    assert reader.query("SELECT count(*) FROM raw_events")[1] == [(2,)]


async def test_a_load_pass_waits_for_a_reader_in_another_process(
    loaded: DuckDBWarehouseLoader, tmp_path: Path, holder_factory: list[subprocess.Popen[str]]
) -> None:
    path = tmp_path / "g.parquet"
    pq.write_table(event_table([event_row("m3")]), path)
    holder = hold(loaded.database, 1.0, holder_factory)

    report = await DuckDBWarehouseLoader(loaded.database, lock_timeout=60).load_files([str(path)])

    assert report.loaded == (str(path),)
    assert holder.wait(timeout=30) == 0


def test_the_file_is_closed_between_passes(loaded: DuckDBWarehouseLoader) -> None:
    # another process may open it for writing right after a pass
    code = "import duckdb, sys; duckdb.connect(sys.argv[1]).execute('SELECT 1').fetchall()"
    done = subprocess.run(
        [sys.executable, "-c", code, str(loaded.database)], capture_output=True, timeout=60
    )
    assert done.returncode == 0, done.stderr


def test_query_of_a_missing_warehouse_says_what_to_do(tmp_path: Path) -> None:
    loader = DuckDBWarehouseLoader(tmp_path / "none.duckdb", lock_timeout=0)
    with pytest.raises(WarehouseError, match="run a load pass first"):
        loader.query("SELECT 1")
    assert loader.loaded_files() == set()
    assert loader.health_check() is True
    assert DuckDBWarehouseLoader(tmp_path).health_check() is False  # a directory, not a file


def test_query_errors_are_warehouse_errors(loaded: DuckDBWarehouseLoader) -> None:
    with pytest.raises(WarehouseError, match="query failed"):
        loaded.query("SELECT * FROM no_such_table")


async def test_paths_and_file_uris_name_the_same_file_once(tmp_path: Path) -> None:
    path = tmp_path / "dir with space" / "f.parquet"
    path.parent.mkdir()
    pq.write_table(event_table([event_row("m1")]), path)
    loader = DuckDBWarehouseLoader(tmp_path / "w.duckdb")

    first = await loader.load_files([path.as_uri()])
    second = await loader.load_files([str(path), path.as_uri()])

    assert first.loaded == (path.as_uri(),)
    assert second.skipped == (str(path), path.as_uri())
    assert loader.loaded_files() == {path.absolute().as_uri()}
    assert loader.query("SELECT count(*) FROM raw_events")[1] == [(1,)]


async def test_non_local_uris_are_reported_failed(tmp_path: Path) -> None:
    loader = DuckDBWarehouseLoader(tmp_path / "w.duckdb")
    report = await loader.load_files(
        ["gs://bucket/events/a.parquet", str(tmp_path / "nope.parquet")]
    )
    assert report.failed == ("gs://bucket/events/a.parquet", str(tmp_path / "nope.parquet"))
    with pytest.raises(ConfigurationError, match="local files only"):
        local_path("gs://bucket/x.parquet")
    assert local_path("file:///a%20b/c.parquet") == Path("/a b/c.parquet")


def test_invalid_settings_are_rejected(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError):
        DuckDBWarehouseLoader(tmp_path / "w.duckdb", table="raw events; DROP")
    with pytest.raises(ValueError, match="lock_timeout"):
        DuckDBWarehouseLoader(tmp_path / "w.duckdb", lock_timeout=-1)


async def test_a_custom_table_name(tmp_path: Path) -> None:
    path = tmp_path / "f.parquet"
    pq.write_table(event_table([event_row("m1")]), path)
    loader = DuckDBWarehouseLoader(tmp_path / "w.duckdb", table="my_events")
    await loader.load_files([str(path)])
    assert loader.query("SELECT message_id FROM my_events")[1] == [("m1",)]
    assert loader.query("SELECT message_id FROM events")[1] == [("m1",)]


def test_the_module_name_does_not_shadow_duckdb() -> None:
    import eventkit_storage.duckdb as ours

    imported = vars(ours)["duckdb"]  # what `import duckdb` bound inside eventkit_storage.duckdb
    assert imported is duckdb
    assert imported.__name__ == "duckdb"
    assert imported is not ours
    assert hasattr(imported, "connect")
