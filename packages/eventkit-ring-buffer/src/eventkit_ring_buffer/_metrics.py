"""OpenTelemetry instruments (API only: the application installs the SDK and an exporter).

Instruments are created once per meter provider and shared by every buffer using it; the gauges
report the sum over the open buffers, so two buffers in one process never clash.
"""

from __future__ import annotations

import weakref
from collections.abc import Iterable
from typing import Protocol

from eventkit_core import PerKey
from opentelemetry import metrics
from opentelemetry.metrics import CallbackOptions, MeterProvider, Observation


class _Gauged(Protocol):
    @property
    def _gauge_values(self) -> tuple[int, int]: ...


class Instruments:
    def __init__(self, provider: MeterProvider | None) -> None:
        from eventkit_ring_buffer import __version__

        meter = (provider or metrics.get_meter_provider()).get_meter(
            "eventkit_ring_buffer", __version__
        )
        self.buffers: weakref.WeakSet[_Gauged] = weakref.WeakSet()
        # Counters are named without "_total": the Prometheus exporter appends it.
        self.written = meter.create_counter(
            "eventkit_ringbuffer_written",
            unit="",
            description="Entries committed to the ring buffer",
        )
        self.published = meter.create_counter(
            "eventkit_ringbuffer_published",
            unit="",
            description="Entries published from the ring buffer (label result: ok, error)",
        )
        self.marked_published = meter.create_counter(
            "eventkit_ringbuffer_marked_published",
            unit="",
            description="Entries released (marked as published) in the ring buffer",
        )
        meter.create_observable_gauge(
            "eventkit_ringbuffer_size",
            callbacks=[self._observe_size],
            unit="",
            description="Rows in the ring buffer (unreleased and retained released)",
        )
        meter.create_observable_gauge(
            "eventkit_ringbuffer_unpublished",
            callbacks=[self._observe_unpublished],
            unit="",
            description="Unreleased entries in the ring buffer",
        )

    def _observe_size(self, _options: CallbackOptions) -> Iterable[Observation]:
        yield Observation(sum(b._gauge_values[0] for b in list(self.buffers)))

    def _observe_unpublished(self, _options: CallbackOptions) -> Iterable[Observation]:
        yield Observation(sum(b._gauge_values[1] for b in list(self.buffers)))


#: The shared instruments for a provider (``None``: the global provider), made on first use.
instruments: PerKey[MeterProvider | None, Instruments] = PerKey(Instruments)
