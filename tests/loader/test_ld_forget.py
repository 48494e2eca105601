"""``eventkit-loader forget``: the person's ids end up in no byte under the data dir."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path

import duckdb
import pytest
from eventkit_loader.cli import main
from eventkit_storage.local import LocalErrorStore

from tests.loader.ld_support import T0, loader_env
from tests.loader.test_ld_dead_letters import _letter
from tests.loader.test_ld_profile import person_events, store

ANN_IDS = (b"ann", b"phone", b"laptop", b"Ann@Example", b"ann@example")


def _counts(data: Path) -> dict[str, int]:
    con = duckdb.connect(str(data / "warehouse.duckdb"), read_only=True)
    try:
        rows = con.execute(
            "SELECT coalesce(user_id, anonymous_id), count(*) FROM raw_events GROUP BY 1"
        ).fetchall()
    finally:
        con.close()
    return {str(k): int(n) for k, n in rows}


def _leaks(data: Path) -> list[str]:
    """Files under ``data`` whose raw bytes hold one of Ann's ids."""
    found = []
    for path in data.rglob("*"):
        if path.is_file() and any(i in path.read_bytes() for i in ANN_IDS):
            found.append(str(path.relative_to(data)))
    return found


def _dead_letters(data: Path) -> int:
    con = duckdb.connect(str(data / "warehouse.duckdb"), read_only=True)
    try:
        row = con.execute("SELECT count(*) FROM dead_letters").fetchone()
    finally:
        con.close()
    return int(row[0]) if row else 0


def _loaded(data: Path) -> None:
    store(data, person_events())
    letters = [
        _letter({"type": "track", "userId": "ann"}, "events", T0),  # no event name
        _letter({"type": "track", "userId": "bob"}, "events", T0),
    ]
    asyncio.run(LocalErrorStore(data).store_errors(letters))
    assert main(["once", "--data-dir", str(data)]) == 0


def test_forget_removes_every_byte_and_keeps_others(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = tmp_path / "eventkit-data"
    _loaded(data)
    assert _leaks(data)  # the check can fail: before forget the ids are there
    capsys.readouterr()

    assert (
        main(["forget", "email:ann@example.com", "--dry-run", "--json", "--data-dir", str(data)])
        == 0
    )
    plan = json.loads(capsys.readouterr().out)
    assert set(plan["ids"]) >= {"user_id:ann", "anonymous_id:phone", "anonymous_id:laptop"}
    assert plan["rows"]["raw_events"] == 5
    assert plan["rows"]["dead_letters"] == 1
    assert len(plan["files"]) == 2  # one event file, one dead-letter file
    assert _leaks(data)  # a dry run changes nothing

    assert main(["forget", "email:ann@example.com", "--json", "--data-dir", str(data)]) == 0
    done = json.loads(capsys.readouterr().out)
    assert done["rows"]["raw_events"] == 5
    assert _counts(data) == {"bob": 1}
    assert _dead_letters(data) == 1  # Bob's
    assert _leaks(data) == []
    con = duckdb.connect(str(data / "warehouse.duckdb"), read_only=True)
    try:
        recorded = con.execute("SELECT request_id, files_rewritten FROM deletions").fetchall()
    finally:
        con.close()
    assert recorded == [(done["request_id"], 2)]


def test_unknown_id_is_suppressed_only(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = tmp_path / "eventkit-data"
    _loaded(data)
    capsys.readouterr()
    assert main(["forget", "user_id:nobody", "--data-dir", str(data)]) == 0
    assert "no profile has user_id:nobody" in capsys.readouterr().out
    assert _counts(data) == {"phone": 1, "laptop": 1, "ann": 3, "bob": 1}
    assert main(["forget", "nobody", "--data-dir", str(data)]) == 1
    assert "TYPE:VALUE" in capsys.readouterr().err


@pytest.mark.parametrize("step", ["suppress", "load", "warehouse", "file"])
def test_forget_killed_midway_then_rerun(tmp_path: Path, step: str) -> None:
    data = tmp_path / "eventkit-data"
    _loaded(data)
    argv = [sys.executable, "-m", "eventkit_loader.cli", "forget", "user_id:ann"]
    argv += ["--data-dir", str(data)]
    env = loader_env(EVENTKIT_FORGET_CRASH_AFTER=step)
    killed = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=120)
    assert killed.returncode == -9, killed.stderr
    assert f"forget: {step} done" in killed.stderr
    rerun = subprocess.run(argv, env=loader_env(), capture_output=True, text=True, timeout=120)
    assert rerun.returncode == 0, rerun.stderr
    assert _counts(data) == {"bob": 1}  # nothing loaded twice, everyone else kept
    assert _dead_letters(data) == 1
    assert _leaks(data) == []
