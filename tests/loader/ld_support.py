"""Helpers shared by the loader tests: events, stored files, and the loader as a real process."""

from __future__ import annotations

import atexit
import contextlib
import fcntl
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import msgspec
from eventkit_core import TrackEvent, TypedEvent

T0 = datetime(2024, 6, 1, 12, 0, tzinfo=UTC)


def track_events(count: int, *, start: int = 0, stream: str = "events") -> list[TypedEvent]:
    """``count`` track events with message ids ``m-<start>`` ... (one minute apart)."""
    out: list[TypedEvent] = []
    for i in range(start, start + count):
        at = T0 + timedelta(seconds=i)
        payload = {
            "type": "track",
            "event": "Clicked",
            "userId": f"u{i % 7}",
            "messageId": f"m-{i}",
        }
        out.append(
            TrackEvent(
                message_id=f"m-{i}",
                stream=stream,
                received_at=at,
                timestamp=at,
                payload=msgspec.Raw(json.dumps(payload).encode()),
                event="Clicked",
                user_id=f"u{i % 7}",
                properties=msgspec.Raw(b'{"i":' + str(i).encode() + b"}"),
                source_id=i,
            )
        )
    return out


def in_files(events: Sequence[TypedEvent], per_file: int) -> list[list[TypedEvent]]:
    return [list(events[i : i + per_file]) for i in range(0, len(events), per_file)]


def loader_argv(*args: str) -> list[str]:
    """The loader as a process, through the same entry point as the console script."""
    return [sys.executable, "-m", "eventkit_loader", *args]


def loader_env(**extra: str) -> dict[str, str]:
    """The environment of a loader process: no EVENTKIT_/GCP_ settings leaking from outside."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("EVENTKIT_", "GCP_"))}
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra)
    return env


_SCRATCH_ROOT = Path(tempfile.mkdtemp(prefix="eventkit-loader-cwd-"))
atexit.register(shutil.rmtree, _SCRATCH_ROOT, True)


def scratch_dir() -> Path:
    """A fresh working directory for a loader process (removed when the test run ends).

    Without ``--data-dir`` the loader keeps its state in ``./eventkit-data``: never the checkout's.
    """
    return Path(tempfile.mkdtemp(dir=_SCRATCH_ROOT))


def run_loader(
    *args: str, env: dict[str, str] | None = None, timeout: float = 120, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        loader_argv(*args),
        env=env or loader_env(),
        cwd=cwd or scratch_dir(),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def query_json(data_dir: Path, sql: str, env: dict[str, str] | None = None) -> list[dict[str, Any]]:
    """``eventkit-loader query --data-dir D --json SQL``: the one JSON array it prints."""
    done = run_loader("query", "--data-dir", str(data_dir), "--json", sql, env=env)
    assert done.returncode == 0, done.stderr
    rows = json.loads(done.stdout)
    assert isinstance(rows, list)
    return rows


class LoaderProcess:
    """A loader started with Popen; a thread collects its stderr lines.

    ``pause_after``: once a stderr line matches, the thread stops reading (until
    :meth:`resume`), and the pipe is shrunk to one page, so the loader blocks on its next few
    log lines. A test can then act "mid-pass" however slowly it gets the CPU: the loader
    cannot finish the pass behind its back. The thread reads unbuffered (a byte at a time)
    so it never holds more of the loader's output than it has processed.
    """

    def __init__(
        self,
        *args: str,
        env: dict[str, str] | None = None,
        pause_after: Callable[[str], bool] | None = None,
    ) -> None:
        self.proc = subprocess.Popen(
            loader_argv(*args),
            env=env or loader_env(),
            cwd=scratch_dir(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            bufsize=0,
        )
        if pause_after is not None:
            assert self.proc.stderr is not None
            fcntl.fcntl(self.proc.stderr.fileno(), fcntl.F_SETPIPE_SZ, 4096)
        self._pause_after = pause_after
        self._resumed = threading.Event()
        self.lines: list[str] = []
        self._changed = threading.Condition()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for raw in iter(self.proc.stderr.readline, b""):
            line = raw.decode(errors="replace").rstrip("\n")
            with self._changed:
                self.lines.append(line)
                self._changed.notify_all()
            if self._pause_after is not None and self._pause_after(line):
                self._pause_after = None
                self._resumed.wait()
        with self._changed:
            self._changed.notify_all()

    def resume(self) -> None:
        """Read the loader's stderr again (after ``pause_after``)."""
        self._resumed.set()

    def wait_for_line(self, match: Callable[[str], bool], within: float = 60) -> str:
        """Wait until a stderr line matches (fails on timeout or when the process ends)."""
        deadline = time.monotonic() + within
        seen = 0
        with self._changed:
            while True:
                for line in self.lines[seen:]:
                    if match(line):
                        return line
                seen = len(self.lines)
                if not self._reader.is_alive():
                    raise AssertionError(
                        f"loader exited ({self.proc.poll()}) before the line:\n"
                        + "\n".join(self.lines[-30:])
                    )
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise AssertionError(
                        "timed out waiting for a line:\n" + "\n".join(self.lines[-30:])
                    )
                self._changed.wait(timeout=remaining)

    def signal(self, signum: signal.Signals) -> None:
        self.proc.send_signal(signum)

    def wait(self, timeout: float = 60) -> int:
        return self.proc.wait(timeout=timeout)

    def all_stderr(self) -> str:
        """Every stderr line (after the process ended)."""
        self._reader.join(timeout=30)
        with self._changed:
            return "\n".join(self.lines)

    def kill(self) -> None:
        self.resume()
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(timeout=30)
        self._reader.join(timeout=30)
        for stream in (self.proc.stdout, self.proc.stderr):
            if stream is not None:
                stream.close()


@contextlib.contextmanager
def loader_process(
    *args: str,
    env: dict[str, str] | None = None,
    pause_after: Callable[[str], bool] | None = None,
) -> Iterator[LoaderProcess]:
    """A loader process that is always killed and reaped at the end."""
    process = LoaderProcess(*args, env=env, pause_after=pause_after)
    try:
        yield process
    finally:
        process.kill()
