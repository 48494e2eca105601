"""The seed's module name: ``from eventkit_queues.streaming import EventSubscriptionCoordinator``."""

from eventkit_queues.coordinator import EventCoordinatorManager, EventSubscriptionCoordinator

__all__ = ["EventCoordinatorManager", "EventSubscriptionCoordinator"]
