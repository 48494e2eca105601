"""Release bookkeeping: which ring-buffer entries may be released, and releasing them.

An entry (one HTTP request) holds many events, which may go to several streams and so to several
files written at different times. :class:`ReleaseTracker` counts, per entry, the events not yet
durably stored; when the count reaches zero the entry is ready, and one background task releases
ready entries in batches (``mark_published``), retrying on failure.

Shutdown order matters: :meth:`ReleaseTracker.close` must come after the last file could be
written (after the loader stopped). The task then releases everything ready and ends; nothing
that was stored is left for the next start to deliver again.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import Iterable, Sequence
from typing import Final, Protocol

from eventkit_core import EventkitError, SourceId, StoredFile

log = logging.getLogger("eventkit_collector.release")

#: Attempts at releasing after close() before leaving the rest to the next start.
_CLOSING_ATTEMPTS: Final = 5


class Releasable(Protocol):
    """The part of the ring buffer the tracker needs."""

    async def mark_published(self, ids: Iterable[int]) -> int: ...


#: ``(entry id, number of events it became)`` for each entry handed to the queue.
EntryCounts = Sequence[tuple[int, int]]


class ReleaseTracker:
    """Owns the outstanding ring-buffer entries and their release."""

    def __init__(self, retry_delay: float = 0.5) -> None:
        self.retry_delay = retry_delay
        # entry id -> events not yet durably stored
        self._outstanding: dict[int, int] = {}
        self._ready: list[int] = []
        self._wake = asyncio.Event()
        self._closing = False
        self._task: asyncio.Task[None] | None = None
        self.released = 0

    def start(self, ring: Releasable) -> None:
        self._task = asyncio.create_task(self._run(ring), name="eventkit-release")

    async def close(self) -> None:
        """Release everything ready, then stop. Call it once nothing can be stored any more."""
        self._closing = True
        self._wake.set()
        if self._task is not None:
            await self._task
            self._task = None

    # -- what the pipeline reports -----------------------------------------------------------

    def track(self, entries: EntryCounts) -> None:
        """Count the events of each entry that must be stored before it is released."""
        outstanding = self._outstanding
        for entry_id, n in entries:
            if n == 0:
                self._ready.append(entry_id)
            else:
                outstanding[entry_id] = outstanding.get(entry_id, 0) + n
        if self._ready:
            self._wake.set()

    def forget(self, entry_ids: Iterable[int]) -> None:
        """Stop tracking entries that were not delivered: they stay in the ring buffer."""
        for entry_id in entry_ids:
            self._outstanding.pop(entry_id, None)

    def release(self, entry_ids: Iterable[int]) -> None:
        """Release these entries now (published to Pub/Sub, or not an envelope at all)."""
        self._ready.extend(entry_ids)
        self._wake.set()

    def on_flushed(self, files: Sequence[StoredFile]) -> None:
        """The loader's ``on_flushed``: the rows of ``files`` are durable."""
        # Rows name their entry (one entry holds many events): count per entry in C, then do
        # the bookkeeping once per entry rather than once per event.
        counts: Counter[SourceId] = Counter()
        for f in files:
            counts.update(f.source_ids)
        outstanding = self._outstanding
        ready = self._ready
        for sid, n in counts.items():
            if not isinstance(sid, int):
                continue
            left = outstanding.get(sid)
            if left is None:
                continue
            if left <= n:
                del outstanding[sid]
                ready.append(sid)
            else:
                outstanding[sid] = left - n
        if ready:
            self._wake.set()

    def outstanding_entries(self) -> int:
        """Entries handed on whose events are not all stored yet."""
        return len(self._outstanding)

    # -- the release task --------------------------------------------------------------------

    async def _run(self, ring: Releasable) -> None:
        failures = 0
        while True:
            if not self._ready:
                # Ends only on close(): until then a file may still be written (a drain writes
                # one per stream, at different times) and its entries must be released.
                if self._closing:
                    return
                self._wake.clear()
                await self._wake.wait()
                continue
            ids, self._ready = self._ready, []
            try:
                await ring.mark_published(ids)
            except Exception as exc:
                failures += 1
                self._ready[:0] = ids
                if self._closing and failures >= _CLOSING_ATTEMPTS:
                    log.exception(
                        "releasing %d ring-buffer entries failed %d times while stopping; they "
                        "stay in the ring buffer and the next start delivers them again",
                        len(self._ready),
                        failures,
                    )
                    return
                if failures == 1:  # once per failing stretch, not on every retry
                    log.warning(
                        "releasing %d ring-buffer entries failed; retrying until it works: %s",
                        len(ids),
                        exc,
                        # A library error (a full disk) says it all; anything else is a bug.
                        exc_info=None if isinstance(exc, EventkitError) else exc,
                    )
                await asyncio.sleep(self.retry_delay)
                continue
            if failures:
                log.info("releasing ring-buffer entries works again")
            failures = 0
            self.released += len(ids)
