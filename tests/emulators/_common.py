"""Shared plumbing for the emulators: ports, processes, polling and the per-user install cache."""

from __future__ import annotations

import contextlib
import fcntl
import functools
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from google.auth.credentials import Credentials

PROJECT = "test-project"
LOCALHOST = "127.0.0.1"


class EmulatorError(RuntimeError):
    """An emulator could not be installed or started; the message says what to do about it."""


class EmulatorExited(EmulatorError):
    """The emulator process ended while starting (for example: its port was taken meanwhile)."""


def cache_root() -> Path:
    """Where emulator environments are kept between runs: outside the checkout, per user.

    ``EVENTKIT_EMULATORS_CACHE`` overrides it; otherwise ``${XDG_CACHE_HOME:-~/.cache}/eventkit-emulators``.
    """
    override = os.environ.get("EVENTKIT_EMULATORS_CACHE")
    if override:
        return Path(override).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base).expanduser() / "eventkit-emulators"


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free right now (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOCALHOST, 0))
        port: int = sock.getsockname()[1]
        return port


def free_ports(count: int) -> list[int]:
    """``count`` distinct free ports (all held open while picking, so none repeats)."""
    with contextlib.ExitStack() as stack:
        socks = [
            stack.enter_context(socket.socket(socket.AF_INET, socket.SOCK_STREAM))
            for _ in range(count)
        ]
        for sock in socks:
            sock.bind((LOCALHOST, 0))
        return [int(sock.getsockname()[1]) for sock in socks]


def tcp_open(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def http_ok(url: str, timeout: float = 2.0) -> bool:
    """True when a GET on ``url`` answers 2xx."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            status: int = response.status
            return 200 <= status < 300
    except (urllib.error.URLError, OSError):
        return False


def poll(condition: Callable[[], bool], timeout: float, interval: float = 0.05) -> bool:
    """Call ``condition`` until it returns True or ``timeout`` seconds pass; True if it did."""
    deadline = time.monotonic() + timeout
    while True:
        if condition():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval)


class EmulatorProcess:
    """One emulator subprocess with its output in a log file."""

    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        log_path: Path,
        env: Mapping[str, str] | None = None,
        cwd: Path | None = None,
    ) -> None:
        self.name = name
        self.argv = list(argv)
        self.log_path = log_path
        log_path.parent.mkdir(parents=True, exist_ok=True)
        with log_path.open("ab") as log:
            try:
                self.popen = subprocess.Popen(
                    self.argv,
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    env=dict(env) if env is not None else None,
                    cwd=cwd,
                )
            except OSError as exc:
                raise EmulatorError(f"{name}: cannot run {self.argv[0]}: {exc}") from exc

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def log_tail(self, lines: int = 40) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def wait_ready(self, condition: Callable[[], bool], timeout: float, hint: str = "") -> None:
        """Poll ``condition`` until it holds; raise EmulatorError (with the log) if it never does."""

        def ready_or_dead() -> bool:
            return (not self.alive()) or condition()

        poll(ready_or_dead, timeout)
        if self.alive() and condition():
            return
        state = (
            f"exited with code {self.popen.returncode}"
            if not self.alive()
            else f"not ready after {timeout:.0f} s"
        )
        exited = not self.alive()
        self.stop()
        raise (EmulatorExited if exited else EmulatorError)(
            f"{self.name} {state}.{(' ' + hint) if hint else ''}\n"
            f"command: {' '.join(self.argv)}\nlog ({self.log_path}):\n{self.log_tail()}"
        )

    def stop(self, timeout: float = 10.0) -> None:
        if not self.alive():
            return
        self.popen.terminate()
        try:
            self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            self.popen.wait(timeout)


def start_on_free_ports(
    count: int,
    launch: Callable[[list[int]], EmulatorProcess],
    ready: Callable[[list[int]], bool],
    timeout: float,
    hint: str = "",
    attempts: int = 3,
) -> tuple[EmulatorProcess, list[int]]:
    """Launch a server on ``count`` free ports and wait until ``ready``.

    A port picked free may be taken before the server binds it: when the process exits while
    starting, try again on new ports (a few times).
    """
    for attempt in range(attempts):
        ports = free_ports(count)
        process = launch(ports)
        try:
            process.wait_ready(functools.partial(ready, ports), timeout, hint)
        except EmulatorExited:
            if attempt + 1 == attempts:
                raise
            continue
        return process, ports
    raise AssertionError("unreachable")


class EmulatorControl:
    """Stop and start again (on the same ports), or pause and resume, one emulator.

    For fault tests, on an emulator of their own: the session's emulators are shared by every
    test. ``stop`` ends the process (connections refused; fake-gcs-server and local-bigquery
    keep their files, the Pub/Sub emulator loses its in-memory state); ``pause`` freezes it
    with SIGSTOP (connections hang, nothing is lost), ``resume`` thaws it.
    """

    def __init__(
        self,
        process: EmulatorProcess,
        launch: Callable[[list[int]], EmulatorProcess],
        ready: Callable[[list[int]], bool],
        ports: list[int],
        timeout: float,
        hint: str = "",
    ) -> None:
        self.process = process
        self._launch = launch
        self._ready = ready
        self.ports = ports
        self._timeout = timeout
        self._hint = hint
        self.paused = False

    def stop(self) -> None:
        self.resume()
        self.process.stop()

    def start(self) -> None:
        """Start it again on its ports and wait until it answers (no-op when running)."""
        if self.process.alive():
            return
        self.process = self._launch(self.ports)
        self.process.wait_ready(
            functools.partial(self._ready, self.ports), self._timeout, self._hint
        )

    def pause(self) -> None:
        if self.process.alive() and not self.paused:
            os.kill(self.process.pid, signal.SIGSTOP)
            self.paused = True

    def resume(self) -> None:
        if self.paused:
            self.paused = False
            if self.process.alive():
                os.kill(self.process.pid, signal.SIGCONT)


def start_controllable(
    count: int,
    launch: Callable[[list[int]], EmulatorProcess],
    ready: Callable[[list[int]], bool],
    timeout: float,
    hint: str = "",
) -> EmulatorControl:
    """:func:`start_on_free_ports`, returning a control that can stop and restart it."""
    process, ports = start_on_free_ports(count, launch, ready, timeout, hint)
    return EmulatorControl(process, launch, ready, ports, timeout, hint)


def run_checked(argv: Sequence[str], what: str, env: Mapping[str, str] | None = None) -> str:
    """Run a command for an install step; raise EmulatorError with its output when it fails."""
    try:
        done = subprocess.run(
            list(argv),
            capture_output=True,
            text=True,
            env=dict(env) if env is not None else None,
            check=False,
        )
    except OSError as exc:
        raise EmulatorError(f"{what}: cannot run {argv[0]}: {exc}") from exc
    if done.returncode != 0:
        raise EmulatorError(
            f"{what} failed (exit {done.returncode}): {' '.join(argv)}\n{done.stdout}\n{done.stderr}"
        )
    return done.stdout


def _uv() -> str | None:
    """The uv binary: the one running us (``uv run`` sets UV), else the one on PATH."""
    return os.environ.get("UV") or shutil.which("uv")


def _uv_env() -> dict[str, str]:
    return {**os.environ, "UV_PYTHON_DOWNLOADS": "never"}


def make_venv(python: str, dest: Path) -> Path:
    """Create a virtualenv at ``dest`` with interpreter ``python``; return its python."""
    uv = _uv()
    if uv:
        run_checked(
            [uv, "venv", "--quiet", "--relocatable", "--python", python, str(dest)],
            f"creating a virtualenv in {dest}",
            env=_uv_env(),
        )
    else:
        run_checked([python, "-m", "venv", str(dest)], f"creating a virtualenv in {dest}")
    return venv_python(dest)


def venv_python(venv: Path) -> Path:
    return venv / "bin" / "python"


def pip_install(venv: Path, *requirements: str) -> None:
    """Install ``requirements`` into ``venv`` (uv when available, else the venv's pip)."""
    uv = _uv()
    python = str(venv_python(venv))
    if uv:
        argv = [uv, "pip", "install", "--quiet", "--python", python, *requirements]
        run_checked(argv, f"installing {' '.join(requirements)}", env=_uv_env())
    else:
        argv = [python, "-m", "pip", "install", "--quiet", *requirements]
        run_checked(argv, f"installing {' '.join(requirements)}")


@contextlib.contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


READY_MARKER = ".eventkit-ready"


def cached_build(key: str, build: Callable[[Path], None], log: Callable[[str], None]) -> Path:
    """Return ``<cache>/<key>``, building it once with ``build(tmp_dir)`` if it is not there.

    The build happens in a temporary sibling directory that is renamed into place only when it
    succeeded, under an exclusive lock so that concurrent runs build it once.
    """
    root = cache_root()
    final = root / key
    if (final / READY_MARKER).exists():
        return final
    with _file_lock(root / f"{key}.lock"):
        if (final / READY_MARKER).exists():
            return final
        if final.exists():  # left by an interrupted older layout: rebuild
            shutil.rmtree(final)
        staging = root / f".{key}.building-{uuid.uuid4().hex[:8]}"
        log(f"building {final} (one-time; cached for later runs)")
        started = time.monotonic()
        try:
            build(staging)
            (staging / READY_MARKER).write_text(f"built by {sys.executable}\n")
            staging.rename(final)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        log(f"built {final} in {time.monotonic() - started:.1f} s")
    return final


def anonymous_credentials() -> Credentials:
    """Credentials for the emulators (they check none)."""
    from google.auth.credentials import AnonymousCredentials

    return AnonymousCredentials()  # type: ignore[no-untyped-call]


def stderr_log(message: str) -> None:
    print(f"[emulators] {message}", file=sys.stderr, flush=True)
