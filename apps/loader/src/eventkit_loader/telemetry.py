"""Logging, the OpenTelemetry SDK with its Prometheus exporter, and the metrics HTTP server.

Libraries only use the OpenTelemetry API; this module installs the SDK ``MeterProvider`` (once per
process, in :func:`install_global`) and serves ``/metrics`` and ``/health`` on a port of its own.
"""

from __future__ import annotations

import json
import logging
import platform
import sys
import threading
import time
from collections.abc import Callable, Iterable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from opentelemetry import metrics as otel_metrics
from opentelemetry.exporter.prometheus import PrometheusMetricReader
from opentelemetry.metrics import CallbackOptions, Meter, Observation
from opentelemetry.sdk.metrics import MeterProvider
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from eventkit_loader import __version__

log = logging.getLogger("eventkit_loader")

METER_NAME = "eventkit_loader"


def configure_logging(level: str = "INFO") -> None:
    """Plain text logs on stderr (stdout stays free for command output such as ``--json``)."""
    root = logging.getLogger()
    for handler in list(root.handlers):
        if getattr(handler, "_eventkit", False):
            root.removeHandler(handler)
    handler = logging.StreamHandler(sys.stderr)
    handler._eventkit = True  # type: ignore[attr-defined]
    handler.setFormatter(
        logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s", "%Y-%m-%dT%H:%M:%S")
    )
    root.addHandler(handler)
    root.setLevel(level)
    # The Google clients are chatty at INFO.
    for noisy in ("google", "urllib3"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))


class LoaderMetrics:
    """The loader's instruments (exposed names in comments)."""

    def __init__(self, meter: Meter) -> None:
        # eventkit_warehouse_loader_errors_total{stage="pass"}: a pass that failed as a whole.
        # The warehouse loaders of eventkit-storage count files loaded
        # (eventkit_warehouse_loader_files_processed_total) and files that failed (same errors
        # counter, without ``stage``) through the provider the app hands them.
        self.errors = meter.create_counter(
            "eventkit_warehouse_loader_errors",
            description="Loader errors",
        )
        # eventkit_warehouse_loader_rows_loaded_total
        self.rows_loaded = meter.create_counter(
            "eventkit_warehouse_loader_rows_loaded",
            description="Rows loaded to the warehouse",
        )
        self._oldest_unloaded: float | None = None
        self._pending = 0
        self._started = time.monotonic()
        self._lock = threading.Lock()
        # eventkit_warehouse_loader_oldest_unloaded_age_seconds
        meter.create_observable_gauge(
            "eventkit_warehouse_loader_oldest_unloaded_age",
            callbacks=[self._observe_age],
            unit="s",
            description="Age of the oldest stored file not yet loaded (0 when none)",
        )
        # eventkit_warehouse_loader_pending_files
        meter.create_observable_gauge(
            "eventkit_warehouse_loader_pending_files",
            callbacks=[self._observe_pending],
            description="Stored files not yet loaded, as of the last pass",
        )
        # eventkit_uptime_seconds
        meter.create_observable_gauge(
            "eventkit_uptime",
            callbacks=[self._observe_uptime],
            unit="s",
            description="Process uptime",
        )
        # eventkit_info
        meter.create_observable_gauge(
            "eventkit_info",
            callbacks=[self._observe_info],
            description="Version and platform info",
        )

    def set_backlog(self, pending: int, oldest_unloaded: float | None) -> None:
        """Record the backlog: how many files wait and the POSIX time of the oldest one."""
        with self._lock:
            self._pending = pending
            self._oldest_unloaded = oldest_unloaded

    def oldest_unloaded_age(self, now: float | None = None) -> float:
        with self._lock:
            oldest = self._oldest_unloaded
        if oldest is None:
            return 0.0
        return max(0.0, (time.time() if now is None else now) - oldest)

    def _observe_age(self, _options: CallbackOptions) -> Iterable[Observation]:
        yield Observation(self.oldest_unloaded_age())

    def _observe_pending(self, _options: CallbackOptions) -> Iterable[Observation]:
        with self._lock:
            pending = self._pending
        yield Observation(pending)

    def _observe_uptime(self, _options: CallbackOptions) -> Iterable[Observation]:
        yield Observation(time.monotonic() - self._started)

    def _observe_info(self, _options: CallbackOptions) -> Iterable[Observation]:
        yield Observation(
            1,
            {
                "app": "loader",
                "version": __version__,
                "python": platform.python_version(),
                "platform": sys.platform,
            },
        )


class Telemetry:
    """A MeterProvider exporting to its own Prometheus registry, and the loader's instruments."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        self.reader = PrometheusMetricReader(registry=self.registry)
        self.provider = MeterProvider(metric_readers=[self.reader])
        self.meter = self.provider.get_meter(METER_NAME, __version__)
        self.metrics = LoaderMetrics(self.meter)

    def install_global(self) -> None:
        """Make this provider the process-wide one, so the libraries' instruments report here."""
        otel_metrics.set_meter_provider(self.provider)

    def exposition(self) -> bytes:
        return bytes(generate_latest(self.registry))

    def shutdown(self) -> None:
        self.provider.shutdown()


HealthFn = Callable[[], tuple[bool, dict[str, Any]]]


class MetricsServer:
    """``GET /metrics`` (Prometheus text) and ``GET /health`` (JSON) on a thread of its own."""

    def __init__(self, telemetry: Telemetry, health: HealthFn, host: str, port: int) -> None:
        self._telemetry = telemetry
        self._health = health
        handler = self._handler()
        self._server = ThreadingHTTPServer((host, port), handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="eventkit-metrics", daemon=True
        )

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    def start(self) -> MetricsServer:
        self._thread.start()
        log.info("metrics on http://%s:%d/metrics", *self._server.server_address[:2])
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                path = self.path.split("?", 1)[0]
                if path == "/metrics":
                    self._send(200, CONTENT_TYPE_LATEST, server._telemetry.exposition())
                elif path == "/health":
                    try:
                        ok, detail = server._health()
                    except Exception as exc:  # a broken check is an unhealthy service
                        ok, detail = False, {"error": str(exc)}
                    body = json.dumps({"status": "ok" if ok else "unhealthy", **detail})
                    self._send(200 if ok else 503, "application/json", body.encode())
                else:
                    self._send(404, "text/plain; charset=utf-8", b"not found: try /metrics\n")

            def _send(self, status: int, content_type: str, body: bytes) -> None:
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass  # no per-request logging

        return Handler
