"""Queue metrics through the OpenTelemetry API (the application installs the SDK and exporter).

Names are stable (dashboards query them), without the ``_total`` the Prometheus exporter appends
to counters:

- ``eventkit_queue_enqueued``  counter (queue_mode)            -> ``eventkit_queue_enqueued_total``
- ``eventkit_queue_dequeued``  counter (queue_mode)            -> ``eventkit_queue_dequeued_total``
- ``eventkit_queue_processed`` counter (queue_mode, result)    -> ``eventkit_queue_processed_total``
- ``eventkit_queue_depth``     observable gauge (queue_mode, partition)

Counters are added to once per batch, never per event. Instruments are created once per meter
provider and shared by every queue using it; the depth gauge sums the depth of every live queue
reporting the same labels.
"""

from __future__ import annotations

import weakref
from collections.abc import Iterable
from typing import Protocol

from eventkit_core import PerKey
from opentelemetry import metrics
from opentelemetry.metrics import CallbackOptions, MeterProvider, Observation

from eventkit_queues._version import VERSION

ASYNC = "async"
PUBSUB = "pubsub"


class DepthSource(Protocol):
    """Something whose depth the gauge reports: ``(queue_mode, partition label) -> depth``."""

    def depth_observations(self) -> Iterable[tuple[str, str, int]]: ...


class _Instruments:
    def __init__(self, meter_provider: MeterProvider | None) -> None:
        meter = metrics.get_meter("eventkit_queues", VERSION, meter_provider=meter_provider)
        self.enqueued = meter.create_counter(
            "eventkit_queue_enqueued", unit="", description="Events enqueued"
        )
        self.dequeued = meter.create_counter(
            "eventkit_queue_dequeued", unit="", description="Events dequeued"
        )
        self.processed = meter.create_counter(
            "eventkit_queue_processed", unit="", description="Events processed by workers"
        )
        self.sources: weakref.WeakSet[DepthSource] = weakref.WeakSet()
        meter.create_observable_gauge(
            "eventkit_queue_depth",
            callbacks=[self._observe_depth],
            unit="",
            description="Current queue depth",
        )

    def _observe_depth(self, options: CallbackOptions) -> Iterable[Observation]:
        totals: dict[tuple[str, str], int] = {}
        for source in list(self.sources):
            for mode, partition, depth in source.depth_observations():
                totals[mode, partition] = totals.get((mode, partition), 0) + depth
        return [
            Observation(depth, {"queue_mode": mode, "partition": partition})
            for (mode, partition), depth in totals.items()
        ]


# One set of instruments per meter provider (None: the global one), made on first use.
_instruments_for: PerKey[MeterProvider | None, _Instruments] = PerKey(_Instruments)


class QueueMetrics:
    """The instruments of one queue mode, with label sets built once."""

    __slots__ = ("_error", "_instruments", "_mode", "_ok")

    def __init__(self, mode: str, meter_provider: MeterProvider | None = None) -> None:
        self._instruments = _instruments_for(meter_provider)
        self._mode = {"queue_mode": mode}
        self._ok = {"queue_mode": mode, "result": "ok"}
        self._error = {"queue_mode": mode, "result": "error"}

    def enqueued(self, n: int) -> None:
        if n:
            self._instruments.enqueued.add(n, self._mode)

    def dequeued(self, n: int) -> None:
        if n:
            self._instruments.dequeued.add(n, self._mode)

    def processed(self, n: int, *, ok: bool) -> None:
        if n:
            self._instruments.processed.add(n, self._ok if ok else self._error)

    def watch(self, source: DepthSource) -> None:
        """Report ``source``'s depth on the gauge while it is alive (or until :meth:`unwatch`)."""
        self._instruments.sources.add(source)

    def unwatch(self, source: DepthSource) -> None:
        self._instruments.sources.discard(source)
