"""Errors raised by the ring buffer (both are :class:`eventkit_core.EventkitError`)."""

from __future__ import annotations

from eventkit_core import BackpressureError, EventkitError


class RingBufferFullError(BackpressureError):
    """The buffer holds as many unreleased entries (or bytes) as allowed: nothing was written.

    Answer 503 with ``Retry-After: retry_after`` and let the client retry; the buffer drains as
    the publisher releases entries.
    """

    code = "ring_buffer_full"


class EntryTooLargeError(EventkitError, ValueError):
    """One payload is larger than ``max_bytes``: it could never fit, so retrying cannot help."""

    code = "payload_too_large"
