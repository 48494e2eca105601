"""An alias module: ``from eventkit_queues.streaming import EventSubscriptionCoordinator`` works.

Kept for code written against the original eventkit package's ``eventkit.streaming``.
"""

from eventkit_queues.coordinator import EventCoordinatorManager, EventSubscriptionCoordinator

__all__ = ["EventCoordinatorManager", "EventSubscriptionCoordinator"]
