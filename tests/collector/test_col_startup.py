"""Start-up as an operator sees it: a port in use, the "listening" line, ``--help``.

The collector and the loader run as real processes (``python -m ...``) against a port the test
holds, so what is asserted is exactly what a terminal shows.
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from eventkit_collector.cli import build_parser as collector_parser
from eventkit_collector.cli import main as collector_main
from eventkit_loader.cli import build_parser as loader_parser

from tests.collector.hostile_support import free_port, start_server


@pytest.fixture
def held_port() -> Iterator[int]:
    """A port something else listens on (plain bind, as most servers do)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        yield s.getsockname()[1]


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("EVENTKIT_")}
    env.update(extra)
    return env


def run_collector(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "eventkit_collector.cli", "--data-dir", str(tmp_path / "d"), *args],
        env=_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )


def assert_one_line(proc: subprocess.CompletedProcess[str], *needles: str) -> str:
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])
    return lines[0]


def test_http_port_in_use_is_one_line_and_exit_3(tmp_path: Path, held_port: int) -> None:
    proc = run_collector(tmp_path, "--port", str(held_port), "--metrics-port", str(free_port()))
    assert proc.returncode == 3, proc.stderr
    line = assert_one_line(proc, f"port {held_port}", "--port", "EVENTKIT_PORT", "in use")
    assert line.startswith("eventkit-collector: cannot start: HTTP port")


def main_in_process(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, *args: str
) -> subprocess.CompletedProcess[str]:
    """``eventkit-collector ARGS`` in this process (the checks run before anything starts)."""
    import eventkit_collector.server as server

    monkeypatch.setattr(server, "configure_logging", lambda level: None)
    for key in [k for k in os.environ if k.startswith("EVENTKIT_")]:
        monkeypatch.delenv(key)
    code = collector_main(["--data-dir", str(tmp_path / "d"), *args])
    out = capsys.readouterr()
    return subprocess.CompletedProcess(args, code, out.out, out.err)


def test_metrics_port_in_use_is_one_line_and_exit_3(
    tmp_path: Path,
    held_port: int,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    args = ["--port", str(free_port()), "--metrics-port", str(held_port)]
    proc = main_in_process(tmp_path, capsys, monkeypatch, *args)
    assert proc.returncode == 3, proc.stderr
    assert_one_line(proc, f"port {held_port}", "--metrics-port", "EVENTKIT_METRICS_PORT")
    assert not (tmp_path / "d" / "ring").exists()  # refused before anything was opened


def test_a_workers_metrics_port_in_use_is_one_line_and_exit_3(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # worker n serves metrics on metrics port + n: hold worker 1's (worker 0's is free)
    base = free_port(2)
    with socket.socket() as held:
        held.bind(("127.0.0.1", base + 1))
        held.listen()
        args = ["--port", str(free_port()), "--workers", "2", "--metrics-port", str(base)]
        proc = main_in_process(tmp_path, capsys, monkeypatch, *args)
    assert proc.returncode == 3, proc.stderr
    assert_one_line(proc, "worker 1's metrics port", str(base + 1), "--metrics-port")


def test_the_http_port_of_workers_in_use_is_one_line_too(
    tmp_path: Path,
    held_port: int,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    args = ["--port", str(held_port), "--workers", "2", "--metrics-port", "0"]
    proc = main_in_process(tmp_path, capsys, monkeypatch, *args)
    assert proc.returncode == 3, proc.stderr
    assert_one_line(proc, f"HTTP port {held_port}", "--port")


def test_listening_is_logged_once_ready_with_the_metrics_port(tmp_path: Path) -> None:
    server = start_server(tmp_path, EVENTKIT_LOG_LEVEL="info", EVENTKIT_WRITE_KEYS="")
    try:
        log = server.log()
        line = (
            f"eventkit collector listening on http://127.0.0.1:{server.port} (shard auto); "
            f"metrics on http://127.0.0.1:{server.metrics_port}/metrics"
        )
        assert log.count("collector listening") == 1, log
        assert line in log, log
        # after the application (ring buffer, pipeline, metrics) started, not before
        assert log.index("Application startup complete") < log.index(line), log
        assert log.index("pipeline started") < log.index(line), log
    finally:
        assert server.stop() == 0


def test_collector_help_shows_metavars_and_variables(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        collector_parser().parse_args(["--help"])
    text = capsys.readouterr().out
    for option in ("--port PORT", "--metrics-port PORT", "--data-dir DIR", "--workers N"):
        assert option in text, option
    for action in collector_parser()._actions:
        if action.option_strings and action.dest.startswith("eventkit_"):
            assert action.dest.upper() in (action.help or ""), action.option_strings
    assert not re.search(r"--\w[\w-]* EVENTKIT_", text), "a raw dest name as a metavar"


def test_loader_help_shows_metavars(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        loader_parser().parse_args(["run", "--help"])
    text = capsys.readouterr().out
    for option in ("--metrics-port PORT", "--data-dir DIR", "--interval SECONDS"):
        assert option in text, option
    assert "METRICS_PORT" not in text.replace("EVENTKIT_METRICS_PORT", "")
    assert "DATA_DIR" not in text.replace("EVENTKIT_DATA_DIR", "")


def run_loader(tmp_path: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "eventkit_loader", "run", "--data-dir", str(tmp_path), *args],
        env=_env(EVENTKIT_WAREHOUSE_ENABLED="true", **env),
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_loader_metrics_port_in_use_is_one_line_and_exit_2(tmp_path: Path, held_port: int) -> None:
    proc = run_loader(tmp_path, "--metrics-port", str(held_port))
    assert proc.returncode == 2, proc.stderr
    assert_one_line(proc, f"port {held_port}", "--metrics-port", "EVENTKIT_METRICS_PORT")


def test_loader_profiles_port_in_use_is_one_line_and_exit_2(tmp_path: Path, held_port: int) -> None:
    proc = run_loader(
        tmp_path,
        "--metrics-port",
        str(free_port()),
        "--profiles-port",
        str(held_port),
        EVENTKIT_PROFILES_TOKEN="t0ken",
    )
    assert proc.returncode == 2, proc.stderr
    assert_one_line(proc, f"port {held_port}", "--profiles-port", "EVENTKIT_PROFILES_PORT")
