"""Event and error stores over any place that can hold files (a directory, a bucket, memory).

A backend (:class:`FileBackend`) only knows how to create a file once, read it and list files.
:class:`FileEventStore` and :class:`FileErrorStore` do the rest, the same way for every backend:
group a batch by stream and ``received_at`` hour, name each file after its source entries
(:func:`~eventkit_storage.paths.file_name`), build the Parquet bytes off the event loop, write
the groups concurrently, count bytes and files, and report what was written. Items that can
never be stored make a write raise :class:`~eventkit_storage.parquet.UnstorableEventsError`
(naming them) before anything of the batch is written.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import AsyncIterator, Callable, Sequence
from datetime import UTC, datetime
from importlib.metadata import version
from typing import Any, Final, Protocol, TypeVar

import msgspec
import pyarrow as pa
from eventkit_core import (
    ConfigurationError,
    DeadLetter,
    PerKey,
    StoredFile,
    TypedEvent,
    validate_stream,
)
from opentelemetry import metrics
from opentelemetry.metrics import MeterProvider

from eventkit_storage.extras import PAYLOAD_MODES, PayloadMode
from eventkit_storage.parquet import (
    UnstorableEventsError,
    dead_letters_to_table,
    events_to_table,
    read_dead_letters,
    read_events,
    table_to_parquet_bytes,
)
from eventkit_storage.paths import SUFFIX, Kind, event_path, file_name, hour_of, parse_hour

#: Counter names (the Prometheus exporter shows them with ``_total``), label ``storage_type``.
BYTES_WRITTEN: Final = "eventkit_storage_bytes_written"
FILES_WRITTEN: Final = "eventkit_storage_files_written"
_VERSION: Final = version("eventkit-storage")


class _Counters:
    def __init__(self, meter_provider: MeterProvider | None) -> None:
        meter = metrics.get_meter("eventkit_storage", _VERSION, meter_provider=meter_provider)
        self.bytes = meter.create_counter(
            BYTES_WRITTEN, unit="", description="Bytes written to storage"
        )
        self.files = meter.create_counter(
            FILES_WRITTEN, unit="", description="Files written to storage"
        )


# One set of instruments per meter provider (None: the global one), made on first use.
_counters_for: PerKey[MeterProvider | None, _Counters] = PerKey(_Counters)


class FileInfo(msgspec.Struct, frozen=True, kw_only=True):
    """A stored file as listed by ``list_files``."""

    #: Relative to the store's root: ``events/<stream>/YYYY/MM/DD/HH/<name>.parquet``.
    path: str
    #: ``file:///...``, ``gs://bucket/...`` or ``memory://...``.
    uri: str
    size: int
    #: When the file was written (modification time), UTC.
    updated: datetime


class FileBackend(Protocol):
    """Where files live. Paths are relative, ``/``-separated, made by :func:`event_path`."""

    #: Metric label: ``local``, ``gcs``, ``memory``, ...
    storage_type: str

    async def create(self, path: str, data: bytes) -> tuple[bool, int]:
        """Write ``data`` at ``path`` durably unless a file is there already.

        Returns ``(created, size)``: ``created`` is False when the file existed (left as it
        was), ``size`` is the size of the file now at ``path``.
        """
        ...

    async def read(self, path: str) -> bytes: ...

    async def delete(self, path: str) -> bool:
        """Remove the file at ``path`` durably; False when there was none (not an error).

        Only the lifecycle commands (:mod:`eventkit_storage.rewrite`) delete: the collector
        never does, so a store stays create-only for everything that writes events.
        """
        ...

    async def scan(self, prefix: str) -> list[FileInfo]:
        """Files whose path starts with ``prefix`` (a folder, ending in ``/``), any order."""
        ...

    def uri(self, path: str) -> str: ...

    def available(self) -> bool:
        """A cheap, non-blocking check that the place can be written to."""
        ...


_Item = TypeVar("_Item", TypedEvent, DeadLetter)


class _FileStore:
    """What event and error stores share: writing groups of items, listing, reading."""

    _kind: Kind

    def __init__(
        self, backend: FileBackend, *, meter_provider: MeterProvider | None = None
    ) -> None:
        self.backend = backend
        self._failed = False
        self._counters = _counters_for(meter_provider)

    def health_check(self) -> bool:
        """False while the last write failed or the backend is not usable."""
        return not self._failed and self.backend.available()

    def uri(self, path: str) -> str:
        """The full address of a stored file (``file://``, ``gs://``, ...)."""
        return self.backend.uri(path)

    async def read_bytes(self, path: str) -> bytes:
        """The bytes of a stored file (``path`` as in :class:`FileInfo` / :class:`StoredFile`)."""
        return await self.backend.read(path)

    async def list_files(
        self,
        kind: Kind | None = None,
        since: datetime | None = None,
        *,
        stream: str | None = None,
    ) -> list[FileInfo]:
        """Stored Parquet files of ``kind`` (default: this store's), by path.

        ``since``: only files written (``updated``) at or after it. ``stream``: one stream only.
        """
        prefix = f"{kind or self._kind}/"
        if stream is not None:
            prefix += f"{validate_stream(stream)}/"
        files = await self.backend.scan(prefix)
        if since is not None:
            cutoff = _aware(since)
            files = [f for f in files if f.updated >= cutoff]
        return sorted((f for f in files if f.path.endswith(SUFFIX)), key=lambda f: f.path)

    async def _write(
        self,
        items: Sequence[_Item],
        to_table: Callable[[Sequence[_Item]], pa.Table],
    ) -> list[StoredFile]:
        if not items:
            return []
        groups = _group(items)
        # Every group is converted before any is written: a batch holding items that cannot be
        # stored (UnstorableEventsError, naming all of them) writes nothing.
        converted = await asyncio.gather(
            *(asyncio.to_thread(self._prepare, group, to_table) for group in groups),
            return_exceptions=True,
        )
        rejected: list[tuple[TypedEvent | DeadLetter, str]] = []
        for outcome in converted:
            if isinstance(outcome, UnstorableEventsError):
                rejected.extend(outcome.rejected)
            elif isinstance(outcome, BaseException):
                self._failed = True
                raise outcome
        if rejected:
            raise UnstorableEventsError(rejected)
        # Wait for every group even when one fails: a retry must not race a write still going.
        outcomes = await asyncio.gather(
            *(
                self._write_group(group, *prepared)
                for group, prepared in zip(groups, converted, strict=True)
                if isinstance(prepared, tuple)
            ),
            return_exceptions=True,
        )
        written: list[StoredFile] = []
        for result in outcomes:
            if isinstance(result, BaseException):
                self._failed = True
                raise result
            written.append(result)
        self._failed = False
        return written

    def _prepare(
        self, group: Sequence[_Item], to_table: Callable[[Sequence[_Item]], pa.Table]
    ) -> tuple[str, bytes]:
        """The path and the Parquet bytes of ``group`` (runs in a worker thread)."""
        data = table_to_parquet_bytes(to_table(group))
        first = group[0]
        try:
            name = file_name(group)
        except (AttributeError, TypeError, ValueError):
            rejected: list[tuple[TypedEvent | DeadLetter, str]] = [
                (item, f"column 'message_id': {type(item.message_id).__name__} is not a str")
                for item in group
                if item.message_id is not None and not isinstance(item.message_id, str)
            ]
            if not rejected:
                raise
            raise UnstorableEventsError(rejected) from None
        return event_path(self._kind, first.stream, first.received_at, name), data

    async def _write_group(self, group: Sequence[_Item], path: str, data: bytes) -> StoredFile:
        created, size = await self.backend.create(path, data)
        if created:
            labels = {"storage_type": self.backend.storage_type}
            self._counters.bytes.add(len(data), labels)
            self._counters.files.add(1, labels)
        return StoredFile(
            path=path,
            uri=self.backend.uri(path),
            rows=len(group),
            bytes=size,
            source_ids=tuple(i.source_id for i in group if i.source_id is not None),
            created=created,
        )


class FileEventStore(_FileStore):
    """An :class:`~eventkit_core.EventStore` writing Parquet files through a :class:`FileBackend`.

    ``payload``: ``"extras"`` (the default) stores the top-level fields no column holds in
    ``extras`` and leaves ``payload`` null; ``"full"`` also keeps the whole original object in
    ``payload`` (:mod:`eventkit_storage.extras`).
    """

    _kind: Kind = "events"

    def __init__(
        self,
        backend: FileBackend,
        *,
        meter_provider: MeterProvider | None = None,
        payload: PayloadMode = "extras",
    ) -> None:
        super().__init__(backend, meter_provider=meter_provider)
        if payload not in PAYLOAD_MODES:
            raise ConfigurationError(f"payload must be one of {PAYLOAD_MODES}, not {payload!r}")
        self.payload: PayloadMode = payload

    async def store(self, event: TypedEvent) -> None:
        """Write one event (in a file of its own: prefer :meth:`store_batch`)."""
        await self.store_batch([event])

    async def store_batch(self, events: Sequence[TypedEvent]) -> list[StoredFile]:
        """Write ``events``: one file per stream and ``received_at`` hour, create-only.

        A file whose name exists already (the same entries written before a crash) is left as
        it is and reported with ``created=False``. Raises on failure; nothing is reported then.
        Events that can never be stored as they are (a lone surrogate in a string, JSON bytes
        that are not UTF-8, a wrong type, a missing required value) make it raise
        :class:`~eventkit_storage.parquet.UnstorableEventsError` naming them, writing nothing.
        """
        return await self._write(events, functools.partial(events_to_table, payload=self.payload))

    async def read_table(self, path: str) -> pa.Table:
        """The events of a stored file, as an Arrow table with ``EVENT_SCHEMA``."""
        return read_events(await self.read_bytes(path))


class FileErrorStore(_FileStore):
    """An :class:`~eventkit_core.ErrorStore` writing dead letters as Parquet through a backend."""

    _kind: Kind = "dead-letters"

    async def store_error(self, dead_letter: DeadLetter) -> None:
        """Write one dead letter (in a file of its own: prefer :meth:`store_errors`)."""
        await self.store_errors([dead_letter])

    async def store_errors(self, dead_letters: Sequence[DeadLetter]) -> list[StoredFile]:
        """Write ``dead_letters``: one file per stream and ``received_at`` hour, create-only."""
        return await self._write(dead_letters, dead_letters_to_table)

    async def read_errors(
        self, stream: str, since: datetime | None = None
    ) -> AsyncIterator[DeadLetter]:
        """The dead letters of ``stream`` (received at or after ``since``), file by file.

        They come back as they were stored, except ``source_id``, which is not stored (it names
        a delivery, not the event).
        """
        files = await self.list_files(stream=stream)
        cutoff = None if since is None else _aware(since)
        first_hour = None if cutoff is None else hour_of(cutoff)
        for info in files:
            hour = parse_hour(info.path)
            if first_hour is not None and hour is not None and hour < first_hour:
                continue
            letters = read_dead_letters(await self.read_bytes(info.path))
            for letter in letters:
                if cutoff is None or _aware(letter.received_at) >= cutoff:
                    yield letter


def _group(items: Sequence[_Item]) -> list[list[_Item]]:
    """Items by (stream, UTC hour of received_at), in order of first appearance.

    Raises :class:`UnstorableEventsError` naming the items whose ``received_at`` is no datetime.
    """
    try:
        return _group_by_hour(items)
    except (AttributeError, TypeError, ValueError, OverflowError):
        rejected: list[tuple[TypedEvent | DeadLetter, str]] = [
            (item, f"column 'received_at': {type(item.received_at).__name__} is not a datetime")
            for item in items
            if not isinstance(item.received_at, datetime)
        ]
        if not rejected:
            raise
        raise UnstorableEventsError(rejected) from None


def _group_by_hour(items: Sequence[_Item]) -> list[list[_Item]]:
    groups: dict[tuple[str, Any], list[_Item]] = {}
    for item in items:
        received = item.received_at
        if received.tzinfo is not None and received.utcoffset():
            received = received.astimezone(UTC)
        key = (item.stream, received.timetuple()[:4])
        group = groups.get(key)
        if group is None:
            groups[key] = [item]
        else:
            group.append(item)
    return list(groups.values())


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)
