"""``eventkit-loader compact``: merge the many small files of an hour into few large ones.

The collector writes one file per stream per flush (every ``EVENTKIT_FLUSH_MAX_AGE`` seconds
under light traffic), so an hour can hold hundreds of small files: slow to list, to load and to
query. Compaction merges, per folder (one stream's hour, events and dead letters apart):

- only hours that are over (the collector may still write into the current one);
- only files the warehouse has loaded (an unloaded file is left for the loader; its turn comes
  at the next compaction), and only files with the same columns (older files without
  ``extras`` are merged among themselves, never mixed with newer ones);
- into outputs of at most ``max_bytes`` of input each.

Each merge is one :class:`~eventkit_storage.rewrite.Replacement` with ``loaded=True``: the
output is written, recorded as loaded (its rows are in the warehouse already: no row is loaded
twice), then the inputs are deleted (no row lost). A killed run is finished or undone by the
next one (:func:`~eventkit_storage.rewrite.recover`).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final, Protocol

import pyarrow as pa
from eventkit_core import utcnow
from eventkit_storage.filestore import FileBackend
from eventkit_storage.paths import hour_of, parse_hour
from eventkit_storage.rewrite import (
    Replacement,
    ReplaceReport,
    output_name,
    read_table,
    recover,
    replace,
    sibling_path,
    table_output,
)

from eventkit_loader.service import ListedFile, LoaderService, ledger_key

log = logging.getLogger("eventkit_loader")

#: Input bytes merged into one output (Parquet compresses the merge further).
DEFAULT_MAX_BYTES: Final = 64 * 1024 * 1024
KINDS: Final = ("events", "dead-letters")


class RewritableStore(Protocol):
    """A file store whose files can be replaced: what the local and GCS stores are."""

    backend: FileBackend

    async def read_bytes(self, path: str) -> bytes: ...


@dataclass
class CompactReport:
    """What a compaction did (or, with ``dry_run``, would do)."""

    dry_run: bool
    recovered: list[ReplaceReport] = field(default_factory=list)
    #: One entry per merge: inputs, the output's path and rows.
    merges: list[dict[str, Any]] = field(default_factory=list)

    @property
    def files_before(self) -> int:
        return sum(len(m["inputs"]) for m in self.merges)

    def as_dict(self) -> dict[str, Any]:
        return {
            "dry_run": self.dry_run,
            "merges": len(self.merges),
            "files_merged": self.files_before,
            "files_written": len(self.merges),
            "rows": sum(m["rows"] for m in self.merges),
            "recovered": [r.__dict__ for r in self.recovered],
            "details": self.merges,
        }


def groups(
    files: Sequence[ListedFile], loaded: set[str], now: datetime, max_bytes: int
) -> list[list[ListedFile]]:
    """Files to merge together: same folder, hour over, loaded; cut at ``max_bytes``."""
    current = hour_of(now)
    by_folder: dict[str, list[ListedFile]] = {}
    for f in files:
        hour = parse_hour(f.path)
        if hour is None or hour >= current or not _is_loaded(f, loaded):
            continue
        by_folder.setdefault(f.path.rpartition("/")[0], []).append(f)
    out: list[list[ListedFile]] = []
    for folder in sorted(by_folder):
        out.extend(_cut(sorted(by_folder[folder], key=lambda f: f.path), max_bytes))
    return [g for g in out if len(g) > 1]


def _is_loaded(f: ListedFile, loaded: set[str]) -> bool:
    return f.uri in loaded or f.path in loaded or ledger_key(f.uri) in loaded


def _cut(files: list[ListedFile], max_bytes: int) -> list[list[ListedFile]]:
    chunks: list[list[ListedFile]] = [[]]
    size = 0
    for f in files:
        if chunks[-1] and size + f.size > max_bytes:
            chunks.append([])
            size = 0
        chunks[-1].append(f)
        size += f.size
    return chunks


async def _merges(store: RewritableStore, group: list[ListedFile]) -> list[Replacement]:
    """The replacements of one group: one per distinct set of columns."""
    by_schema: dict[tuple[str, ...], list[tuple[str, pa.Table]]] = {}
    for f in group:
        table = read_table(await store.read_bytes(f.path))
        by_schema.setdefault(tuple(table.schema.names), []).append((f.path, table))
    out: list[Replacement] = []
    for members in by_schema.values():
        if len(members) < 2:
            continue
        paths = [p for p, _ in members]
        merged = pa.concat_tables([t for _, t in members])
        output = table_output(sibling_path(paths[0], output_name("compact", paths)), merged)
        if output is not None:
            out.append(Replacement(reason="compact", inputs=tuple(paths), outputs=(output,)))
    return out


async def compact(
    service: LoaderService,
    store: RewritableStore,
    *,
    dry_run: bool = False,
    max_bytes: int = DEFAULT_MAX_BYTES,
    now: datetime | None = None,
) -> CompactReport:
    """Merge the loaded files of every finished hour (see the module's docstring)."""
    report = CompactReport(dry_run=dry_run)
    backend = store.backend
    mark = service.warehouse.mark_loaded  # type: ignore[attr-defined]
    if not dry_run:
        report.recovered = await recover(backend, mark)
    loaded = await service.loaded_files()
    for kind in KINDS:
        listed = await service.list_kind(kind)
        for group in groups(listed, loaded, now or utcnow(), max_bytes):
            for replacement in await _merges(store, group):
                (output,) = replacement.outputs
                report.merges.append(
                    {"inputs": list(replacement.inputs), "output": output.path, "rows": output.rows}
                )
                if not dry_run:
                    await replace(backend, replacement, mark)
                    log.info(
                        "compacted %d files into %s (%d rows)",
                        len(replacement.inputs),
                        output.path,
                        output.rows,
                    )
    return report
