"""Partitioned in-process queue, Pub/Sub queue and subscription coordinators for eventkit."""

from importlib.metadata import version as _version

__version__ = _version("eventkit-queues")

__all__ = ["__version__"]
