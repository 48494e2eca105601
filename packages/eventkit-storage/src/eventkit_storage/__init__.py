"""Batching, Parquet, event/error stores and warehouse loaders for eventkit.

Importing this package pulls neither the Google clients nor DuckDB: the GCS stores live in
:mod:`eventkit_storage.gcs` (extra ``[gcs]``), the warehouse loaders in their own modules.
"""

from importlib.metadata import version as _version

from eventkit_storage.extras import PayloadMode, extras_json, normalised_event
from eventkit_storage.filestore import FileBackend, FileErrorStore, FileEventStore, FileInfo
from eventkit_storage.loader import EventLoader, LoaderStats, LoaderStoppedError
from eventkit_storage.local import LocalErrorStore, LocalEventStore
from eventkit_storage.memory import MemoryErrorStore, MemoryEventStore
from eventkit_storage.parquet import (
    UnstorableEventsError,
    dead_letters_to_table,
    events_to_table,
    read_dead_letters,
    read_events,
    table_to_parquet_bytes,
)
from eventkit_storage.paths import event_path, file_name
from eventkit_storage.schema import DEAD_LETTER_SCHEMA, EVENT_SCHEMA

__version__ = _version("eventkit-storage")

__all__ = [
    "DEAD_LETTER_SCHEMA",
    "EVENT_SCHEMA",
    "EventLoader",
    "FileBackend",
    "FileErrorStore",
    "FileEventStore",
    "FileInfo",
    "LoaderStats",
    "LoaderStoppedError",
    "LocalErrorStore",
    "LocalEventStore",
    "MemoryErrorStore",
    "MemoryEventStore",
    "PayloadMode",
    "UnstorableEventsError",
    "__version__",
    "dead_letters_to_table",
    "event_path",
    "events_to_table",
    "extras_json",
    "file_name",
    "normalised_event",
    "read_dead_letters",
    "read_events",
    "table_to_parquet_bytes",
]
