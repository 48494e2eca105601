"""In-memory event and error stores: the same behaviour as the file stores, for unit tests.

Files are real Parquet bytes kept in a dict, so what a test reads back is what a directory or a
bucket would hold. Nothing survives the process.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from eventkit_core import StoredFileNotFoundError, utcnow
from opentelemetry.metrics import MeterProvider

from eventkit_storage.extras import PayloadMode
from eventkit_storage.filestore import FileErrorStore, FileEventStore, FileInfo


@dataclass
class MemoryFiles:
    """A :class:`~eventkit_storage.filestore.FileBackend` in a dict (path -> bytes)."""

    storage_type: str = "memory"
    files: dict[str, tuple[bytes, datetime]] = field(default_factory=dict)

    async def create(self, path: str, data: bytes) -> tuple[bool, int]:
        existing = self.files.get(path)
        if existing is not None:
            return False, len(existing[0])
        self.files[path] = (bytes(data), utcnow())
        return True, len(data)

    async def read(self, path: str) -> bytes:
        try:
            return self.files[path][0]
        except KeyError:
            raise StoredFileNotFoundError(f"no stored file {path!r}") from None

    async def delete(self, path: str) -> bool:
        return self.files.pop(path, None) is not None

    async def scan(self, prefix: str) -> list[FileInfo]:
        return [
            FileInfo(path=path, uri=self.uri(path), size=len(data), updated=updated)
            for path, (data, updated) in self.files.items()
            if path.startswith(prefix)
        ]

    def uri(self, path: str) -> str:
        return f"memory:///{path}"

    def available(self) -> bool:
        return True


class MemoryEventStore(FileEventStore):
    """An :class:`~eventkit_core.EventStore` holding its Parquet files in memory.

    Pass the same :class:`MemoryFiles` to a :class:`MemoryErrorStore` to share one "root".
    """

    backend: MemoryFiles

    def __init__(
        self,
        files: MemoryFiles | None = None,
        *,
        meter_provider: MeterProvider | None = None,
        payload: PayloadMode = "extras",
    ) -> None:
        super().__init__(files or MemoryFiles(), meter_provider=meter_provider, payload=payload)


class MemoryErrorStore(FileErrorStore):
    """An :class:`~eventkit_core.ErrorStore` holding its Parquet files in memory."""

    backend: MemoryFiles

    def __init__(
        self, files: MemoryFiles | None = None, *, meter_provider: MeterProvider | None = None
    ) -> None:
        super().__init__(files or MemoryFiles(), meter_provider=meter_provider)
