"""Events that go to the dead letters are logged, at most one line per stream and reason a minute.

A real collector (in-process, local stores) takes bad events; its log says so once per kind with
a count, and the loader's ``dead-letters`` command lists what it wrote.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
from eventkit_collector.app import Collector
from eventkit_collector.deadlog import DeadLetterLog

from tests.collector.test_col_pipeline import serving, settings
from tests.loader.ld_support import run_loader

LOGGER = "eventkit_collector.dead_letters"


def _lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == LOGGER]


async def test_a_collector_logs_dead_letters_once_per_kind(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, LOGGER)
    s = settings(tmp_path)
    async with serving(Collector(s)) as c:
        for i in range(5):  # track without event: missing_field, five times
            r = await c.post("/v1/track", json={"type": "track", "userId": f"u{i}"})
            assert r.status_code == 200
        batch = {"batch": [7, {"type": "track", "event": "ok", "userId": "u"}]}
        assert (await c.post("/v1/batch", json=batch)).status_code == 200
    lines = _lines(caplog)
    missing = [line for line in lines if "(missing_field)" in line]
    assert len(missing) == 1, lines  # five dead letters within a minute: one line
    assert missing[0].startswith("1 event(s) of stream events went to the dead letters")
    assert "event is required for track" in missing[0]
    assert len([line for line in lines if "(not_an_object)" in line]) == 1, lines

    # what the collector wrote, as the loader (a process of its own) lists it
    done = run_loader("dead-letters", "--data-dir", str(s.eventkit_data_dir), "--json")
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    counts = {(g["stream"], g["reason_code"]): g["count"] for g in out["groups"]}
    assert out["total"] == 6
    assert counts[("events", "missing_field")] == 5
    assert sum(n for (_, code), n in counts.items() if code == "not_an_object") == 1


def test_the_next_line_after_the_interval_carries_the_count(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, LOGGER)
    now = [100.0]
    dead = DeadLetterLog(interval=60, clock=lambda: now[0])
    dead.record("events", "missing_field", "userId is required")
    for _ in range(41):
        now[0] += 1
        dead.record("events", "missing_field", "userId is required")
    dead.record("pages", "missing_field", "userId is required")  # another stream: its own line
    assert [m.split(" went")[0] for m in _lines(caplog)] == [
        "1 event(s) of stream events",
        "1 event(s) of stream pages",
    ]
    now[0] += 60
    dead.record("events", "missing_field", "userId is required", count=2)
    assert _lines(caplog)[-1].startswith("43 event(s) of stream events")
