"""Test doubles shared by the storage tests."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

from eventkit_core import DeadLetter, SourceId, StoredFile, TypedEvent
from eventkit_storage import MemoryErrorStore, MemoryEventStore


class FlakyStore(MemoryEventStore):
    """Fails the first ``failures`` writes, then works."""

    def __init__(self, failures: int) -> None:
        super().__init__()
        self.failures = failures
        self.attempts = 0

    async def store_batch(self, events: Sequence[TypedEvent]) -> list[StoredFile]:
        self.attempts += 1
        if self.attempts <= self.failures:
            raise OSError(f"disk unplugged (attempt {self.attempts})")
        return await super().store_batch(events)


class FlakyErrors(MemoryErrorStore):
    """Raises OSError on the first ``failures`` dead-letter writes."""

    def __init__(self, failures: int) -> None:
        super().__init__()
        self.failures = failures
        self.attempts = 0

    async def store_errors(self, dead_letters: Sequence[DeadLetter]) -> list[StoredFile]:
        self.attempts += 1
        if self.attempts <= self.failures:
            raise OSError("bucket unreachable")
        return await super().store_errors(dead_letters)


class Reports:
    """An on_flushed callback that remembers what it was told."""

    def __init__(self) -> None:
        self.files: list[StoredFile] = []

    async def __call__(self, files: Sequence[StoredFile]) -> None:
        self.files.extend(files)

    @property
    def source_ids(self) -> Counter[SourceId]:
        return Counter(i for f in self.files for i in f.source_ids)

    @property
    def rows(self) -> int:
        return sum(f.rows for f in self.files)
