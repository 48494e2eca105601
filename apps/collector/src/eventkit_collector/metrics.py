"""Metrics: the OpenTelemetry SDK with the Prometheus exporter, served on a separate port.

:func:`install_metrics` sets the global MeterProvider (before any library creates instruments)
and starts a small HTTP server with ``/metrics`` (Prometheus text) and ``/health``. The
collector's own instruments live in :class:`CollectorMetrics`, under exactly the names of the original service
(counters without ``_total``: the exporter appends it; durations in unit ``s`` so the exposed
name ends in ``_seconds``). Labels are bounded: unknown values fold into ``other``.
"""

from __future__ import annotations

import logging
import platform
import threading
import time
from collections.abc import Callable, Iterable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from opentelemetry import metrics
from opentelemetry.metrics import CallbackOptions, Observation

from eventkit_collector import __version__

log = logging.getLogger("eventkit_collector.metrics")

METER_NAME = "eventkit_collector"
_installed = False
_install_lock = threading.Lock()

#: Bounded label values.
EVENT_TYPES = frozenset(
    {"identify", "track", "page", "screen", "group", "alias", "custom", "dead_letter"}
)
_MAX_REASONS = 64
_LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


def install_metrics() -> bool:
    """Install the SDK MeterProvider with the Prometheus reader, once per process.

    Returns False when a provider was already installed by someone else (then ours is not).
    """
    global _installed
    with _install_lock:
        if _installed:
            return True
        from opentelemetry.exporter.prometheus import PrometheusMetricReader
        from opentelemetry.sdk.metrics import MeterProvider
        from opentelemetry.sdk.resources import Resource

        provider = MeterProvider(
            metric_readers=[PrometheusMetricReader()],
            resource=Resource.create({"service.name": "eventkit-collector"}),
        )
        metrics.set_meter_provider(provider)
        _installed = metrics.get_meter_provider() is provider
        if not _installed:
            log.warning("a MeterProvider was already installed; eventkit metrics go to it")
        return _installed


class MetricsServer:
    """``/metrics`` and ``/health`` on their own port, in a daemon thread."""

    def __init__(self, host: str, port: int, health: Callable[[], bool] = lambda: True) -> None:
        from prometheus_client import REGISTRY, generate_latest

        registry = REGISTRY
        render = generate_latest

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                path = self.path.split("?", 1)[0]
                if path == "/metrics":
                    body = render(registry)
                    self._send(200, body, "text/plain; version=0.0.4; charset=utf-8")
                elif path == "/health":
                    ok = health()
                    self._send(
                        200 if ok else 503,
                        b'{"status":"ok"}' if ok else b'{"status":"unhealthy"}',
                        "application/json",
                    )
                else:
                    self._send(404, b'{"code":"not_found","message":"use /metrics or /health"}')

            def _send(self, status: int, body: bytes, ctype: str = "application/json") -> None:
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                return

        self._server = ThreadingHTTPServer((host, port), Handler)
        self._server.daemon_threads = True
        self.port: int = self._server.server_address[1]
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="eventkit-metrics", daemon=True
        )

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)


class CollectorMetrics:
    """The collector's own instruments (the libraries create theirs through the same API)."""

    def __init__(
        self,
        health: Callable[[], dict[str, bool]] | None = None,
        meter_provider: metrics.MeterProvider | None = None,
    ) -> None:
        # meter_provider: default the global one (install_metrics); tests pass their own reader.
        meter = metrics.get_meter(METER_NAME, __version__, meter_provider=meter_provider)
        self._start = time.monotonic()
        self._health: Callable[[], dict[str, bool]] = health or dict
        # Hot-path counts are kept in plain ints and read by the exporter at scrape time.
        self._requests: dict[tuple[str, str, str], int] = {}
        self._received = 0
        meter.create_observable_counter(
            "eventkit_api_requests",
            callbacks=[self._observe_requests],
            unit="",
            description="HTTP requests",
        )
        self.request_duration = meter.create_histogram(
            "eventkit_api_request_duration",
            unit="s",
            description="HTTP request latency",
            explicit_bucket_boundaries_advisory=_LATENCY_BUCKETS,
        )
        meter.create_observable_counter(
            "eventkit_events_received",
            callbacks=[self._observe_received],
            unit="",
            description="Events received at ingestion",
        )
        self.events_processed = meter.create_counter(
            "eventkit_events_processed", unit="", description="Events successfully processed"
        )
        self.events_failed = meter.create_counter(
            "eventkit_events_failed", unit="", description="Events that failed validation"
        )
        self._info_attrs = {
            "version": __version__,
            "python": platform.python_version(),
            "platform": platform.system().lower(),
        }
        meter.create_observable_gauge(
            "eventkit_info", callbacks=[self._observe_info], unit="", description="Version info"
        )
        meter.create_observable_gauge(
            "eventkit_uptime",
            callbacks=[self._observe_uptime],
            unit="s",
            description="Process uptime",
        )
        meter.create_observable_gauge(
            "eventkit_component_health",
            callbacks=[self._observe_health],
            unit="",
            description="Component health (1 for the current status)",
        )
        self._reasons: set[str] = set()

    def watch_health(self, health: Callable[[], dict[str, bool]]) -> None:
        """Report ``health()`` as ``eventkit_component_health`` (read at scrape time)."""
        self._health = health

    def request(self, endpoint: str, method: str, status: int, seconds: float) -> None:
        """Count one HTTP request (endpoint is the route template: bounded)."""
        key = (endpoint, method, str(status))
        self._requests[key] = self._requests.get(key, 0) + 1
        self.request_duration.record(seconds, {"endpoint": endpoint, "method": method})

    def received(self, n: int) -> None:
        self._received += n

    def _observe_requests(self, options: CallbackOptions) -> Iterable[Observation]:
        for (endpoint, method, status), n in list(self._requests.items()):
            yield Observation(n, {"endpoint": endpoint, "method": method, "status": status})

    def _observe_received(self, options: CallbackOptions) -> Iterable[Observation]:
        yield Observation(self._received)

    def reason_label(self, code: str) -> str:
        if code in self._reasons:
            return code
        if len(self._reasons) < _MAX_REASONS and code.replace("_", "").isalnum() and len(code) < 48:
            self._reasons.add(code)
            return code
        return "other"

    def processed(self, counts: dict[str, int]) -> None:
        for event_type, n in counts.items():
            label = event_type if event_type in EVENT_TYPES else "other"
            self.events_processed.add(n, {"event_type": label})

    def failed(self, counts: dict[str, int]) -> None:
        for code, n in counts.items():
            self.events_failed.add(n, {"reason": self.reason_label(code)})

    def _observe_info(self, options: CallbackOptions) -> Iterable[Observation]:
        yield Observation(1, self._info_attrs)

    def _observe_uptime(self, options: CallbackOptions) -> Iterable[Observation]:
        yield Observation(time.monotonic() - self._start)

    def _observe_health(self, options: CallbackOptions) -> Iterable[Observation]:
        try:
            status = self._health()
        except Exception:  # a health probe must never break a scrape
            log.exception("health probe failed")
            status = {}
        for component, ok in status.items():
            yield Observation(1 if ok else 0, {"component": component, "status": "healthy"})
            yield Observation(0 if ok else 1, {"component": component, "status": "unhealthy"})
