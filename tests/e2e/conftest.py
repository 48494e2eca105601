"""End-to-end fixtures: the real collector server process (``eventkit-collector serve``).

``collector_server(data_dir, **env)`` starts ``python -m eventkit_collector.cli serve`` on free
ports with the given ``EVENTKIT_*`` / ``GCP_*`` environment, waits (polling ``/health``) until it
answers, and returns a :class:`CollectorProcess`. Every process started is stopped at the end of
the test (SIGTERM, then SIGKILL if it does not stop).
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@dataclass
class CollectorProcess:
    proc: subprocess.Popen[bytes]
    port: int
    metrics_port: int
    data_dir: Path
    log_path: Path
    args: list[str] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def metrics_url(self) -> str:
        return f"http://127.0.0.1:{self.metrics_port}"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 60.0) -> int:
        """Send ``sig`` and wait for the exit code (SIGKILL after ``timeout``)."""
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        return self.proc.returncode

    def kill(self) -> None:
        """``kill -9``: no drain, no flush."""
        self.stop(signal.SIGKILL)


def wait_until(condition: Callable[[], bool], timeout: float = 60.0, what: str = "") -> None:
    """Poll ``condition`` until true; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout} s waiting for {what or condition}")


StartCollector = Callable[..., CollectorProcess]


@pytest.fixture
def collector_server(tmp_path: Path) -> Iterator[StartCollector]:
    started: list[CollectorProcess] = []

    def start(
        data_dir: Path | None = None,
        *,
        workers: int = 1,
        port: int | None = None,
        extra_args: list[str] | None = None,
        **env: str,
    ) -> CollectorProcess:
        data = data_dir or tmp_path / "data"
        port = port or free_port()
        metrics_port = free_port()
        environ = {k: v for k, v in os.environ.items() if not k.startswith("EVENTKIT_")}
        environ.update({"EVENTKIT_LOG_LEVEL": "info", "PYTHONUNBUFFERED": "1"})
        environ.update(env)
        args = [
            sys.executable,
            "-m",
            "eventkit_collector.cli",
            "serve",
            "--port",
            str(port),
            "--data-dir",
            str(data),
            "--metrics-port",
            str(metrics_port),
            "--workers",
            str(workers),
            *(extra_args or []),
        ]
        log_path = tmp_path / f"collector-{len(started)}.log"
        with log_path.open("wb") as log_file:
            proc = subprocess.Popen(args, env=environ, stdout=log_file, stderr=subprocess.STDOUT)
        cp = CollectorProcess(proc, port, metrics_port, data, log_path, args)
        started.append(cp)

        def healthy() -> bool:
            if proc.poll() is not None:
                raise AssertionError(f"collector exited with {proc.returncode}:\n{cp.log()}")
            with contextlib.suppress(httpx.HTTPError):
                return httpx.get(f"{cp.url}/ready", timeout=1.0).status_code == 200
            return False

        wait_until(healthy, 90.0, "the collector to become ready")
        for n in range(workers if workers > 1 else 0):  # worker n: /health on metrics_port + n

            def worker_ready(n: int = n) -> bool:
                with contextlib.suppress(httpx.HTTPError):
                    url = f"http://127.0.0.1:{metrics_port + n}/health"
                    return httpx.get(url, timeout=1.0).status_code == 200
                return False

            wait_until(worker_ready, 90.0, f"worker {n} to become ready")
        return cp

    yield start
    for cp in started:
        cp.stop()
