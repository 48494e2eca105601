"""The command line: every subcommand has help, options go after it, errors say what to do."""

from __future__ import annotations

import argparse
from datetime import UTC, datetime
from pathlib import Path

import pytest
from eventkit_loader.cli import build_parser, main, parse_since, settings_from

COMMANDS = [
    "run",
    "once",
    "backfill",
    "create-table",
    "status",
    "replay-dead-letters",
    "dead-letters",
    "query",
]


@pytest.mark.parametrize("command", COMMANDS)
def test_every_subcommand_has_help(command: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main([command, "--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    assert f"eventkit-loader {command}" in out
    assert "--data-dir" in out


def test_top_level_help_lists_every_subcommand(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    for command in COMMANDS:
        assert command in out


def test_options_after_the_subcommand_win(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EVENTKIT_DATA_DIR", "/env")
    args = build_parser().parse_args(["once", "--data-dir", "/cli", "--batch-files", "7"])
    s = settings_from(args)
    assert s.data_dir == Path("/cli")
    assert s.loader_batch_files == 7


def test_options_before_the_subcommand_work_too(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("EVENTKIT_DATA_DIR", raising=False)
    args = build_parser().parse_args(["--data-dir", "/before", "status"])
    assert settings_from(args).data_dir == Path("/before")


def test_run_options(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("EVENTKIT_METRICS_ENABLED", raising=False)
    args = build_parser().parse_args(
        ["run", "--interval", "5", "--metrics-port", "9999", "--no-metrics"]
    )
    s = settings_from(args)
    assert (s.loader_interval, s.metrics_port, s.metrics_enabled) == (5.0, 9999, False)


def test_since_parses_dates_and_times() -> None:
    assert parse_since("2024-03-02") == datetime(2024, 3, 2, tzinfo=UTC)
    assert parse_since("2024-03-02T10:30:00") == datetime(2024, 3, 2, 10, 30, tzinfo=UTC)
    assert parse_since("2024-03-02T10:30:00+02:00") == datetime(2024, 3, 2, 8, 30, tzinfo=UTC)
    with pytest.raises(argparse.ArgumentTypeError, match="YYYY-MM-DD"):
        parse_since("yesterday")


def test_bad_settings_exit_2_with_the_variable_name(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("GCP_GCS_BUCKET", raising=False)
    assert main(["status", "--event-store", "gcs", "--project", "p"]) == 2
    assert "GCP_GCS_BUCKET" in capsys.readouterr().err


def test_query_without_a_warehouse_says_to_load_first(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["query", "--data-dir", str(tmp_path), "--json", "select 1"]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "eventkit-loader once" in captured.err


def test_backfill_needs_since(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["backfill"])
    assert exc.value.code == 2
    assert "--since" in capsys.readouterr().err
