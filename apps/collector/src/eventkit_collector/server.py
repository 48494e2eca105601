"""Serving: uvicorn (httptools + uvloop), one process or ``--workers N`` sharing the port.

With N workers each process binds the port with ``SO_REUSEPORT`` (the kernel spreads
connections), owns ring-buffer shard ``ring/<n>.db`` (claimed with a lock file, so a restarted
worker picks up its shard's leftovers) and serves metrics on ``metrics port + n``. The parent
only supervises: it restarts a worker that died and forwards SIGTERM/SIGINT for a graceful drain.

Before anything starts, every port the collector will listen on is tried: a port in use (or one
it may not bind) ends the start with one line naming the port and the option that changes it,
and exit code 3. The connection itself is :class:`~eventkit_collector.protocol.EventkitHttpProtocol`
(JSON error answers from the HTTP layer, header limits, header/body/keep-alive timeouts).
"""

from __future__ import annotations

import errno
import logging
import multiprocessing
import multiprocessing.process
import os
import signal
import socket
import sys
import time
from collections.abc import Callable
from types import FrameType
from typing import Any

import uvicorn
from eventkit_core import ConfigurationError, EventkitError

from eventkit_collector.protocol import ConnectionLimits, EventkitHttpProtocol
from eventkit_collector.publish_ack import ack_mode_problem
from eventkit_collector.settings import Settings

#: The "cannot start" exit code (documented in the README).
EXIT_CANNOT_START = 3
#: After EVENTKIT_SHUTDOWN_TIMEOUT (open requests drained), the time left for the final flush
#: before the supervisor kills a worker. A platform's kill grace (GKE's
#: terminationGracePeriodSeconds in deploy/gke) should be at least the sum of the two.
FLUSH_GRACE_SECONDS = 30

log = logging.getLogger("eventkit_collector.server")


def configure_logging(level: str) -> None:
    logging.basicConfig(
        level=getattr(logging, level.upper(), logging.INFO),
        format="%(asctime)s %(levelname)s [%(process)d] %(name)s: %(message)s",
        stream=sys.stderr,
        force=True,
    )


def _socket(host: str, port: int, reuse_port: bool) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if reuse_port:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    sock.listen(2048)
    sock.setblocking(False)
    return sock


class CannotStart(EventkitError, RuntimeError):
    """The collector cannot start; the message is the one line it prints."""


def _bind_problem(exc: OSError, host: str, port: int, what: str, option: str) -> CannotStart:
    if exc.errno == errno.EADDRINUSE:
        return CannotStart(
            f"{what} port {port} on {host} is in use: stop what uses it or choose another "
            f"port with {option}"
        )
    if exc.errno == errno.EACCES:
        return CannotStart(
            f"not allowed to listen on {what} port {port} on {host}: use a port above 1023 "
            f"with {option}"
        )
    return CannotStart(
        f"cannot listen on {host}:{port} ({what}): {exc.strerror or exc}; check the address "
        f"and {option}"
    )


_HTTP_OPTION = "--port / EVENTKIT_PORT"
_METRICS_OPTION = "--metrics-port / EVENTKIT_METRICS_PORT"


def _probe(host: str, port: int, what: str, option: str) -> None:
    """Bind and release ``host:port`` (as its server will: SO_REUSEADDR, no SO_REUSEPORT)."""
    try:
        _socket(host, port, reuse_port=False).close()
    except OSError as exc:
        raise _bind_problem(exc, host, port, what, option) from None


def check_ports(settings: Settings) -> None:
    """Every port this collector will listen on can be bound; :class:`CannotStart` if not.

    Without SO_REUSEPORT, so another collector already serving the port is found too.
    """
    if settings.eventkit_port:
        _probe(settings.eventkit_host, settings.eventkit_port, "HTTP", _HTTP_OPTION)
    if settings.eventkit_metrics_enabled and settings.eventkit_metrics_port:
        for n in range(settings.eventkit_workers):
            port = settings.eventkit_metrics_port + n
            what = "metrics" if settings.eventkit_workers == 1 else f"worker {n}'s metrics"
            _probe(settings.eventkit_metrics_host, port, what, _METRICS_OPTION)


def cannot_start(exc: CannotStart) -> int:
    print(f"eventkit-collector: cannot start: {exc}", file=sys.stderr, flush=True)
    return EXIT_CANNOT_START


def uvicorn_config(settings: Settings, app: Any) -> uvicorn.Config:
    """uvicorn's settings: httptools behind the collector's protocol, limits and timeouts."""
    protocol = EventkitHttpProtocol.with_limits(
        ConnectionLimits(
            max_header_bytes=settings.eventkit_max_header_bytes,
            max_headers=settings.eventkit_max_headers,
            header_timeout=settings.eventkit_header_timeout,
            body_timeout=settings.eventkit_body_timeout,
        )
    )
    return uvicorn.Config(
        app,
        host=settings.eventkit_host,
        port=settings.eventkit_port,
        loop="uvloop",
        http=protocol,
        # No WebSocket endpoint: an Upgrade request is served as plain HTTP (a JSON 404).
        ws="none",
        lifespan="on",
        access_log=False,
        log_config=None,
        log_level=settings.eventkit_log_level,
        timeout_keep_alive=settings.eventkit_keep_alive_timeout,  # type: ignore[arg-type]
        timeout_graceful_shutdown=int(settings.eventkit_shutdown_timeout),
        backlog=2048,
    )


def serve_one(settings: Settings, *, shard: int | None = None, reuse_port: bool = False) -> None:
    """Run one server process until SIGTERM/SIGINT (then drain and flush)."""
    from eventkit_collector.app import create_app
    from eventkit_collector.fastpath import FastIngest, create_asgi

    configure_logging(settings.eventkit_log_level)
    metrics_port = settings.eventkit_metrics_port
    if shard is not None and metrics_port:
        metrics_port += shard
    try:
        sock = _socket(settings.eventkit_host, settings.eventkit_port, reuse_port)
    except OSError as exc:
        problem = _bind_problem(
            exc, settings.eventkit_host, settings.eventkit_port, "HTTP", _HTTP_OPTION
        )
        raise SystemExit(cannot_start(problem)) from None
    try:
        serve = create_asgi if settings.eventkit_ingest_front else create_app
        app = serve(settings, shard=shard, metrics_port=metrics_port)
    except ConfigurationError as exc:
        log.error("cannot start: %s", exc)
        raise SystemExit(EXIT_CANNOT_START) from None
    collector = app.collector if isinstance(app, FastIngest) else app.state.collector
    port = sock.getsockname()[1]
    where = "auto" if shard is None else shard

    def started() -> None:
        metrics = (
            f"metrics on http://{settings.eventkit_metrics_host}:{collector.metrics_port}/metrics"
            if collector.metrics_server is not None
            else "metrics off"
        )
        log.info(
            "eventkit collector listening on http://%s:%d (shard %s); %s",
            settings.eventkit_host,
            port,
            where,
            metrics,
        )

    server = _Server(uvicorn_config(settings, app), started, collector.debugger.close)
    # uvicorn re-raises the signal that stopped it once it has shut down; with these handlers
    # that is a no-op, so a graceful drain exits with status 0.
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, _ignore)
    server.run(sockets=[sock])
    if not server.started:
        raise SystemExit(EXIT_CANNOT_START)


class _Server(uvicorn.Server):
    """uvicorn's server; says "listening" once it accepts connections (not before)."""

    def __init__(
        self,
        config: uvicorn.Config,
        on_started: Callable[[], None],
        on_exit: Callable[[], None] | None = None,
    ) -> None:
        super().__init__(config)
        self._on_started = on_started
        self._on_exit = on_exit

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        # Open debugger streams end now: uvicorn waits for open responses before it drains.
        if self._on_exit is not None:
            self._on_exit()
        super().handle_exit(sig, frame)

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        if self.started:
            self._on_started()


def _ignore(signum: int, frame: FrameType | None) -> None:
    return None


def _worker_main(settings: Settings, shard: int) -> None:
    serve_one(settings, shard=shard, reuse_port=True)


def serve(settings: Settings) -> int:
    """Serve with ``settings.eventkit_workers`` processes; returns the exit code."""
    configure_logging(settings.eventkit_log_level)
    if settings.eventkit_workers > 1 and settings.eventkit_port == 0:
        log.error("--workers > 1 needs a fixed --port (the workers share it)")
        return 2
    problem = ack_mode_problem(settings.eventkit_queue_mode, settings.eventkit_ack_mode)
    if problem is not None:  # before any port or worker: one line, exit 3
        return cannot_start(CannotStart(problem))
    try:
        check_ports(settings)
    except CannotStart as exc:
        return cannot_start(exc)
    if settings.eventkit_workers == 1:
        serve_one(settings)
        return 0
    return Supervisor(settings).run()


class Supervisor:
    """The parent of ``--workers N``: starts, restarts and stops the worker processes."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._ctx = multiprocessing.get_context("spawn")
        self.procs: dict[int, multiprocessing.process.BaseProcess] = {}
        self.stopping = False
        self._failures: dict[int, float] = {}

    def run(self) -> int:
        signal.signal(signal.SIGTERM, self.on_signal)
        signal.signal(signal.SIGINT, self.on_signal)
        for shard in range(self.settings.eventkit_workers):
            self.start(shard)
        log.info(
            "supervising %d workers on port %d",
            self.settings.eventkit_workers,
            self.settings.eventkit_port,
        )
        while not self.stopping:
            time.sleep(0.5)
            self._restart_dead()
        return self._join()

    def start(self, shard: int) -> None:
        p = self._ctx.Process(
            target=_worker_main, args=(self.settings, shard), name=f"eventkit-worker-{shard}"
        )
        p.start()
        self.procs[shard] = p

    def on_signal(self, signum: int, frame: FrameType | None) -> None:
        self.stopping = True
        for p in self.procs.values():
            if p.pid is not None and p.is_alive():
                os.kill(p.pid, signal.SIGTERM)

    def _restart_dead(self) -> None:
        for shard, p in list(self.procs.items()):
            if self.stopping or p.is_alive():
                continue
            code = p.exitcode
            if code == 3:
                log.error("worker %d failed to start; stopping", shard)
                self.on_signal(signal.SIGTERM, None)
                return
            last = self._failures.get(shard, 0.0)
            self._failures[shard] = time.monotonic()
            if time.monotonic() - last < 2.0:
                time.sleep(2.0)  # a worker dying at once again must not spin the machine
            log.warning("worker %d exited with %s; restarting it", shard, code)
            self.start(shard)

    def _join(self) -> int:
        deadline = time.monotonic() + self.settings.eventkit_shutdown_timeout + FLUSH_GRACE_SECONDS
        exit_code = 0
        for p in self.procs.values():
            p.join(max(0.1, deadline - time.monotonic()))
            if p.is_alive():
                log.error("worker %s did not stop in time; killing it", p.name)
                p.kill()
                p.join()
                exit_code = 1
            elif p.exitcode not in (0, None, -signal.SIGTERM):
                # (-SIGTERM: stopped while still starting, before it could accept anything)
                exit_code = exit_code or 1
        return exit_code
