"""``eventkit-loader dead-letters``: counts by stream and reason, samples, filters, text and JSON.

The dead letters are made as the collector makes them (the Segment adapter rejects the payloads,
``DeadLetter.from_raw``) and written by the storage library's local error store.
"""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from eventkit_core import DeadLetter, RawEvent
from eventkit_loader.cli import main
from eventkit_storage.local import LocalErrorStore
from eventkit_validators import SegmentSchemaAdapter

EARLY = datetime(2024, 6, 1, 9, 30, tzinfo=UTC)
LATE = datetime(2024, 6, 2, 14, 5, tzinfo=UTC)


def _letter(payload: Any, stream: str, received_at: datetime) -> DeadLetter:
    raw = RawEvent(payload=payload, stream=stream, source="track", received_at=received_at)
    result = SegmentSchemaAdapter().adapt(raw)
    assert result.error is not None, f"the adapter must reject {payload!r}"
    return DeadLetter.from_raw(raw, result.error)


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    letters = [
        # events: 3 missing_field (2 early, 1 late), 1 invalid_type (late)
        _letter({"type": "track", "userId": "u1"}, "events", EARLY),
        _letter({"type": "track", "event": "E"}, "events", EARLY),
        _letter({"type": "track", "userId": "u3", "n": 3}, "events", LATE),
        _letter({"type": "bogus", "userId": "u4"}, "events", LATE),
        # pages: 1 not_an_object (late)
        _letter(5, "pages", LATE),
    ]
    asyncio.run(LocalErrorStore(tmp_path).store_errors(letters))
    assert len(list((tmp_path / "dead-letters").rglob("*.parquet"))) == 3  # per stream and hour
    return tmp_path


def _json(capsys: pytest.CaptureFixture[str], data: Path, *args: str) -> dict[str, Any]:
    assert main(["dead-letters", "--data-dir", str(data), "--json", *args]) == 0
    out: dict[str, Any] = json.loads(capsys.readouterr().out)
    return out


def _counts(out: dict[str, Any]) -> list[tuple[str, str, int]]:
    return [(g["stream"], g["reason_code"], g["count"]) for g in out["groups"]]


def test_json_groups_by_stream_and_reason_with_samples(
    data_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = _json(capsys, data_dir)
    assert out["total"] == 5
    assert _counts(out) == [
        ("events", "missing_field", 3),
        ("events", "invalid_type", 1),
        ("pages", "not_an_object", 1),
    ]
    missing = out["groups"][0]
    assert set(missing) == {"stream", "reason_code", "count", "samples"}
    payloads = [json.loads(s["payload"]) for s in missing["samples"]]
    assert {"type": "track", "userId": "u1"} in payloads
    assert all("required" in s["reason"] for s in missing["samples"])
    assert out["groups"][2]["samples"][0]["payload"] == "5"


def test_filters_stream_since_and_reason(
    data_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert _counts(_json(capsys, data_dir, "--stream", "pages")) == [("pages", "not_an_object", 1)]
    assert _counts(_json(capsys, data_dir, "--since", "2024-06-02")) == [
        ("events", "invalid_type", 1),
        ("events", "missing_field", 1),
        ("pages", "not_an_object", 1),
    ]
    # an ISO time inside the early hour keeps the hour's folder but drops the earlier rows
    assert _json(capsys, data_dir, "--since", "2024-06-01T09:31:00Z")["total"] == 3
    only = _json(capsys, data_dir, "--reason", "missing_field", "--samples", "1")
    assert _counts(only) == [("events", "missing_field", 3)]
    assert len(only["groups"][0]["samples"]) == 1
    assert _json(capsys, data_dir, "--reason", "no_such_code") == {"total": 0, "groups": []}


def test_text_lists_counts_and_samples(data_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["dead-letters", "--data-dir", str(data_dir)]) == 0
    out = capsys.readouterr().out
    assert "5 dead letters in 3 groups" in out
    lines = out.splitlines()
    assert any(line.split() == ["events", "missing_field", "3"] for line in lines)
    assert any(line.split() == ["pages", "not_an_object", "1"] for line in lines)
    assert '{"type":"bogus","userId":"u4"}' in out.replace(" ", "")


def test_no_dead_letters_and_bad_options(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert _json(capsys, tmp_path) == {"total": 0, "groups": []}
    assert main(["dead-letters", "--data-dir", str(tmp_path)]) == 0
    assert "no dead letters" in capsys.readouterr().out
    for bad in (["--since", "yesterday"], ["--stream", "no/slash"]):
        with pytest.raises(SystemExit) as exc:
            main(["dead-letters", "--data-dir", str(tmp_path), *bad])
        assert exc.value.code == 2


def test_help_names_metavars_and_environment(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["dead-letters", "--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    for text in ("--stream STREAM", "--since DATE", "--reason CODE", "--json", "EVENTKIT_DATA_DIR"):
        assert text in out


def _status(capsys: pytest.CaptureFixture[str], data: Path) -> dict[str, Any]:
    assert main(["status", "--data-dir", str(data), "--json"]) == 0
    out: dict[str, Any] = json.loads(capsys.readouterr().out)
    return out


def test_a_pass_loads_dead_letters_once_into_the_table(
    data_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    before = _status(capsys, data_dir)
    assert before["dead_letters"] == {"files": 3, "loaded": 0, "pending": 3}
    assert before["listed"] == 0  # event files are counted apart

    assert main(["once", "--data-dir", str(data_dir), "--json"]) == 0
    first = json.loads(capsys.readouterr().out)
    assert (first["dead_letter_files"], first["dead_letter_rows"]) == (3, 5)
    assert main(["once", "--data-dir", str(data_dir), "--json"]) == 0
    again = json.loads(capsys.readouterr().out)
    assert (again["dead_letter_files"], again["dead_letter_rows"]) == (0, 0)

    sql = (
        "select stream, reason_code, count(*) as n, count(distinct payload) as p "
        "from dead_letters group by 1, 2 order by 1, 2"
    )
    assert main(["query", "--data-dir", str(data_dir), "--json", sql]) == 0
    assert json.loads(capsys.readouterr().out) == [
        {"stream": "events", "reason_code": "invalid_type", "n": 1, "p": 1},
        {"stream": "events", "reason_code": "missing_field", "n": 3, "p": 3},
        {"stream": "pages", "reason_code": "not_an_object", "n": 1, "p": 1},
    ]
    after = _status(capsys, data_dir)
    assert after["dead_letters"] == {"files": 3, "loaded": 3, "pending": 0}
    assert main(["status", "--data-dir", str(data_dir)]) == 0
    assert "dead letters: 3 files, 3 loaded, 0 pending" in capsys.readouterr().out

    # a new dead-letter file is loaded by the next pass, the old ones are not loaded again
    asyncio.run(
        LocalErrorStore(data_dir).store_errors([_letter([1], "pages", LATE.replace(hour=20))])
    )
    assert _status(capsys, data_dir)["dead_letters"]["pending"] == 1
    assert main(["once", "--data-dir", str(data_dir), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["dead_letter_rows"] == 1
    assert main(["query", "--data-dir", str(data_dir), "--json", sql]) == 0
    assert json.loads(capsys.readouterr().out)[-1]["n"] == 2
