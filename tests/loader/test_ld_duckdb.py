"""The embedded default, end to end through the CLI: local files -> warehouse.duckdb -> query.

The loader runs as a real process (``python -m eventkit_loader``); files are written by the
storage library's LocalEventStore, exactly as the collector writes them.
"""

from __future__ import annotations

import asyncio
import json
import signal
import socket
import urllib.error
import urllib.request
from collections import Counter
from pathlib import Path

import duckdb
import pytest
from eventkit_storage.local import LocalEventStore

from tests.loader.ld_support import (
    in_files,
    loader_env,
    loader_process,
    query_json,
    run_loader,
    track_events,
)

pytestmark = pytest.mark.slow


def _store(data_dir: Path, files: list[list]) -> list[str]:  # type: ignore[type-arg]
    store = LocalEventStore(data_dir)

    async def write() -> list[str]:
        paths: list[str] = []
        for events in files:
            paths += [f.path for f in await store.store_batch(events)]
        return paths

    return asyncio.run(write())


def _ids_in_raw_events(data_dir: Path) -> Counter[str]:
    rows = query_json(data_dir, "select message_id from raw_events")
    return Counter(r["message_id"] for r in rows)


def test_once_loads_the_data_dir_and_query_sees_each_event_once(tmp_path: Path) -> None:
    data = tmp_path / "eventkit-data"
    events = track_events(30)
    _store(data, in_files(events, 10))
    # The same event stored twice (at-least-once storage): raw_events has it twice, events once.
    _store(data, [[events[0], *track_events(1, start=100)]])

    done = run_loader("once", "--data-dir", str(data), "--json")
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["loaded"] == 4
    assert result["rows"] == 32

    rows = query_json(data, "select message_id, type, event from events order by message_id")
    ids = [r["message_id"] for r in rows]
    assert sorted(ids) == sorted([f"m-{i}" for i in range(30)] + ["m-100"])
    assert {r["type"] for r in rows} == {"track"}
    assert _ids_in_raw_events(data)["m-0"] == 2
    tracks = query_json(data, "select count(*) as n from tracks")
    assert tracks == [{"n": 31}]

    again = run_loader("once", "--data-dir", str(data), "--json")
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout)["loaded"] == 0
    assert sum(_ids_in_raw_events(data).values()) == 32


def test_query_json_prints_one_array_and_a_table_otherwise(tmp_path: Path) -> None:
    data = tmp_path / "d"
    _store(data, [track_events(3)])
    assert run_loader("once", "--data-dir", str(data)).returncode == 0
    done = run_loader(
        "query",
        "--data-dir",
        str(data),
        "--json",
        "select message_id, timestamp from events order by 1",
    )
    assert done.returncode == 0, done.stderr
    parsed = json.loads(done.stdout)
    assert [r["message_id"] for r in parsed] == ["m-0", "m-1", "m-2"]
    assert parsed[0]["timestamp"].startswith("2024-06-01T12:00:00")
    table = run_loader("query", "--data-dir", str(data), "select message_id from events order by 1")
    assert table.returncode == 0, table.stderr
    assert "m-2" in table.stdout
    assert "3 rows" in table.stdout
    bad = run_loader("query", "--data-dir", str(data), "--json", "select * from nope")
    assert bad.returncode == 1
    assert bad.stdout == ""
    assert "nope" in bad.stderr


def test_status_shows_pending_then_loaded(tmp_path: Path) -> None:
    data = tmp_path / "d"
    _store(data, in_files(track_events(20), 5))
    before = run_loader("status", "--data-dir", str(data), "--json")
    assert before.returncode == 0, before.stderr
    info = json.loads(before.stdout)
    assert (info["listed"], info["loaded"], info["pending"], info["failed"]) == (4, 0, 4, 0)
    assert info["lag_seconds"] >= 0
    assert info["oldest_unloaded"] is not None
    assert info["warehouse"].startswith("duckdb:")
    assert not (data / "warehouse.duckdb").exists()  # status does not create the warehouse

    assert run_loader("once", "--data-dir", str(data)).returncode == 0
    after = json.loads(run_loader("status", "--data-dir", str(data), "--json").stdout)
    assert (after["loaded"], after["pending"], after["lag_seconds"]) == (4, 0, 0.0)
    human = run_loader("status", "--data-dir", str(data))
    assert "pending" in human.stdout


def test_backfill_since_loads_files_stored_since_with_progress(tmp_path: Path) -> None:
    data = tmp_path / "d"
    _store(data, in_files(track_events(12), 4))
    future = run_loader("backfill", "--data-dir", str(data), "--since", "2999-01-01", "--json")
    assert future.returncode == 0, future.stderr
    assert json.loads(future.stdout)["loaded"] == 0
    done = run_loader(
        "backfill", "--data-dir", str(data), "--since", "2000-01-01", "--batch-files", "1"
    )
    assert done.returncode == 0, done.stderr
    assert "loaded 3 files (12 rows)" in done.stdout
    assert "backfill" in done.stderr  # the progress bar (stderr)
    assert sum(_ids_in_raw_events(data).values()) == 12


def test_create_table_makes_the_views(tmp_path: Path) -> None:
    data = tmp_path / "d"
    done = run_loader("create-table", "--data-dir", str(data))
    assert done.returncode == 0, done.stderr
    for view in (
        "events",
        "tracks",
        "identifies",
        "pages",
        "screens",
        "groups",
        "aliases",
        "users",
    ):
        assert query_json(data, f"select count(*) as n from {view}") == [{"n": 0}]


def test_sigkill_mid_pass_then_restart_loads_each_file_once(tmp_path: Path) -> None:
    data = tmp_path / "d"
    events = track_events(2000)
    _store(data, in_files(events, 10))  # 200 files
    for _round in range(2):
        # Paused after "batch 2:", the loader blocks on its next log lines: the kill lands
        # mid-pass however late this process gets the CPU to send it.
        with loader_process(
            "once",
            "--data-dir",
            str(data),
            "--batch-files",
            "1",
            pause_after=lambda line: "batch 2:" in line,
        ) as loader:
            loader.wait_for_line(lambda line: "batch 2:" in line)
            loader.signal(signal.SIGKILL)
            assert loader.wait() == -signal.SIGKILL
    status = json.loads(run_loader("status", "--data-dir", str(data), "--json").stdout)
    assert 0 < status["loaded"] < 200, status  # the kills did land mid-pass
    done = run_loader("once", "--data-dir", str(data), "--json")
    assert done.returncode == 0, done.stderr
    ids = _ids_in_raw_events(data)
    assert set(ids) == {e.message_id for e in events}  # none missing
    assert max(ids.values()) == 1  # none twice


def test_sigterm_finishes_the_batch_in_flight_and_stops(tmp_path: Path) -> None:
    data = tmp_path / "d"
    events = track_events(1500)
    _store(data, in_files(events, 10))  # 150 files
    args = ("run", "--data-dir", str(data), "--batch-files", "1", "--metrics-port", "0")
    # Paused after "batch 1:", the loader blocks on a log line a few batches on: SIGTERM
    # arrives mid-pass however late this process gets the CPU to send it.
    with loader_process(*args, pause_after=lambda line: "batch 1:" in line) as loader:
        loader.wait_for_line(lambda line: "batch 1:" in line)
        loader.signal(signal.SIGTERM)
        loader.resume()
        assert loader.wait(timeout=60) == 0
        log = loader.all_stderr()
    assert "finishing the current batch" in log
    assert "loader stopped" in log
    loaded = query_json(data, "select count(*) as n from raw_events")[0]["n"]
    assert loaded % 10 == 0  # whole files only
    assert 0 < loaded < 1500
    assert run_loader("once", "--data-dir", str(data)).returncode == 0
    ids = _ids_in_raw_events(data)
    assert len(ids) == 1500
    assert max(ids.values()) == 1


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=10) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def test_run_serves_metrics_and_health_on_its_port(tmp_path: Path) -> None:
    data = tmp_path / "d"
    _store(data, in_files(track_events(20), 5))
    port = _free_port()
    args = ("run", "--data-dir", str(data), "--interval", "3600", "--metrics-port", str(port))
    with loader_process(*args) as loader:
        loader.wait_for_line(lambda line: " pass: " in line)
        status, text = _get(f"http://127.0.0.1:{port}/metrics")
        assert status == 200
        values = {
            line.split("{", 1)[0]: float(line.rsplit(" ", 1)[1])
            for line in text.splitlines()
            if line.startswith("eventkit_") and 'stage="pass"' not in line
        }
        assert values["eventkit_warehouse_loader_files_processed_total"] == 4.0
        assert values["eventkit_warehouse_loader_oldest_unloaded_age_seconds"] == 0.0
        assert values["eventkit_warehouse_loader_rows_loaded_total"] == 20.0
        assert values["eventkit_warehouse_loader_pending_files"] == 0.0
        assert "eventkit_uptime_seconds" in values
        status, body = _get(f"http://127.0.0.1:{port}/health")
        assert status == 200
        health = json.loads(body)
        assert health["status"] == "ok"
        assert health["last_pass"]["loaded"] == 4
        loader.signal(signal.SIGTERM)
        assert loader.wait() == 0


def test_disabled_warehouse_loads_nothing(tmp_path: Path) -> None:
    data = tmp_path / "d"
    _store(data, [track_events(2)])
    done = run_loader(
        "once", "--data-dir", str(data), env=loader_env(EVENTKIT_WAREHOUSE_ENABLED="false")
    )
    assert done.returncode == 0, done.stderr
    assert "disabled" in done.stderr
    assert not (data / "warehouse.duckdb").exists()


def test_query_waits_for_a_pass_holding_the_file(tmp_path: Path) -> None:
    data = tmp_path / "d"
    _store(data, [track_events(2)])
    assert run_loader("once", "--data-dir", str(data)).returncode == 0
    writer = duckdb.connect(str(data / "warehouse.duckdb"))  # holds the file as a pass does
    try:
        impatient = run_loader(
            "query",
            "--data-dir",
            str(data),
            "--json",
            "select 1",
            env=loader_env(EVENTKIT_LOCK_TIMEOUT="0.2"),
        )
        assert impatient.returncode == 1
        assert impatient.stdout == ""
        assert "locked" in impatient.stderr
        # Released only once the next query (up to 10 s of patience) says it found the file
        # locked: it really waited, however slowly the process started.
        with loader_process(
            "query", "--data-dir", str(data), "--json", "select count(*) as n from events"
        ) as patient:
            patient.wait_for_line(lambda line: "is locked" in line)
            assert patient.proc.poll() is None
            writer.close()
            assert patient.wait() == 0
            assert patient.proc.stdout is not None
            rows = json.loads(patient.proc.stdout.read().decode())
    finally:
        writer.close()
    assert rows == [{"n": 2}]
