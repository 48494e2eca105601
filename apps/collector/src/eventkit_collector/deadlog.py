"""A rate-limited log line for events that go to the dead letters.

One warning per (stream, reason code) at most every ``interval`` seconds; the line says how many
dead letters of that kind there were since the last line, so nothing is hidden and a flood of bad
events does not flood the log. The first one of a kind is logged at once.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

log = logging.getLogger("eventkit_collector.dead_letters")

#: Seconds between two lines about the same stream and reason code.
DEFAULT_INTERVAL: Final = 60.0


@dataclass
class _Kind:
    pending: int = 0  # dead letters not in a line yet
    logged_at: float | None = None  # monotonic time of the last line


class DeadLetterLog:
    """Counts dead letters per (stream, reason code) and logs them at most once per interval."""

    def __init__(
        self,
        interval: float = DEFAULT_INTERVAL,
        clock: Callable[[], float] = time.monotonic,
        logger: logging.Logger = log,
    ) -> None:
        self.interval = interval
        self._clock = clock
        self._log = logger
        self._lock = threading.Lock()  # adapters may run in worker threads
        self._kinds: dict[tuple[str, str], _Kind] = {}

    def record(self, stream: str, code: str, reason: str, count: int = 1) -> None:
        """Note ``count`` dead letters; log a line when this kind was quiet for an interval."""
        now = self._clock()
        with self._lock:
            state = self._kinds.setdefault((stream, code), _Kind())
            state.pending += count
            if state.logged_at is not None and now - state.logged_at < self.interval:
                return
            pending, state.pending, state.logged_at = state.pending, 0, now
        self._log.warning(
            "%d event(s) of stream %s went to the dead letters (%s): %s "
            "[at most one line per stream and reason per %gs; see `eventkit-loader dead-letters`]",
            pending,
            stream,
            code,
            reason,
            self.interval,
        )
