"""Crashes: the collector and the loader SIGKILLed at random moments, again and again.

- The collector (a real ``eventkit-collector serve`` process, embedded default) takes steady load
  from :class:`tests.e2e.faults.LoadGen` and is killed with SIGKILL at random moments (5 times;
  20 with ``EVENTKIT_LONG_TESTS=1``), restarted on the same data dir each time. Every messageId
  that got a 2xx is in the Parquet files; duplicates are no more than the events of requests that
  got no answer; SQLite's integrity check passes after each kill; every visible Parquet file is
  whole.
- The loader (``eventkit-loader once`` against DuckDB, identity pass included) is killed at random
  moments of its passes: then a pass to the end leaves each row once in ``events``, none missing,
  and identities and profiles equal to those of an uninterrupted run over the same files.
"""

from __future__ import annotations

import random
import shutil
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import CollectorProcess, StartCollector, free_port, wait_until
from tests.e2e.faults import (
    LoadGen,
    check_parquet_whole,
    ring_files,
    rounds,
    sqlite_integrity,
    stored_ids,
    visible_files,
)
from tests.loader.ld_support import loader_argv, loader_env, query_json, run_loader, scratch_dir

pytestmark = pytest.mark.slow

COLLECTOR_ENV = {"EVENTKIT_FLUSH_MAX_AGE": "0.3", "EVENTKIT_FLUSH_MAX_EVENTS": "400"}


def _after_kill_checks(data: Path) -> None:
    for db in ring_files(data):
        assert sqlite_integrity(db) == "ok", db
    check_parquet_whole(visible_files(data))


def _more_acks(gen: LoadGen, count: int) -> None:
    before = gen.acked_count()
    wait_until(lambda: gen.acked_count() >= before + count, 60, f"{count} more acknowledged")


def test_collector_sigkilled_at_random_moments_loses_no_acknowledged_event(
    collector_server: StartCollector, tmp_path: Path
) -> None:
    data = tmp_path / "data"
    port = free_port()
    rng = random.Random()
    seed = rng.randrange(1 << 30)
    rng.seed(seed)
    current: list[CollectorProcess] = [collector_server(data, port=port, **COLLECTOR_ENV)]
    kills = rounds(5, 20)
    with LoadGen(lambda: current[0].url, batch=20, rate=30) as gen:
        for n in range(kills):
            # Some load on this instance first, then a random moment within the next second.
            _more_acks(gen, 100)
            time.sleep(rng.uniform(0.0, 1.0))  # the random moment of the kill (not a wait)
            current[0].kill()
            _after_kill_checks(data)
            current[0] = collector_server(data, port=port, **COLLECTOR_ENV)
            assert n < kills
        _more_acks(gen, 100)
    books = gen.snapshot()
    assert current[0].stop() == 0  # SIGTERM: drained and released
    _after_kill_checks(data)

    stored = stored_ids(data)
    missing = books.acked - set(stored)
    assert not missing, f"seed {seed}: {len(missing)} acknowledged events lost"
    assert set(stored) <= books.sent, "rows nobody sent"
    duplicates = sum(stored.values()) - len(stored)
    assert duplicates <= books.unanswered_events, (seed, duplicates, books.unanswered_events)
    assert set(books.statuses) <= {200, 503}, books.statuses
    assert books.statuses[200] > 0
    # The clean stop released everything: a new start has nothing to recover.
    cp = collector_server(data, port=port, **COLLECTOR_ENV)
    assert cp.stop() == 0
    assert "recovering" not in cp.log()


# -- the loader ---------------------------------------------------------------------------------


def _identity_state(data: Path) -> dict[str, Any]:
    """Identities and profiles, comparable across runs (profile ids are content-derived)."""
    return {
        "identities": query_json(data, "select * from identities order by all"),
        "profiles": query_json(data, "select * from profiles order by profile_id"),
        "events": query_json(data, "select message_id, profile_id from events order by message_id"),
    }


def _collect(collector_server: StartCollector, data: Path) -> set[str]:
    """Files for the loader, written by the real collector (identifies merge anonymous ids)."""
    cp = collector_server(data, EVENTKIT_FLUSH_MAX_AGE="0.2", EVENTKIT_FLUSH_MAX_EVENTS="40")
    with LoadGen(lambda: cp.url, batch=40, rate=50) as gen:
        wait_until(lambda: gen.acked_count() >= 4000, 120, "4000 events acknowledged")
    assert cp.stop() == 0
    books = gen.snapshot()
    assert books.statuses[200] == len(books.acked) // 40
    return books.acked


def test_loader_sigkilled_mid_pass_loads_each_row_once_and_identities_converge(
    collector_server: StartCollector, tmp_path: Path
) -> None:
    data = tmp_path / "data"
    acked = _collect(collector_server, data)
    files = len(visible_files(data))
    assert files >= 50, files
    calm = tmp_path / "calm"
    shutil.copytree(data, calm)

    rng = random.Random()
    seed = rng.randrange(1 << 30)
    rng.seed(seed)
    argv = loader_argv("once", "--data-dir", str(data), "--batch-files", "3")
    killed = 0
    for _ in range(rounds(5, 20)):
        proc = subprocess.Popen(
            argv,
            env=loader_env(),
            cwd=scratch_dir(),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        # A random moment of the pass (which lasts seconds: startup, ~20 batches, identity).
        time.sleep(rng.uniform(0.5, 4.0))
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            killed += 1
        proc.wait(30)
    assert killed >= 1, f"seed {seed}: every pass ended before its kill"
    done = run_loader("once", "--data-dir", str(data), "--json")
    assert done.returncode == 0, done.stderr
    calm_done = run_loader("once", "--data-dir", str(calm), "--json")
    assert calm_done.returncode == 0, calm_done.stderr

    rows = query_json(data, "select message_id, count(*) as n from events group by 1")
    assert {r["message_id"] for r in rows} == acked, f"seed {seed}"
    assert max(r["n"] for r in rows) == 1
    raw = query_json(data, "select count(*) as n from raw_events")[0]["n"]
    assert raw == len(acked), f"seed {seed}: files loaded twice ({raw} rows)"
    state = _identity_state(data)
    assert (
        len(state["profiles"]) == 50
    )  # the load generator's 50 users, each merged with its anon id
    assert all(r["profile_id"] for r in state["events"])
    assert state == _identity_state(calm), f"seed {seed}"
