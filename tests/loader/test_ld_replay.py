"""Replaying dead letters after a rule is relaxed: stored once, loaded once, reported honestly."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path

import pytest
from eventkit_core import DeadLetter, RawEvent
from eventkit_loader.backends import replay_adapter
from eventkit_loader.replay import replay_dead_letters
from eventkit_loader.settings import load_settings
from eventkit_loader.state import LoaderState
from eventkit_storage.local import LocalErrorStore, LocalEventStore
from eventkit_validators import RulesAdapter, SegmentSchemaAdapter, parse_rules

from tests.loader.ld_support import loader_env, query_json, run_loader

pytestmark = pytest.mark.slow

STRICT = """
[streams.events]
required = ["userId", "properties.plan"]
"""
RELAXED = """
[streams.events]
required = ["userId"]
"""
RECEIVED = datetime(2024, 6, 1, 9, 30, tzinfo=UTC)


def _raw(payload: dict[str, object], message_id: str | None = None) -> RawEvent:
    return RawEvent(
        payload=payload,
        stream="events",
        source="track",
        received_at=RECEIVED,
        message_id=message_id,
    )


def _dead_letters(data_dir: Path) -> list[str]:
    """What the collector did under the strict rules: adapt, and dead-letter the failures."""
    adapter = RulesAdapter(SegmentSchemaAdapter(), parse_rules(STRICT))
    raws = [
        # passes once `properties.plan` is no longer required
        _raw({"type": "track", "event": "Signed Up", "userId": "u1", "messageId": "dl-1"}),
        # no messageId in the payload: the collector gave the raw event a stable one
        _raw({"type": "track", "event": "Signed Up", "userId": "u2"}, message_id="dl-2"),
        # still fails: no userId
        _raw({"type": "track", "event": "Signed Up", "anonymousId": "a3", "messageId": "dl-3"}),
    ]
    letters: list[DeadLetter] = []
    for raw in raws:
        result = adapter.adapt(raw)
        assert result.error is not None, "the strict rules must reject it"
        letters.append(DeadLetter.from_raw(raw, result.error))
    asyncio.run(LocalErrorStore(data_dir).store_errors(letters))
    return ["dl-1", "dl-2"]


def _replay(data: Path, rules: Path, *extra: str) -> dict[str, object]:
    done = run_loader(
        "replay-dead-letters",
        "--data-dir",
        str(data),
        "--stream",
        "events",
        "--json",
        *extra,
        env=loader_env(EVENTKIT_RULES_FILE=str(rules)),
    )
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert isinstance(report, dict)
    return report


def test_relaxed_rule_replays_into_the_warehouse_once(tmp_path: Path) -> None:
    data = tmp_path / "d"
    expected = _dead_letters(data)
    strict, relaxed = tmp_path / "strict.toml", tmp_path / "relaxed.toml"
    strict.write_text(STRICT)
    relaxed.write_text(RELAXED)

    unchanged = _replay(data, strict)
    assert unchanged["replayed"] == 0
    assert unchanged["still_failing_by_reason"] == {"rule_failed": 3}

    dry = _replay(data, relaxed, "--dry-run")
    assert dry["replayed"] == 2
    assert not (data / "events").exists()

    first = _replay(data, relaxed, "--load")
    assert first["replayed"] == 2
    assert first["still_failing_by_reason"] == {"rule_failed": 1}
    assert first["load"]["loaded"] == 1  # type: ignore[index]

    second = _replay(data, relaxed, "--load")
    assert second["replayed"] == 0
    assert second["already_replayed"] == 2
    assert second["files"] == []
    assert run_loader("once", "--data-dir", str(data)).returncode == 0

    rows = query_json(data, "select message_id, user_id, event from events order by 1")
    assert [r["message_id"] for r in rows] == expected
    raw = query_json(data, "select message_id, count(*) as n from raw_events group by 1 order by 1")
    assert raw == [{"message_id": "dl-1", "n": 1}, {"message_id": "dl-2", "n": 1}]


def test_replay_text_report_names_the_reasons(tmp_path: Path) -> None:
    data = tmp_path / "d"
    _dead_letters(data)
    strict = tmp_path / "strict.toml"
    strict.write_text(STRICT)
    done = run_loader(
        "replay-dead-letters",
        "--data-dir",
        str(data),
        "--stream",
        "events",
        "--rules-file",
        str(strict),
    )
    assert done.returncode == 0, done.stderr
    assert "3 dead letters read, replayed 0" in done.stdout
    assert "rule_failed x3" in done.stdout


def test_missing_rules_file_is_a_usage_error(tmp_path: Path) -> None:
    done = run_loader(
        "replay-dead-letters",
        "--data-dir",
        str(tmp_path),
        "--stream",
        "events",
        "--rules-file",
        str(tmp_path / "nope.toml"),
    )
    assert done.returncode == 2
    assert "does not exist" in done.stderr


def test_invalid_stream_is_refused(tmp_path: Path) -> None:
    done = run_loader("replay-dead-letters", "--data-dir", str(tmp_path), "--stream", "../x")
    assert done.returncode == 2
    assert "invalid" in done.stderr


class _CrashingState(LoaderState):
    """A replay ledger whose write fails: a replay killed after storing, before recording."""

    def record_replayed(self, entries: Iterable[tuple[str, str, str | None, str | None]]) -> None:
        raise OSError("killed")


async def test_a_replay_killed_before_its_ledger_write_stores_the_same_file_again(
    tmp_path: Path,
) -> None:
    data = tmp_path / "d"
    await asyncio.to_thread(_dead_letters, data)
    settings = load_settings(data_dir=data, rules_file=tmp_path / "relaxed.toml")
    settings.rules_file.write_text(RELAXED)  # type: ignore[union-attr]
    adapter = replay_adapter(settings)
    store = LocalEventStore(data)
    common = {
        "errors": LocalErrorStore(data),
        "events": store,
        "adapter": adapter,
    }
    with pytest.raises(OSError, match="killed"):
        await replay_dead_letters("events", state=_CrashingState(settings.state_path), **common)  # type: ignore[arg-type]
    first = await store.list_files()
    report = await replay_dead_letters("events", state=LoaderState(settings.state_path), **common)  # type: ignore[arg-type]
    assert report.replayed == 2
    assert [f.path for f in await store.list_files()] == [f.path for f in first]  # same file
    assert report.files == [f.path for f in first]
