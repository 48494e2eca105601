"""A small, fast, crash-safe SQLite WAL durable log (group commit, bounded, at-least-once)."""

from importlib.metadata import version as _version

__version__ = _version("eventkit-ring-buffer")

__all__ = ["__version__"]
