"""Partitioned in-process queue, Pub/Sub queue and subscription coordinators for eventkit.

``AsyncQueue`` needs nothing beyond eventkit-core. The Pub/Sub parts (``PubSubQueue``,
``EventSubscriptionCoordinator``, ``EventCoordinatorManager``, ``ensure_topic``,
``ensure_subscription``) need the extra ``eventkit-queues[pubsub]``; they are imported on first
use, so ``import eventkit_queues`` never imports the Google client.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from eventkit_core import MissingDependencyError

from eventkit_queues._version import VERSION as __version__
from eventkit_queues.errors import PublishError
from eventkit_queues.inprocess import AsyncQueue, Handler

if TYPE_CHECKING:
    from eventkit_queues.coordinator import EventCoordinatorManager, EventSubscriptionCoordinator
    from eventkit_queues.pubsub import PubSubQueue, ensure_subscription, ensure_topic

_LAZY = {
    "PubSubQueue": "eventkit_queues.pubsub",
    "ensure_topic": "eventkit_queues.pubsub",
    "ensure_subscription": "eventkit_queues.pubsub",
    "EventSubscriptionCoordinator": "eventkit_queues.coordinator",
    "EventCoordinatorManager": "eventkit_queues.coordinator",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'eventkit_queues' has no attribute {name!r}")
    try:
        value = getattr(importlib.import_module(module), name)
    except ImportError as exc:
        raise MissingDependencyError(
            f"eventkit_queues.{name} needs the Pub/Sub client: "
            "install the extra with `pip install 'eventkit-queues[pubsub]'`"
        ) from exc
    globals()[name] = value
    return value


__all__ = [
    "AsyncQueue",
    "EventCoordinatorManager",
    "EventSubscriptionCoordinator",
    "Handler",
    "PubSubQueue",
    "PublishError",
    "__version__",
    "ensure_subscription",
    "ensure_topic",
]
