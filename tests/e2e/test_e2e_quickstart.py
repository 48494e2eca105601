"""The root README's quick start, run as written: the curl, ``once --wait``, the query.

The collector runs as the README starts it (``eventkit-collector``, embedded defaults, in the
directory the commands run in); only its ports are free ones instead of 8000 and 9090, and
``uv run`` is the test's own environment. The block's lines run back to back, faster than anyone
types them: the event must be in the query's output all the same.
"""

from __future__ import annotations

import contextlib
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.e2e.conftest import free_port, wait_until

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


def quick_start_block() -> str:
    """The bash block after "Send an event and look at it:" in the root README."""
    text = (ROOT / "README.md").read_text()
    found = re.search(r"Send an event and look at it:\n\n```bash\n(.*?)```", text, re.S)
    assert found, "the README's quick start block is missing"
    return found.group(1)


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("EVENTKIT_", "GCP_"))}
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
    env.update(extra)
    return env


@pytest.fixture
def collector(tmp_path: Path) -> Iterator[int]:
    """``eventkit-collector`` on embedded defaults in ``tmp_path``; yields its port."""
    port, metrics = free_port(), free_port()
    log_path = tmp_path / "collector.log"
    env = _env(EVENTKIT_PORT=str(port), EVENTKIT_METRICS_PORT=str(metrics))
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [str(BIN / "eventkit-collector")],
            cwd=tmp_path,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )

    def ready() -> bool:
        if proc.poll() is not None:
            raise AssertionError(f"collector exited: {log_path.read_text()}")
        with contextlib.suppress(httpx.HTTPError):
            return httpx.get(f"http://127.0.0.1:{port}/ready", timeout=2).status_code == 200
        return False

    try:
        wait_until(ready, 120, "the collector to become ready")
        yield port
    finally:
        proc.terminate()
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


def test_quick_start_block_shows_the_event(tmp_path: Path, collector: int) -> None:
    block = quick_start_block()
    assert "127.0.0.1:8000" in block
    assert "once --wait" in block
    script = block.replace("127.0.0.1:8000", f"127.0.0.1:{collector}").replace("uv run ", "")
    done = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", script],
        cwd=tmp_path,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    # The loader said what it waited for (the file comes after the flush age), then loaded it.
    assert "waiting up to 30 s for the collector" in done.stderr, done.stderr
    assert "loaded 1 files (1 rows)" in done.stdout, done.stdout
    assert "identify" in done.stdout, done.stdout
    assert "user_123" in done.stdout, done.stdout
    assert "enterprise" in done.stdout, done.stdout


def test_once_wait_says_when_nothing_came(tmp_path: Path) -> None:
    """No collector: ``--wait 1`` says it waited in vain, loads nothing, and exits 0."""
    done = subprocess.run(
        [str(BIN / "eventkit-loader"), "once", "--wait", "1", "--data-dir", str(tmp_path / "d")],
        env=_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert "waiting up to 1 s" in done.stderr, done.stderr
    assert "no new file in" in done.stderr, done.stderr
    assert "after 1 s" in done.stderr, done.stderr
    assert "loaded 0 files" in done.stdout, done.stdout
