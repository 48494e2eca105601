"""A small, fast, crash-safe SQLite WAL durable log (group commit, bounded, at-least-once)."""

from importlib.metadata import version as _version

__version__ = _version("eventkit-ring-buffer")

from eventkit_ring_buffer._reader import Entry, RingBufferStats
from eventkit_ring_buffer.buffer import Durability, RingBuffer
from eventkit_ring_buffer.errors import EntryTooLargeError, RingBufferFullError

__all__ = [
    "Durability",
    "Entry",
    "EntryTooLargeError",
    "RingBuffer",
    "RingBufferFullError",
    "RingBufferStats",
    "__version__",
]
