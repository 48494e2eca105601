"""``eventkit-loader retention``: delete files and warehouse rows older than each stream's limit.

The policy (:class:`~eventkit_storage.retention.RetentionPolicy`) gives each stream a number of
days; data ``received_at`` before ``now - days`` is past retention. Files hold one stream's hour,
so the unit is the hour: the cutoff is rounded down to its hour, files of the hours before it
are deleted, and warehouse rows received before it too. Data is kept at least N days and at
most N days and one hour.

Order, so that a crash never leaves the warehouse holding what the files no longer do:

1. unfinished rewrites of an earlier run are finished or undone
   (:func:`~eventkit_storage.rewrite.recover`);
2. the warehouse deletes the rows (events and dead letters) before each stream's cutoff;
3. the expired files are deleted through a :class:`~eventkit_storage.rewrite.Replacement`
   with no outputs (a manifest first, so a load pass meanwhile leaves them out).

A rerun redoes whatever a killed run left: every step is idempotent. The identity tables and
profiles are derived data and are not pruned (``forget`` removes a person from them).
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Final

from eventkit_core import utcnow
from eventkit_storage.duckdb import DuckDBWarehouseLoader
from eventkit_storage.paths import hour_of, parse_hour
from eventkit_storage.retention import RetentionPolicy
from eventkit_storage.rewrite import Replacement, ReplaceReport, recover, replace

from eventkit_loader.compact import KINDS, RewritableStore
from eventkit_loader.forget import purge_duckdb
from eventkit_loader.service import ListedFile, LoaderService

log = logging.getLogger("eventkit_loader")

#: Files deleted under one manifest.
FILES_PER_REPLACEMENT: Final = 1000


@dataclass
class RetentionReport:
    """What a retention run did (or, with ``dry_run``, would do)."""

    dry_run: bool
    #: stream -> the cutoff applied (ISO 8601).
    cutoffs: dict[str, str] = field(default_factory=dict)
    files: list[str] = field(default_factory=list)
    #: table -> rows deleted (a dry run deletes none: 0).
    rows: dict[str, int] = field(default_factory=dict)
    recovered: list[ReplaceReport] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "dry_run": self.dry_run,
            "cutoffs": self.cutoffs,
            "files_deleted": len(self.files),
            "rows_deleted": self.rows,
            "files": self.files,
            "recovered": [r.__dict__ for r in self.recovered],
        }


def stream_of(path: str) -> str:
    """``events/<stream>/YYYY/...`` -> ``<stream>``."""
    return path.split("/")[1]


def cutoffs(policy: RetentionPolicy, streams: set[str], now: datetime) -> dict[str, datetime]:
    """Each stream's cutoff, rounded down to its hour (streams kept forever: absent)."""
    out: dict[str, datetime] = {}
    for stream in sorted(streams | set(policy.streams)):
        cutoff = policy.cutoff(stream, now)
        if cutoff is not None:
            out[stream] = hour_of(cutoff)
    return out


def expired(files: list[ListedFile], limits: dict[str, datetime]) -> list[str]:
    """Paths of the files whose whole hour is before their stream's cutoff."""
    out: list[str] = []
    for f in files:
        hour = parse_hour(f.path)
        limit = limits.get(stream_of(f.path))
        if hour is not None and limit is not None and hour + timedelta(hours=1) <= limit:
            out.append(f.path)
    return sorted(out)


async def apply_retention(
    service: LoaderService,
    store: RewritableStore,
    policy: RetentionPolicy,
    *,
    dry_run: bool = False,
    now: datetime | None = None,
) -> RetentionReport:
    """Delete what is past ``policy`` (see the module's docstring)."""
    report = RetentionReport(dry_run=dry_run)
    if not policy.enabled:
        return report
    warehouse: Any = service.warehouse
    if not dry_run:
        report.recovered = await recover(store.backend, warehouse.mark_loaded)
    listed = [f for kind in KINDS for f in await service.list_kind(kind)]
    limits = cutoffs(policy, {stream_of(f.path) for f in listed}, now or utcnow())
    report.cutoffs = {s: c.isoformat() for s, c in limits.items()}
    report.files = expired(listed, limits)
    if dry_run:
        return report
    report.rows = await warehouse.delete_received_before(limits)
    if isinstance(warehouse, DuckDBWarehouseLoader) and any(report.rows.values()):
        # DELETE leaves the old values in free blocks of the file: rewrite it (as forget does)
        await asyncio.to_thread(purge_duckdb, warehouse.database)
    for start in range(0, len(report.files), FILES_PER_REPLACEMENT):
        chunk = tuple(report.files[start : start + FILES_PER_REPLACEMENT])
        await replace(store.backend, Replacement(reason="retention", inputs=chunk), None)
    log.info("retention: %d files and %s rows deleted", len(report.files), report.rows)
    return report
