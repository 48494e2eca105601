"""Protocols for every pluggable part. Backends implement them structurally (no base class).

Durable writes report what they covered (:class:`StoredFile.source_ids`): the ring buffer and
Pub/Sub release entries only after the file holding them is written.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from datetime import datetime
from typing import Protocol, runtime_checkable

import msgspec

from eventkit_core.events import AdaptResult, DeadLetter, RawEvent, SourceId, TypedEvent


class StoredFile(msgspec.Struct, frozen=True, kw_only=True):
    """One durably written file."""

    #: Path relative to the store's root (``events/<stream>/YYYY/MM/DD/HH/<name>.parquet``).
    path: str
    #: Full address: ``file:///...`` or ``gs://bucket/...``.
    uri: str
    rows: int
    bytes: int
    #: Source entries of the rows in this file (may repeat: one entry can hold many events).
    source_ids: tuple[SourceId, ...] = ()
    #: False when a file of the same name already existed (a re-flush after a crash).
    created: bool = True


class LoadReport(msgspec.Struct, frozen=True, kw_only=True):
    """What one warehouse load pass did."""

    loaded: tuple[str, ...] = ()
    skipped: tuple[str, ...] = ()
    failed: tuple[str, ...] = ()
    rows: int = 0


@runtime_checkable
class SchemaAdapter(Protocol):
    """Turns a :class:`RawEvent` into a typed event, or says why not. Never raises for content."""

    def adapt(self, raw: RawEvent) -> AdaptResult: ...


@runtime_checkable
class EventStore(Protocol):
    """Writes typed events durably (Parquet files in a directory or a bucket)."""

    async def store(self, event: TypedEvent) -> None: ...

    async def store_batch(self, events: Sequence[TypedEvent]) -> Sequence[StoredFile]: ...

    def health_check(self) -> bool: ...


@runtime_checkable
class ErrorStore(Protocol):
    """The dead-letter store: keeps what could not be accepted, and gives it back for replay."""

    async def store_error(self, dead_letter: DeadLetter) -> None: ...

    async def store_errors(self, dead_letters: Sequence[DeadLetter]) -> Sequence[StoredFile]: ...

    def read_errors(
        self, stream: str, since: datetime | None = None
    ) -> AsyncIterator[DeadLetter]: ...

    def health_check(self) -> bool: ...


@runtime_checkable
class WarehouseLoader(Protocol):
    """Loads stored files into a warehouse table, each file once."""

    async def ensure_schema(self) -> None: ...

    async def load_files(self, uris: Sequence[str]) -> LoadReport: ...

    def health_check(self) -> bool: ...


@runtime_checkable
class EventQueue(Protocol):
    """Moves raw events from the durable log to workers, keeping per-identity order.

    Lifecycle: call ``start()`` before ``put_many`` (a backend may refuse earlier puts);
    ``start()`` and ``stop()`` may be called twice; after ``stop()``, ``put_many`` raises
    :class:`~eventkit_core.QueueError`. ``stop()`` loses nothing a returned ``put_many`` accepted.
    """

    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    async def put_many(self, events: Sequence[RawEvent]) -> None:
        """Accept events; per-identity order holds across sequential calls."""
        ...

    def depth(self) -> int:
        """Events accepted but not yet handed on (queued in process; publishes not yet confirmed)."""
        ...
