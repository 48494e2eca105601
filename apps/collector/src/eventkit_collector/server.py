"""Serving: uvicorn (httptools + uvloop), one process or ``--workers N`` sharing the port.

With N workers each process binds the port with ``SO_REUSEPORT`` (the kernel spreads
connections), owns ring-buffer shard ``ring/<n>.db`` (claimed with a lock file, so a restarted
worker picks up its shard's leftovers) and serves metrics on ``metrics port + n``. The parent
only supervises: it restarts a worker that died and forwards SIGTERM/SIGINT for a graceful drain.
"""

from __future__ import annotations

import logging
import multiprocessing
import multiprocessing.process
import os
import signal
import socket
import sys
import time
from types import FrameType

from eventkit_core import ConfigurationError

from eventkit_collector.settings import Settings

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


def serve_one(settings: Settings, *, shard: int | None = None, reuse_port: bool = False) -> None:
    """Run one server process until SIGTERM/SIGINT (then drain and flush)."""
    import uvicorn

    from eventkit_collector.app import create_app
    from eventkit_collector.fastpath import create_asgi

    configure_logging(settings.eventkit_log_level)
    metrics_port = settings.eventkit_metrics_port
    if shard is not None and metrics_port:
        metrics_port += shard
    try:
        serve = create_asgi if settings.eventkit_ingest_front else create_app
        app = serve(settings, shard=shard, metrics_port=metrics_port)
    except ConfigurationError as exc:
        log.error("cannot start: %s", exc)
        raise SystemExit(3) from None
    config = uvicorn.Config(
        app,
        host=settings.eventkit_host,
        port=settings.eventkit_port,
        loop="uvloop",
        http="httptools",
        lifespan="on",
        access_log=False,
        log_config=None,
        log_level=settings.eventkit_log_level,
        timeout_graceful_shutdown=int(settings.eventkit_shutdown_timeout),
        backlog=2048,
    )
    server = uvicorn.Server(config)
    sock = _socket(settings.eventkit_host, settings.eventkit_port, reuse_port)
    log.info(
        "eventkit collector listening on http://%s:%d (shard %s)",
        settings.eventkit_host,
        settings.eventkit_port,
        "auto" if shard is None else shard,
    )
    # uvicorn re-raises the signal that stopped it once it has shut down; with these handlers
    # that is a no-op, so a graceful drain exits with status 0.
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, _ignore)
    server.run(sockets=[sock])
    if not server.started:
        raise SystemExit(3)


def _ignore(signum: int, frame: FrameType | None) -> None:
    return None


def _worker_main(settings: Settings, shard: int) -> None:
    serve_one(settings, shard=shard, reuse_port=True)


def serve(settings: Settings) -> int:
    """Serve with ``settings.eventkit_workers`` processes; returns the exit code."""
    configure_logging(settings.eventkit_log_level)
    if settings.eventkit_workers == 1:
        serve_one(settings)
        return 0
    if settings.eventkit_port == 0:
        log.error("--workers > 1 needs a fixed --port (the workers share it)")
        return 2
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
        deadline = time.monotonic() + self.settings.eventkit_shutdown_timeout + 30
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
