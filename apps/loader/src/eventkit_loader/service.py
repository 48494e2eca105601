"""The loading pass, the backlog (``status``) and the long-running loop.

A pass: list the stored event files, subtract the warehouse's ledger of loaded files, and load the
rest oldest first in batches of ``batch_files``. Stores write files create-only (atomically), so
every listed file is complete. Each batch is one ``load_files`` call, which records the load and
its ledger entries together; a stop request (SIGTERM) is honoured between batches, never inside
one, so a stopped loader leaves no half-recorded load — and one killed with SIGKILL leaves at
worst a batch that was not recorded, which the next pass loads again.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol, TypeVar, runtime_checkable
from urllib.parse import unquote, urlparse

from eventkit_core import ConfigurationError, LoadReport
from eventkit_storage.rewrite import pending_paths

from eventkit_loader.state import LoaderState
from eventkit_loader.telemetry import LoaderMetrics

log = logging.getLogger("eventkit_loader")

T = TypeVar("T")


async def resolve(value: Awaitable[T] | T) -> T:
    """``await`` a value when the backend returned an awaitable (sync and async APIs alike)."""
    if inspect.isawaitable(value):
        return await value
    return value


class ListedFile(Protocol):
    """One stored file as a store lists it."""

    @property
    def path(self) -> str: ...

    @property
    def uri(self) -> str: ...

    @property
    def size(self) -> int: ...

    @property
    def updated(self) -> datetime | None: ...


class FileLister(Protocol):
    """The part of an event store the loader needs."""

    def list_files(self, kind: Any = ..., since: datetime | None = ...) -> Any: ...


class Warehouse(Protocol):
    """The part of a warehouse loader the loader app needs (DuckDB and BigQuery alike)."""

    def ensure_schema(self) -> Any: ...

    def load_files(self, uris: Sequence[str]) -> Any: ...

    def loaded_files(self) -> Any: ...

    def health_check(self) -> bool: ...


@runtime_checkable
class IdentityResolver(Protocol):
    """A warehouse that also runs the identity pass (eventkit_storage's DuckDB and BigQuery)."""

    def resolve_identities(self) -> Any: ...


def _timestamp(moment: datetime | None) -> float | None:
    if moment is None:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


@dataclass(frozen=True)
class Backlog:
    """Stored files against the warehouse ledger."""

    listed: int
    loaded: int
    #: Files not yet loaded, oldest first.
    pending: tuple[ListedFile, ...]
    #: Pending files whose last load failed: uri -> failed attempts.
    failed: dict[str, int]

    @property
    def oldest_unloaded(self) -> float | None:
        """POSIX time of the oldest pending file (by its ``updated`` time)."""
        times = [t for t in (_timestamp(f.updated) for f in self.pending) if t is not None]
        return min(times) if times else None

    def lag_seconds(self, now: float | None = None) -> float:
        """Age of the oldest unloaded file (0 when nothing waits)."""
        oldest = self.oldest_unloaded
        if oldest is None:
            return 0.0
        return max(0.0, (time.time() if now is None else now) - oldest)

    def as_dict(self, now: float | None = None) -> dict[str, Any]:
        oldest = self.oldest_unloaded
        return {
            "listed": self.listed,
            "loaded": self.loaded,
            "pending": len(self.pending),
            "failed": len(self.failed),
            "pending_bytes": sum(f.size for f in self.pending),
            "oldest_unloaded": (
                None if oldest is None else datetime.fromtimestamp(oldest, UTC).isoformat()
            ),
            "lag_seconds": round(self.lag_seconds(now), 3),
            "failed_files": dict(sorted(self.failed.items())),
        }


def ledger_key(uri: str) -> str:
    """``uri`` as a ledger keeps it: ``file://`` URIs absolute with symlinks resolved."""
    if not uri.startswith("file://"):
        return uri
    parsed = urlparse(uri)
    return Path(unquote(parsed.path)).resolve().as_uri()


def compute_backlog(
    files: Sequence[ListedFile], loaded: set[str], failed: dict[str, int]
) -> Backlog:
    """The backlog of ``files`` given the warehouse ledger ``loaded`` (uris or paths)."""
    pending = [
        f
        for f in files
        if f.uri not in loaded and f.path not in loaded and ledger_key(f.uri) not in loaded
    ]
    pending.sort(key=lambda f: (_timestamp(f.updated) or 0.0, f.path))
    pending_uris = {f.uri for f in pending}
    return Backlog(
        listed=len(files),
        loaded=len(files) - len(pending),
        pending=tuple(pending),
        failed={u: n for u, n in failed.items() if u in pending_uris},
    )


@dataclass
class PassResult:
    """What one pass did."""

    listed: int = 0
    pending: int = 0
    loaded: int = 0
    skipped: int = 0
    failed: list[str] = field(default_factory=list)
    rows: int = 0
    batches: int = 0
    #: The pass stopped before its end (stop requested, or a batch raised).
    interrupted: bool = False
    error: str | None = None
    #: What the identity pass after the loads did (None when it did not run).
    identities: dict[str, int] | None = None
    #: Dead-letter files (and their rows) loaded into ``dead_letters`` by this pass.
    dead_letter_files: int = 0
    dead_letter_rows: int = 0

    @property
    def ok(self) -> bool:
        return not self.failed and self.error is None

    def as_dict(self) -> dict[str, Any]:
        return {
            "listed": self.listed,
            "pending": self.pending,
            "loaded": self.loaded,
            "skipped": self.skipped,
            "failed": len(self.failed),
            "rows": self.rows,
            "batches": self.batches,
            "interrupted": self.interrupted,
            "error": self.error,
            "identities": self.identities,
            "dead_letter_files": self.dead_letter_files,
            "dead_letter_rows": self.dead_letter_rows,
        }


BatchCallback = Callable[[LoadReport, int], None]


class LoaderService:
    """Loads stored event files into a warehouse, each file once."""

    def __init__(
        self,
        store: FileLister,
        warehouse: Warehouse,
        *,
        batch_files: int = 500,
        state: LoaderState | None = None,
        metrics: LoaderMetrics | None = None,
        warehouse_label: str = "duckdb",
    ) -> None:
        if batch_files < 1:
            raise ConfigurationError("batch_files must be at least 1")
        self.store = store
        self.warehouse = warehouse
        self.batch_files = batch_files
        self.state = state
        self.metrics = metrics
        self._labels = {"warehouse": warehouse_label}
        self.last_pass: PassResult | None = None
        self.last_pass_at: float | None = None
        self._schema_ready = False

    async def list_files(self, since: datetime | None = None) -> list[ListedFile]:
        return await self.list_kind("events", since)

    async def list_kind(self, kind: str, since: datetime | None = None) -> list[ListedFile]:
        """Stored files of ``kind`` (``events``, ``dead-letters``) a pass may load."""
        listed = await resolve(self.store.list_files(kind, since))
        return await self._without_rewrites(list(listed))

    async def _without_rewrites(self, files: list[ListedFile]) -> list[ListedFile]:
        """``files`` less those an unfinished lifecycle rewrite names (eventkit_storage.rewrite):
        its outputs are not to be loaded before it records them, its inputs are going away."""
        backend = getattr(self.store, "backend", None)  # file stores have one; test fakes may not
        if backend is None or not files:
            return files
        pending = await pending_paths(backend)
        return [f for f in files if f.path not in pending] if pending else files

    async def dead_letter_backlog(self) -> Backlog | None:
        """Dead-letter files against the same ledger; None when the warehouse cannot load them."""
        if not hasattr(self.warehouse, "load_dead_letter_files"):
            return None
        files = await self.list_kind("dead-letters")
        loaded = await self.loaded_files() if files else set()
        failed = self.state.failed_files() if self.state is not None else {}
        return compute_backlog(files, loaded, failed)

    async def _load_dead_letters(self, result: PassResult) -> None:
        """After the events: dead-letter files into ``dead_letters``, each once (same ledger)."""
        backlog = await self.dead_letter_backlog()
        if backlog is None or not backlog.pending:
            return
        uris = [f.uri for f in backlog.pending]
        for start in range(0, len(uris), self.batch_files):
            chunk = uris[start : start + self.batch_files]
            report: LoadReport = await resolve(self.warehouse.load_dead_letter_files(chunk))  # type: ignore[attr-defined]
            if self.state is not None:
                self.state.record_load([*report.loaded, *report.skipped], report.failed)
            result.dead_letter_files += len(report.loaded)
            result.dead_letter_rows += report.rows
            result.failed += list(report.failed)
            for uri in report.failed:
                log.warning("could not load dead letters %s (retried by the next pass)", uri)
        log.info(
            "dead letters: %d files loaded (%d rows)",
            result.dead_letter_files,
            result.dead_letter_rows,
        )

    async def loaded_files(self) -> set[str]:
        return set(await resolve(self.warehouse.loaded_files()))

    async def backlog(self, since: datetime | None = None) -> Backlog:
        files = await self.list_files(since)
        loaded = await self.loaded_files() if files else set()
        failed = self.state.failed_files() if self.state is not None else {}
        return compute_backlog(files, loaded, failed)

    async def ensure_schema(self) -> None:
        await resolve(self.warehouse.ensure_schema())
        self._schema_ready = True

    async def run_pass(
        self,
        *,
        since: datetime | None = None,
        should_stop: Callable[[], bool] = lambda: False,
        on_backlog: Callable[[Backlog], None] | None = None,
        on_batch: BatchCallback | None = None,
    ) -> PassResult:
        """One pass over the backlog. Never raises for a failing backend: see ``.error``."""
        result = PassResult()
        try:
            if not self._schema_ready:
                await self.ensure_schema()
            backlog = await self.backlog(since)
            result.listed, result.pending = backlog.listed, len(backlog.pending)
            self._record_backlog(backlog.pending)
            if on_backlog is not None:
                on_backlog(backlog)
            remaining = list(backlog.pending)
            while remaining:
                if should_stop():
                    result.interrupted = True
                    log.info("stop requested: %d files left for the next pass", len(remaining))
                    break
                batch, remaining = remaining[: self.batch_files], remaining[self.batch_files :]
                report = await self._load_batch(batch)
                result.batches += 1
                log.info(
                    "batch %d: %d files loaded (%d rows), %d skipped, %d failed, %d left",
                    result.batches,
                    len(report.loaded),
                    report.rows,
                    len(report.skipped),
                    len(report.failed),
                    len(remaining),
                )
                result.loaded += len(report.loaded)
                result.skipped += len(report.skipped)
                result.failed += list(report.failed)
                result.rows += report.rows
                failed_now = set(report.failed)
                self._record_backlog(list(remaining) + [f for f in batch if f.uri in failed_now])
                if on_batch is not None:
                    on_batch(report, len(batch))
            if not result.interrupted and since is None:
                await self._load_dead_letters(result)
            if not result.interrupted and isinstance(self.warehouse, IdentityResolver):
                # After the loads, so that a pass's events resolve in the same pass; it also
                # catches up with events a killed pass loaded but did not resolve.
                stats = await resolve(self.warehouse.resolve_identities())
                result.identities = stats.as_dict()
                log.info("identity pass: %s", result.identities)
        except Exception as exc:  # the loop goes on; `once` reports it and exits non-zero
            result.interrupted = True
            result.error = f"{type(exc).__name__}: {exc}"
            log.exception("load pass failed")
            if self.metrics is not None:
                self.metrics.errors.add(1, {**self._labels, "stage": "pass"})
        self.last_pass, self.last_pass_at = result, time.time()
        log.info(
            "pass: %d listed, %d pending, %d loaded (%d rows), %d skipped, %d failed%s",
            result.listed,
            result.pending,
            result.loaded,
            result.rows,
            result.skipped,
            len(result.failed),
            " (interrupted)" if result.interrupted else "",
        )
        return result

    async def _load_batch(self, batch: Sequence[ListedFile]) -> LoadReport:
        uris = [f.uri for f in batch]
        report: LoadReport = await resolve(self.warehouse.load_files(uris))
        if self.state is not None:
            self.state.record_load([*report.loaded, *report.skipped], report.failed)
        # Files loaded and failed are counted by the warehouse loader itself (eventkit-storage).
        if self.metrics is not None and report.rows:
            self.metrics.rows_loaded.add(report.rows, self._labels)
        for uri in report.failed:
            log.warning("could not load %s (it is retried by the next pass)", uri)
        return report

    def _record_backlog(self, pending: Sequence[ListedFile]) -> None:
        if self.metrics is None:
            return
        times = [t for t in (_timestamp(f.updated) for f in pending) if t is not None]
        self.metrics.set_backlog(len(pending), min(times) if times else None)

    def health(self) -> tuple[bool, dict[str, Any]]:
        """For ``/health``: unhealthy when the last pass raised."""
        last = self.last_pass
        detail: dict[str, Any] = {
            "last_pass_at": (
                None
                if self.last_pass_at is None
                else datetime.fromtimestamp(self.last_pass_at, UTC).isoformat()
            ),
            "last_pass": None if last is None else last.as_dict(),
        }
        return (last is None or last.error is None), detail

    async def run(
        self,
        interval: float,
        stop: asyncio.Event,
        between: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        """Pass after pass, ``interval`` seconds apart (start to start), until ``stop`` is set.

        ``between`` runs after each pass (retention): never during one, so a pass never lists a
        file that is deleted before it loads it. Its failures are logged; the loop goes on."""
        while not stop.is_set():
            started = time.monotonic()
            await self.run_pass(should_stop=stop.is_set)
            if between is not None and not stop.is_set():
                try:
                    await between()
                except Exception:
                    log.exception("between passes: failed (tried again after the next pass)")
            delay = max(0.0, interval - (time.monotonic() - started))
            try:
                await asyncio.wait_for(stop.wait(), timeout=delay)
            except TimeoutError:
                pass
        log.info("loader stopped")
