"""Builds the collector's parts from :class:`Settings`: the one place that reads them.

Each queue mode is one small strategy (:data:`MODES`): it builds the loader and the sink of that
mode; everything else is shared. What comes out is typed by the protocols the parts are used
through, so swapping a backend means changing this file only.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Final, Protocol

from eventkit_core import (
    ConfigurationError,
    DeadLetter,
    ErrorStore,
    EventStore,
    RawEvent,
    StoredFile,
    TypedEvent,
)
from eventkit_queues import AsyncQueue
from eventkit_ring_buffer import RingBuffer
from eventkit_storage import EventLoader, LocalErrorStore, LocalEventStore

from eventkit_collector import suppression
from eventkit_collector.adapter import CollectorAdapter
from eventkit_collector.anonymise import IpPolicy, with_ip_policy
from eventkit_collector.edge import Limits
from eventkit_collector.pipeline import Loader, Pipeline, PipelineConfig
from eventkit_collector.publish_ack import PublishAck, PublishAckConfig, check_ack_mode
from eventkit_collector.release import ReleaseTracker
from eventkit_collector.settings import Settings
from eventkit_collector.sinks import (
    CountingAdapter,
    EventCounts,
    InProcessSink,
    PubSubSink,
    Sink,
    queue_worker,
)

# The Google clients (GCS, Pub/Sub) are imported by the modes that use them: about 65 MB of RSS
# that a local collector does not need.

Item = TypedEvent | DeadLetter
OnFlushed = Callable[[Sequence[StoredFile]], None]


class StoringLoader(Loader, Protocol):
    """The EventLoader, as the sinks use it."""

    async def submit(self, items: Sequence[Item]) -> None: ...

    async def add(self, item: RawEvent | Item) -> None: ...

    async def flush(self) -> None: ...


def limits(settings: Settings) -> Limits:
    return Limits(
        max_event_bytes=settings.eventkit_max_event_bytes,
        max_batch_bytes=settings.eventkit_max_batch_bytes,
        max_batch_events=settings.eventkit_max_batch_events,
    )


def ip_policy(settings: Settings) -> IpPolicy:
    """EVENTKIT_IP_MODE and EVENTKIT_STREAM_IP_MODE."""
    return IpPolicy(settings.eventkit_ip_mode, settings.eventkit_stream_ip_mode)


def check_ip_mode_with_publish(policy: IpPolicy) -> None:
    """Publish acknowledgement skips the sink that anonymises IPs: refuse rather than store
    whole addresses a setting says not to keep."""
    if policy.enabled:
        raise ConfigurationError(
            "EVENTKIT_IP_MODE / EVENTKIT_STREAM_IP_MODE are not applied with "
            "EVENTKIT_ACK_MODE=publish yet: use EVENTKIT_ACK_MODE=commit, or keep IPs full"
        )


def make_stores(settings: Settings) -> tuple[EventStore, ErrorStore]:
    """The event and dead-letter stores of ``EVENTKIT_EVENT_STORE``."""
    if settings.eventkit_event_store == "gcs":
        from eventkit_storage.gcs import GCSErrorStore, GCSEventStore

        bucket = settings.gcp_gcs_bucket
        assert bucket is not None  # Settings refuses gcs without a bucket
        prefix, project = settings.eventkit_gcs_prefix, settings.gcp_project_id
        return (
            GCSEventStore(
                bucket, prefix=prefix, project=project, payload=settings.eventkit_parquet_payload
            ),
            GCSErrorStore(bucket, prefix=prefix, project=project),
        )
    data_dir = settings.eventkit_data_dir
    return (
        LocalEventStore(data_dir, payload=settings.eventkit_parquet_payload),
        LocalErrorStore(data_dir),
    )


def make_loader(
    settings: Settings,
    event_store: EventStore,
    error_store: ErrorStore,
    adapter: CountingAdapter,
    on_flushed: OnFlushed | None,
) -> StoringLoader:
    """The EventLoader with the flush settings (tests replace this to record instead)."""
    return EventLoader(
        event_store,
        error_store,
        adapter=adapter,
        max_events=settings.eventkit_flush_max_events,
        max_bytes=settings.eventkit_flush_max_bytes,
        max_age=settings.eventkit_flush_max_age,
        max_buffered_events=settings.eventkit_max_buffered_events,
        on_flushed=on_flushed,
    )


@dataclass(frozen=True, kw_only=True)
class Shared:
    """What every queue mode gets."""

    settings: Settings
    event_store: EventStore
    error_store: ErrorStore
    adapter: CountingAdapter
    tracker: ReleaseTracker


def in_process_mode(parts: Shared) -> tuple[StoringLoader, Sink]:
    """``async``: entries are released once their events are in written files."""
    s = parts.settings
    loader = make_loader(
        s, parts.event_store, parts.error_store, parts.adapter, parts.tracker.on_flushed
    )
    queue = AsyncQueue(
        queue_worker(parts.adapter.adapt_batch, loader.submit),
        partitions=s.eventkit_partitions,
        max_depth=s.eventkit_queue_max_depth,
        max_batch=s.eventkit_queue_max_batch,
    )
    return loader, InProcessSink(queue, parts.tracker.track)


def pubsub_mode(parts: Shared) -> tuple[StoringLoader, Sink]:
    """``pubsub``: entries are released once published; the archive subscription stores."""
    from eventkit_queues.coordinator import EventCoordinatorManager, EventSubscriptionCoordinator
    from eventkit_queues.pubsub import PubSubQueue

    s = parts.settings
    project = s.gcp_project_id
    assert project is not None  # Settings refuses pubsub without a project
    # No on_flushed: the entries were released when published.
    loader = make_loader(s, parts.event_store, parts.error_store, parts.adapter, None)
    archive = EventSubscriptionCoordinator(
        project_id=project,
        subscription=s.eventkit_pubsub_subscription,
        handler=loader.add,
        # Messages stay leased until their file is written: allow two flushes' worth in
        # flight, or the count limit could never be reached and every flush would wait
        # for the age limit.
        max_messages=2 * s.eventkit_flush_max_events,
        max_bytes=2 * s.eventkit_flush_max_bytes,
    )
    sink = PubSubSink(
        PubSubQueue(project, s.eventkit_pubsub_topic),
        EventCoordinatorManager([archive]),
        release=parts.tracker.release,
        flush=loader.flush,
        prepare=functools.partial(_create_topic, s) if s.eventkit_pubsub_create else None,
    )
    return loader, sink


async def _create_topic(settings: Settings) -> None:
    from eventkit_queues.pubsub import ensure_subscription, ensure_topic

    project = settings.gcp_project_id
    assert project is not None
    await asyncio.to_thread(ensure_topic, project, settings.eventkit_pubsub_topic)
    # The archive path writes files and needs no delivery order; an ordered subscription
    # would hand over one unacked message per user at a time, and EventLoader.add acks only
    # after the flush: about one event per user per flush.
    await asyncio.to_thread(
        ensure_subscription,
        project,
        settings.eventkit_pubsub_topic,
        settings.eventkit_pubsub_subscription,
        enable_message_ordering=False,
    )


#: ``EVENTKIT_QUEUE_MODE`` -> the strategy that builds its loader and sink.
MODES: Final[dict[str, Callable[[Shared], tuple[StoringLoader, Sink]]]] = {
    "async": in_process_mode,
    "pubsub": pubsub_mode,
}


def build_pipeline(
    settings: Settings,
    *,
    counts: EventCounts | None = None,
    shard: int | None = None,
    stores: tuple[EventStore, ErrorStore] | None = None,
    tap: Callable[[Sequence[Item]], None] | None = None,
) -> Pipeline:
    """Every part behind the HTTP edge, ready to start. Raises ConfigurationError."""
    check_ack_mode(settings.eventkit_queue_mode, settings.eventkit_ack_mode)
    adapter = CollectorAdapter(
        max_event_bytes=settings.eventkit_max_event_bytes, rules_file=settings.eventkit_rules_file
    )
    event_store, error_store = stores if stores is not None else make_stores(settings)
    event_store, error_store = suppression.wrap(
        event_store, error_store, settings.eventkit_suppression_reload_seconds
    )
    tracker = ReleaseTracker()
    loader, sink = MODES[settings.eventkit_queue_mode](
        Shared(
            settings=settings,
            event_store=event_store,
            error_store=error_store,
            adapter=CountingAdapter(adapter, counts, tap=tap),
            tracker=tracker,
        )
    )
    sink = with_ip_policy(sink, ip_policy(settings))
    config = PipelineConfig(
        ring_dir=settings.ring_dir,
        limits=limits(settings),
        type_streams=dict(settings.eventkit_type_streams),
        source_streams={
            **settings.source_type_streams(),
            "snowplow": settings.snowplow_type_streams,
        },
        workers=settings.eventkit_workers,
        shard=shard,
        max_pending_requests=settings.eventkit_max_pending_requests,
        max_pending_bytes=settings.eventkit_max_pending_bytes,
    )
    open_ring = functools.partial(
        RingBuffer,
        durability=settings.eventkit_ring_durability,
        max_entries=settings.eventkit_ring_max_entries,
        max_bytes=settings.eventkit_ring_max_bytes,
    )
    return Pipeline(config, open_ring=open_ring, sink=sink, loader=loader, tracker=tracker)


def build_publish_ack(settings: Settings, config: PipelineConfig) -> PublishAck | None:
    """``EVENTKIT_ACK_MODE=publish``: the request path that answers once Pub/Sub confirmed."""
    check_ack_mode(settings.eventkit_queue_mode, settings.eventkit_ack_mode)
    if settings.eventkit_ack_mode != "publish":
        return None
    check_ip_mode_with_publish(ip_policy(settings))
    from eventkit_queues.pubsub import PubSubQueue

    project = settings.gcp_project_id
    assert project is not None  # Settings refuses pubsub without a project
    timeout = settings.eventkit_ack_timeout
    # Retries of one publish stop within the answer's bound: past it the client got a 503.
    publisher = PubSubQueue(
        project, settings.eventkit_pubsub_topic, request_timeout=timeout, retry_deadline=timeout
    )
    return PublishAck(
        publisher,
        PublishAckConfig(
            timeout=timeout,
            max_pending_requests=settings.eventkit_max_pending_requests,
            max_pending_bytes=settings.eventkit_max_pending_bytes,
            type_streams=config.type_streams,
            source_streams=config.source_streams,
        ),
    )
