"""Event and error stores in a Google Cloud Storage bucket (extra ``eventkit-storage[gcs]``).

Objects are created with ``if_generation_match=0``: the upload succeeds only if no object of that
name exists, so a re-flush of the same entries after a crash is answered 412 and reported
``created=False`` (the object is left as it was). Such a create-only upload is idempotent, so
the client's retry of transient errors stays on for it; nothing else is retried here (the
:class:`~eventkit_storage.loader.EventLoader` retries failed batches). The blocking client runs
in worker threads (``asyncio.to_thread``): the groups of one batch upload in parallel.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from eventkit_core import ConfigurationError, StoredFileNotFoundError
from google.api_core.exceptions import NotFound, PreconditionFailed
from google.cloud.storage.retry import DEFAULT_RETRY
from opentelemetry.metrics import MeterProvider

from eventkit_storage.extras import PayloadMode
from eventkit_storage.filestore import FileErrorStore, FileEventStore, FileInfo

if TYPE_CHECKING:
    import google.cloud.storage as storage

PARQUET_CONTENT_TYPE = "application/vnd.apache.parquet"
#: Seconds for one HTTP request to the storage API.
DEFAULT_TIMEOUT = 60.0


class GCSFiles:
    """A :class:`~eventkit_storage.filestore.FileBackend` in a bucket, under ``prefix``."""

    storage_type = "gcs"

    def __init__(
        self,
        bucket: str,
        *,
        prefix: str = "",
        client: storage.Client | None = None,
        project: str | None = None,
        timeout: float = DEFAULT_TIMEOUT,
    ) -> None:
        if not bucket or "/" in bucket:
            raise ConfigurationError(
                f"bucket {bucket!r} is invalid: give the bucket name only, no gs://"
            )
        self.bucket_name = bucket
        self.prefix = prefix.strip("/")
        self.timeout = timeout
        self._client = client
        self._project = project

    @property
    def client(self) -> storage.Client:
        """The storage client (made on first use from the environment's credentials if none
        was given)."""
        if self._client is None:
            import google.cloud.storage as storage

            self._client = storage.Client(project=self._project)
        return self._client

    def key(self, path: str) -> str:
        """The object name of a store-relative path."""
        return f"{self.prefix}/{path}" if self.prefix else path

    async def create(self, path: str, data: bytes) -> tuple[bool, int]:
        return await asyncio.to_thread(self._create, self.key(path), data)

    def _create(self, key: str, data: bytes) -> tuple[bool, int]:
        blob = self.client.bucket(self.bucket_name).blob(key)
        try:
            blob.upload_from_string(
                data,
                content_type=PARQUET_CONTENT_TYPE,
                if_generation_match=0,
                timeout=self.timeout,
                retry=DEFAULT_RETRY,
            )
        except PreconditionFailed:
            blob.reload(timeout=self.timeout, retry=DEFAULT_RETRY)
            return False, int(blob.size or 0)
        return True, len(data)

    async def read(self, path: str) -> bytes:
        return await asyncio.to_thread(self._read, self.key(path))

    def _read(self, key: str) -> bytes:
        blob = self.client.bucket(self.bucket_name).blob(key)
        try:
            data: bytes = blob.download_as_bytes(timeout=self.timeout, retry=DEFAULT_RETRY)
        except NotFound:
            raise StoredFileNotFoundError(f"no stored file gs://{self.bucket_name}/{key}") from None
        return data

    async def delete(self, path: str) -> bool:
        return await asyncio.to_thread(self._delete, self.key(path))

    def _delete(self, key: str) -> bool:
        blob = self.client.bucket(self.bucket_name).blob(key)
        try:
            blob.delete(timeout=self.timeout, retry=DEFAULT_RETRY)
        except NotFound:
            return False
        return True

    async def scan(self, prefix: str) -> list[FileInfo]:
        return await asyncio.to_thread(self._list, prefix)

    def _list(self, prefix: str) -> list[FileInfo]:
        skip = len(self.prefix) + 1 if self.prefix else 0
        blobs = self.client.list_blobs(
            self.bucket_name, prefix=self.key(prefix), timeout=self.timeout, retry=DEFAULT_RETRY
        )
        return [
            FileInfo(
                path=blob.name[skip:],
                uri=f"gs://{self.bucket_name}/{blob.name}",
                size=int(blob.size or 0),
                updated=blob.updated,
            )
            for blob in blobs
        ]

    def uri(self, path: str) -> str:
        return f"gs://{self.bucket_name}/{self.key(path)}"

    def available(self) -> bool:
        return True  # no blocking call here: health follows the outcome of the last write


class GCSEventStore(FileEventStore):
    """An :class:`~eventkit_core.EventStore` writing Parquet objects to ``gs://bucket/prefix``."""

    backend: GCSFiles

    def __init__(
        self,
        bucket: str,
        *,
        prefix: str = "",
        client: storage.Client | None = None,
        project: str | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        meter_provider: MeterProvider | None = None,
        payload: PayloadMode = "extras",
    ) -> None:
        super().__init__(
            GCSFiles(bucket, prefix=prefix, client=client, project=project, timeout=timeout),
            meter_provider=meter_provider,
            payload=payload,
        )


class GCSErrorStore(FileErrorStore):
    """An :class:`~eventkit_core.ErrorStore` writing dead letters to ``gs://bucket/prefix``."""

    backend: GCSFiles

    def __init__(
        self,
        bucket: str,
        *,
        prefix: str = "",
        client: storage.Client | None = None,
        project: str | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        meter_provider: MeterProvider | None = None,
    ) -> None:
        super().__init__(
            GCSFiles(bucket, prefix=prefix, client=client, project=project, timeout=timeout),
            meter_provider=meter_provider,
        )
