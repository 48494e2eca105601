"""Fixtures of the SDK compatibility tests: a collector process, the browser, the site, the proxy.

The tests share one real collector process per session (``eventkit-collector serve``, started as
``tests/e2e`` does; on a busy 2-core machine a start takes up to ~30 s, so one per test would cost
minutes), with write keys on, analytics.js's bundles served and a short flush age so Parquet files
appear quickly. Each test reads back only its own events (by message id or anonymous id).
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pyarrow.parquet as pq
import pytest

from tests.clients import node_modules
from tests.clients.browser import Browser, Site
from tests.compat.fault_proxy import FaultProxy
from tests.e2e.conftest import CollectorProcess, free_port, wait_until

#: Files are written within this many seconds of an event's arrival.
FAST_FLUSH = {"EVENTKIT_FLUSH_MAX_AGE": "0.2", "EVENTKIT_METRICS_ENABLED": "false"}
#: The write key every SDK is configured with (auth is on: a wrong key would be a 401).
WRITE_KEY = "compat-write-key"
#: Snowplow trackers send no key: with keys on, the collector accepts these app ids.
SNOWPLOW_APP_ID = "compat-web"


def umd_dir() -> Path:
    """analytics-next's ``dist/umd``: the standalone script and its chunk bundles."""
    return node_modules() / "node_modules" / "@segment" / "analytics-next" / "dist" / "umd"


def start_collector(data: Path, log_path: Path, env: dict[str, str]) -> CollectorProcess:
    """``python -m eventkit_collector.cli serve`` on a free port, once ``/ready`` answers 200."""
    port = free_port()
    environ = {k: v for k, v in os.environ.items() if not k.startswith("EVENTKIT_")}
    environ.update({"EVENTKIT_LOG_LEVEL": "info", "PYTHONUNBUFFERED": "1", **env})
    args = [sys.executable, "-m", "eventkit_collector.cli", "serve", "--port", str(port)]
    args += ["--data-dir", str(data)]
    with log_path.open("wb") as log_file:
        proc = subprocess.Popen(args, env=environ, stdout=log_file, stderr=subprocess.STDOUT)
    cp = CollectorProcess(proc, port, 0, data, log_path, args)

    def ready() -> bool:
        if proc.poll() is not None:
            raise AssertionError(f"collector exited with {proc.returncode}:\n{cp.log()}")
        with contextlib.suppress(httpx.HTTPError):
            return httpx.get(f"{cp.url}/ready", timeout=2.0).status_code == 200
        return False

    wait_until(ready, 120.0, "the collector to become ready")
    return cp


def rows(root: Path) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    base = root / "events"
    for f in sorted(base.rglob("*.parquet")) if base.exists() else []:
        out.extend(pq.read_table(f).to_pylist())
    return out


def dead_letters(root: Path) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    base = root / "dead-letters"
    for f in sorted(base.rglob("*.parquet")) if base.exists() else []:
        out.extend(pq.read_table(f).to_pylist())
    return out


def landed(
    collector: CollectorProcess,
    count: int,
    where: Callable[[dict[str, Any]], bool] = lambda r: True,
    timeout: float = 60.0,
) -> dict[str, dict[str, Any]]:
    """Wait until ``count`` distinct message ids matching ``where`` are stored; them, by id.

    Distinct ids are the warehouse's view (``events`` dedupes on message_id): a retried request
    the collector had already stored lands twice in the files and once there.
    """
    found: dict[str, dict[str, Any]] = {}

    def enough() -> bool:
        found.clear()
        found.update({r["message_id"]: r for r in rows(collector.data_dir) if where(r)})
        return len(found) >= count

    try:
        wait_until(enough, timeout, f"{count} events in Parquet")
    except AssertionError:
        raise AssertionError(
            f"only {len(found)} of {count} events landed: {sorted(found)}\n"
            f"dead letters: {dead_letters(collector.data_dir)}\ncollector log:\n{collector.log()}"
        ) from None
    return found


@pytest.fixture(scope="session")
def collector(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CollectorProcess]:
    root = tmp_path_factory.mktemp("compat-collector")
    env = {
        **FAST_FLUSH,
        "EVENTKIT_WRITE_KEYS": WRITE_KEY,
        "EVENTKIT_SEGMENT_BUNDLES_DIR": str(umd_dir()),
        "EVENTKIT_SNOWPLOW_APP_IDS": SNOWPLOW_APP_ID,
    }
    cp = start_collector(root / "data", root / "collector.log", env)
    yield cp
    cp.stop()


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    # Module scope, not session: playwright's sync API keeps an event loop running in this
    # thread until it stops, and every asyncio test run meanwhile would fail to start its own.
    b = Browser()
    yield b
    b.close()


@pytest.fixture(scope="session")
def site() -> Iterator[Site]:
    s = Site()
    yield s
    s.close()


@pytest.fixture
def fault_proxy() -> Iterator[Callable[..., FaultProxy]]:
    made: list[FaultProxy] = []

    def make(upstream: str, refuse: int, **kwargs: Any) -> FaultProxy:
        proxy = FaultProxy(upstream, refuse, **kwargs)
        made.append(proxy)
        return proxy

    yield make
    for p in made:
        p.close()
