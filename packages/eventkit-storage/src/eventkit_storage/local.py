"""Event and error stores in a local directory: the embedded default.

Each file is written create-only and atomically: the bytes go to a temporary file in the target
folder, which is fsynced, then hard-linked to its final name (``os.link`` fails when that name
exists: the file is left as it was and reported ``created=False``), the temporary name is
removed and the folder fsynced. A crash at any point leaves either no file or the whole file
(and perhaps a ``.*.tmp`` file, which listings ignore).
"""

from __future__ import annotations

import asyncio
import os
import uuid
from datetime import UTC, datetime
from pathlib import Path

from eventkit_core import ConfigurationError, StoredFileNotFoundError
from opentelemetry.metrics import MeterProvider

from eventkit_storage.extras import PayloadMode
from eventkit_storage.filestore import FileErrorStore, FileEventStore, FileInfo


class LocalFiles:
    """A :class:`~eventkit_storage.filestore.FileBackend` under a directory."""

    storage_type = "local"

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root).expanduser().absolute()

    def local_path(self, path: str) -> Path:
        """The file system path of a stored file (``path`` relative to the root)."""
        parts = path.split("/")
        if path.startswith("/") or any(p in ("", ".", "..") for p in parts):
            raise ConfigurationError(
                f"path {path!r} is invalid: use a relative path such as list_files gives"
            )
        return self.root.joinpath(*parts)

    async def create(self, path: str, data: bytes) -> tuple[bool, int]:
        return await asyncio.to_thread(self._create, self.local_path(path), data)

    def _create(self, final: Path, data: bytes) -> tuple[bool, int]:
        folder = final.parent
        _make_dirs(folder)
        tmp = folder / f".{final.name}.{uuid.uuid4().hex[:12]}.tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        try:
            try:
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view) :]
                os.fsync(fd)
            finally:
                os.close(fd)
            try:
                os.link(tmp, final)
                created = True
            except FileExistsError:
                created = False
        finally:
            os.unlink(tmp)
        if created:
            size = len(data)
        else:
            # Written by an earlier run that may have crashed before its fsyncs: make it durable.
            fd = os.open(final, os.O_RDONLY)
            try:
                os.fsync(fd)
                size = os.fstat(fd).st_size
            finally:
                os.close(fd)
        _fsync_dir(folder)
        return created, size

    async def read(self, path: str) -> bytes:
        return await asyncio.to_thread(self._read, self.local_path(path))

    @staticmethod
    def _read(file: Path) -> bytes:
        try:
            return file.read_bytes()
        except FileNotFoundError:
            # The same typed error as every store's (a builtin FileNotFoundError too).
            raise StoredFileNotFoundError(f"no stored file {str(file)!r}") from None

    async def delete(self, path: str) -> bool:
        return await asyncio.to_thread(self._delete, self.local_path(path))

    @staticmethod
    def _delete(file: Path) -> bool:
        try:
            file.unlink()
        except FileNotFoundError:
            return False
        _fsync_dir(file.parent)  # the removal survives a crash once delete() returned
        return True

    async def scan(self, prefix: str) -> list[FileInfo]:
        return await asyncio.to_thread(self._list, prefix)

    def _list(self, prefix: str) -> list[FileInfo]:
        top = self.local_path(prefix.rstrip("/"))
        found: list[FileInfo] = []
        for folder, dirs, names in os.walk(top):
            dirs[:] = [d for d in dirs if not d.startswith(".")]
            for name in names:
                if name.startswith("."):
                    continue
                full = Path(folder, name)
                try:
                    st = full.stat()
                except FileNotFoundError:
                    continue
                rel = full.relative_to(self.root).as_posix()
                found.append(
                    FileInfo(
                        path=rel,
                        uri=full.as_uri(),
                        size=st.st_size,
                        updated=datetime.fromtimestamp(st.st_mtime, UTC),
                    )
                )
        return found

    def uri(self, path: str) -> str:
        return self.local_path(path).as_uri()

    def available(self) -> bool:
        target = self.root
        while not target.exists():  # the root is created on first write
            if target.parent == target:
                return False
            target = target.parent
        return target.is_dir() and os.access(target, os.W_OK | os.X_OK)


def _make_dirs(folder: Path) -> None:
    """Create ``folder`` (and its missing parents), fsyncing each parent that gained an entry."""
    if folder.is_dir():
        return
    missing: list[Path] = []
    current = folder
    while not current.is_dir():
        missing.append(current)
        if current.parent == current:
            break
        current = current.parent
    for new in reversed(missing):
        try:
            new.mkdir()
        except FileExistsError:
            pass  # made meanwhile by a concurrent write
        _fsync_dir(new.parent)


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class _UnderRoot:
    """What both local stores add: the root directory and the path of a stored file."""

    backend: LocalFiles

    @property
    def root(self) -> Path:
        return self.backend.root

    def local_path(self, path: str) -> Path:
        """The file system path of a stored file (for readers that open files themselves)."""
        return self.backend.local_path(path)


class LocalEventStore(_UnderRoot, FileEventStore):
    """An :class:`~eventkit_core.EventStore` writing Parquet files under ``root``.

    ``root/events/<stream>/YYYY/MM/DD/HH/<name>.parquet``; the folders are made as needed.
    """

    backend: LocalFiles

    def __init__(
        self,
        root: str | Path,
        *,
        meter_provider: MeterProvider | None = None,
        payload: PayloadMode = "extras",
    ) -> None:
        super().__init__(LocalFiles(root), meter_provider=meter_provider, payload=payload)


class LocalErrorStore(_UnderRoot, FileErrorStore):
    """An :class:`~eventkit_core.ErrorStore` writing dead letters as Parquet under ``root``.

    ``root/dead-letters/<stream>/YYYY/MM/DD/HH/<name>.parquet``.
    """

    backend: LocalFiles

    def __init__(self, root: str | Path, *, meter_provider: MeterProvider | None = None) -> None:
        super().__init__(LocalFiles(root), meter_provider=meter_provider)
