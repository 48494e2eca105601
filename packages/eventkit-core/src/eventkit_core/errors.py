"""One error root for eventkit.

Every error subclasses :class:`EventkitError` *and* the builtin it behaves like, so callers can
catch either (``except ValueError`` keeps working). Each carries a stable machine ``code`` (the
``code`` of an HTTP error body) and a message that says what to do.
"""

from __future__ import annotations


class EventkitError(Exception):
    """Root of every eventkit error."""

    code: str = "eventkit_error"

    def __init__(self, message: str, *, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code

    def __str__(self) -> str:
        return self.message


class InvalidStreamError(EventkitError, ValueError):
    """A stream name breaks the naming rule."""

    code = "invalid_stream"


class ConfigurationError(EventkitError, ValueError):
    """A setting or a constructor argument is wrong."""

    code = "invalid_config"


class BackpressureError(EventkitError, RuntimeError):
    """The pipeline is full: retry after ``retry_after`` seconds. Nothing was accepted."""

    code = "overloaded"

    def __init__(self, message: str, *, retry_after: float = 1.0, code: str | None = None) -> None:
        super().__init__(message, code=code)
        self.retry_after = retry_after


class StorageError(EventkitError, OSError):
    """A storage backend failed; the write may be retried."""

    code = "storage_error"


class QueueError(EventkitError, RuntimeError):
    """A queue backend failed to accept or deliver events."""

    code = "queue_error"


class WarehouseError(EventkitError, RuntimeError):
    """A warehouse load or query failed."""

    code = "warehouse_error"


class WarehouseMissingError(WarehouseError, LookupError):
    """The warehouse (its table, dataset or load ledger) is not created yet."""

    code = "warehouse_missing"


class StoredFileNotFoundError(StorageError, FileNotFoundError):
    """A stored file asked for by path does not exist (or no longer does)."""

    code = "not_found"


class MissingDependencyError(EventkitError, ImportError):
    """A backend's optional dependency is not installed: install the package's extra."""

    code = "missing_dependency"
