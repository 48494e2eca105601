"""Package surface: lazy Pub/Sub imports, the seed's module alias, ordering keys, errors."""

from __future__ import annotations

import subprocess
import sys
from typing import Any

import eventkit_queues
import pytest
from eventkit_core import QueueError, RawEvent, encode_raw_event
from eventkit_queues import PublishError
from eventkit_queues.pubsub import (
    MAX_ORDERING_KEY_BYTES,
    ordering_key,
    subscription_path,
    topic_path,
)


def test_import_does_not_load_the_google_client() -> None:
    code = (
        "import sys, eventkit_queues\n"
        "assert not [m for m in sys.modules if m.startswith('google')], 'google imported'\n"
        "eventkit_queues.AsyncQueue\n"
        "eventkit_queues.PubSubQueue\n"
        "assert 'google.cloud.pubsub_v1' in sys.modules\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_seed_module_alias_exports_the_same_classes() -> None:
    from eventkit_queues.streaming import EventCoordinatorManager, EventSubscriptionCoordinator

    assert EventSubscriptionCoordinator is eventkit_queues.EventSubscriptionCoordinator
    assert EventCoordinatorManager is eventkit_queues.EventCoordinatorManager


def test_unknown_attribute_is_an_attribute_error() -> None:
    with pytest.raises(AttributeError):
        eventkit_queues.NoSuchThing  # noqa: B018


def test_ordering_key_is_the_identity_and_long_keys_are_hashed() -> None:
    assert ordering_key(RawEvent(payload={"userId": "u-1", "anonymousId": "a"})) == "u-1"
    assert ordering_key(RawEvent(payload={"anonymousId": "a-9"})) == "a-9"
    long_id = "é" * 600  # 1,200 bytes of UTF-8
    key = ordering_key(RawEvent(payload={"userId": long_id}))
    assert key.startswith("sha256:")
    assert len(key.encode()) <= MAX_ORDERING_KEY_BYTES
    assert key == ordering_key(RawEvent(payload={"userId": long_id}))  # stable per identity
    assert ordering_key(RawEvent(payload={"userId": "x" * 1024})) == "x" * 1024


def test_paths() -> None:
    assert topic_path("p", "t") == "projects/p/topics/t"
    assert topic_path("p", "projects/q/topics/t") == "projects/q/topics/t"
    assert subscription_path("p", "s") == "projects/p/subscriptions/s"


def test_publish_error_is_a_queue_error_with_both_lists() -> None:
    ok, bad = RawEvent(payload={"userId": "a"}), RawEvent(payload={"userId": "b"})
    error = PublishError("1 of 2 failed", published=[ok], failed=[bad], errors=[OSError("x")])
    assert isinstance(error, QueueError)
    assert isinstance(error, RuntimeError)
    assert (error.published, error.failed, error.code) == ([ok], [bad], "publish_failed")


async def test_pubsub_queue_refuses_events_before_start() -> None:
    queue = eventkit_queues.PubSubQueue("p", "t")
    with pytest.raises(QueueError, match="start"):
        await queue.put_many([RawEvent(payload={})])


class RecordingPublisher:
    """Stands in for a generated PublisherClient: records each Publish request."""

    def __init__(self) -> None:
        self.requests: list[list[tuple[bytes, str]]] = []

    def publish(self, *, request: Any, retry: object, timeout: float) -> None:
        self.requests.append([(m.data, m.ordering_key) for m in request.messages])


async def test_put_many_packs_many_keys_per_request_within_the_limits() -> None:
    publisher = RecordingPublisher()
    queue = eventkit_queues.PubSubQueue("p", "t", publisher=publisher, max_messages=4)
    events = [RawEvent(payload={"userId": f"u{i}", "n": i}) for i in range(10)]
    await queue.start()
    await queue.put_many(events)
    assert [len(r) for r in publisher.requests] == [4, 4, 2]
    sent = [message for request in publisher.requests for message in request]
    assert [key for _data, key in sent] == [f"u{i}" for i in range(10)]  # order kept
    assert [data for data, _key in sent] == [encode_raw_event(e) for e in events]

    size = len(encode_raw_event(events[0])) + 2 + 16  # data + key + framing, per message
    by_bytes = eventkit_queues.PubSubQueue("p", "t", publisher=publisher, max_bytes=3 * size + 1)
    publisher.requests.clear()
    await by_bytes.start()
    await by_bytes.put_many(events)
    assert [len(r) for r in publisher.requests] == [3, 3, 3, 1]
    await queue.stop()
    await by_bytes.stop()


async def test_an_event_that_cannot_be_encoded_fails_with_everything_after_it() -> None:
    publisher = RecordingPublisher()
    queue = eventkit_queues.PubSubQueue("p", "t", publisher=publisher, max_messages=2)
    events = [RawEvent(payload={"userId": f"u{i}"}) for i in range(5)]
    events[3] = RawEvent(payload={"userId": "u3", "bad": object()})
    await queue.start()
    with pytest.raises(PublishError) as info:
        await queue.put_many(events)
    await queue.stop()
    assert info.value.published == events[:2]  # the first request went out
    assert info.value.failed == events[2:]
    assert len(info.value.errors) == 3
    assert [len(r) for r in publisher.requests] == [2]
