"""Replace stored files crash-safely: write the new files first, then delete the old ones.

The collector only ever creates files, so the lifecycle commands (forget a person, retention,
compaction) never change a file in place either. A :class:`Replacement` names input files (to
remove) and output files (new bytes under new names). :func:`replace` carries it out in steps
that each survive a crash:

1. the manifest ``rewrites/<id>.json`` is created: the inputs, the outputs' paths and row
   counts, and whether the warehouse holds the inputs' rows already (``loaded``);
2. the outputs are created;
3. when ``loaded``, the outputs are recorded as loaded in the warehouse's ledger (their rows
   are in the warehouse: loading them would count them twice);
4. the inputs are deleted;
5. the manifest is deleted.

Guarantees:

- **A loader never loads a replacement's files halfway.** A load pass leaves out every file a
  manifest names (:func:`pending_paths`): no output before step 3, no input about to go.
- **A killed run is finished or undone by** :func:`recover`. When every output exists it rolls
  forward from step 3. Otherwise it was killed in step 2, while every input still existed: it
  removes the outputs made so far and the manifest. Nothing was changed, and the command that
  planned the replacement runs again from the start.
- **Idempotent steps.** Creating an existing output, recording a recorded file and deleting a
  missing file are no-ops, so any step may run twice.

A replacement with no outputs deletes its inputs (retention; a file holding only a forgotten
person's rows). Callers remove warehouse rows *before* :func:`replace`, so that a crash leaves
files holding rows the warehouse no longer has (the next run removes them), never the reverse.
"""

from __future__ import annotations

import hashlib
import io
import logging
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Final

import msgspec
import pyarrow as pa
import pyarrow.parquet as pq
from eventkit_core import ConfigurationError, utcnow

from eventkit_storage.filestore import FileBackend, FileInfo
from eventkit_storage.parquet import table_to_parquet_bytes
from eventkit_storage.paths import SUFFIX

log = logging.getLogger(__name__)

#: Where manifests live, beside ``events/`` and ``dead-letters/`` in the store's root.
MANIFESTS: Final = "rewrites/"

#: Records files as loaded (URI -> row count): a warehouse loader's ``mark_loaded``.
MarkLoaded = Callable[[Mapping[str, int]], Awaitable[None]]


@dataclass(frozen=True)
class Output:
    """A file a replacement creates: ``path`` (store-relative), Parquet bytes, row count."""

    path: str
    data: bytes
    rows: int


@dataclass(frozen=True)
class Replacement:
    """Input files replaced by output files. ``reason`` names the command (``forget``, ...)."""

    reason: str
    inputs: tuple[str, ...]
    outputs: tuple[Output, ...] = ()
    #: The warehouse holds the inputs' rows (every input was loaded): outputs are marked loaded.
    loaded: bool = True
    id: str = field(default_factory=lambda: uuid.uuid4().hex)


class _OutputEntry(msgspec.Struct, frozen=True):
    path: str
    rows: int


class Manifest(msgspec.Struct, frozen=True, kw_only=True):
    """What ``rewrites/<id>.json`` holds: enough to finish or undo a replacement."""

    id: str
    reason: str
    created_at: datetime
    inputs: list[str]
    outputs: list[_OutputEntry]
    loaded: bool

    @property
    def path(self) -> str:
        return manifest_path(self.id)


@dataclass(frozen=True)
class ReplaceReport:
    """What :func:`replace` or :func:`recover` did for one replacement."""

    id: str
    reason: str
    #: ``done`` (inputs replaced) or ``undone`` (recover removed a half-made replacement).
    outcome: str
    inputs_deleted: int
    outputs_created: int


def manifest_path(replacement_id: str) -> str:
    if not replacement_id.isalnum():
        raise ConfigurationError(f"replacement id {replacement_id!r} must be letters and digits")
    return f"{MANIFESTS}{replacement_id}.json"


def output_name(reason: str, inputs: Sequence[str]) -> str:
    """A file name (no folder, no suffix) for the output made of ``inputs`` by ``reason``.

    Determined by its inputs: planning the same replacement twice names the same file.
    """
    digest = hashlib.blake2b(digest_size=8)
    for path in sorted(inputs):
        digest.update(path.encode())
        digest.update(b"\x00")
    return f"{reason}-{digest.hexdigest()}"


def sibling_path(path: str, name: str) -> str:
    """``name`` (a file name without suffix) in the folder of ``path``."""
    folder, _, _ = path.rpartition("/")
    return f"{folder}/{name}{SUFFIX}" if folder else f"{name}{SUFFIX}"


def read_table(data: bytes) -> pa.Table:
    """A stored Parquet file's rows (all columns, as written)."""
    return pq.read_table(io.BytesIO(data))


def table_output(path: str, table: pa.Table) -> Output | None:
    """``table`` as an :class:`Output` at ``path``; None when it has no rows (nothing to keep)."""
    if table.num_rows == 0:
        return None
    return Output(path=path, data=table_to_parquet_bytes(table), rows=table.num_rows)


async def replace(
    backend: FileBackend, replacement: Replacement, mark_loaded: MarkLoaded | None
) -> ReplaceReport:
    """Carry out ``replacement`` (steps 1-5 of the module's docstring)."""
    manifest = await begin(backend, replacement, mark_loaded)
    created = 0
    for output in replacement.outputs:
        made, _ = await backend.create(output.path, output.data)
        created += made
    return await _finish(backend, manifest, mark_loaded, created)


async def begin(
    backend: FileBackend, replacement: Replacement, mark_loaded: MarkLoaded | None
) -> Manifest:
    """Step 1 alone: check ``replacement`` and create its manifest."""
    clash = set(replacement.inputs) & {o.path for o in replacement.outputs}
    if clash:
        raise ConfigurationError(f"a replacement's output cannot be one of its inputs: {clash}")
    if replacement.loaded and replacement.outputs and mark_loaded is None:
        raise ConfigurationError("replacing loaded files needs the warehouse's mark_loaded")
    manifest = Manifest(
        id=replacement.id,
        reason=replacement.reason,
        created_at=utcnow(),
        inputs=list(replacement.inputs),
        outputs=[_OutputEntry(o.path, o.rows) for o in replacement.outputs],
        loaded=replacement.loaded,
    )
    await backend.create(manifest.path, msgspec.json.encode(manifest))
    return manifest


async def _finish(
    backend: FileBackend, manifest: Manifest, mark_loaded: MarkLoaded | None, created: int
) -> ReplaceReport:
    """Steps 3-5: every output exists."""
    if manifest.loaded and manifest.outputs:
        if mark_loaded is None:
            raise ConfigurationError("finishing a replacement needs the warehouse's mark_loaded")
        await mark_loaded({backend.uri(o.path): o.rows for o in manifest.outputs})
    deleted = 0
    for path in manifest.inputs:
        deleted += await backend.delete(path)
    await backend.delete(manifest.path)
    return ReplaceReport(
        id=manifest.id,
        reason=manifest.reason,
        outcome="done",
        inputs_deleted=deleted,
        outputs_created=created,
    )


async def manifests(backend: FileBackend) -> list[Manifest]:
    """The replacements not finished yet, oldest first."""
    found: list[Manifest] = []
    for info in await backend.scan(MANIFESTS):
        if not info.path.endswith(".json"):
            continue
        found.append(msgspec.json.decode(await backend.read(info.path), type=Manifest))
    return sorted(found, key=lambda m: (m.created_at, m.id))


async def pending_paths(backend: FileBackend) -> set[str]:
    """Every file named by an unfinished replacement: a load pass leaves these out."""
    paths: set[str] = set()
    for manifest in await manifests(backend):
        paths.update(manifest.inputs)
        paths.update(o.path for o in manifest.outputs)
    return paths


async def recover(backend: FileBackend, mark_loaded: MarkLoaded | None) -> list[ReplaceReport]:
    """Finish (every output exists) or undo (some output missing) each unfinished replacement."""
    reports: list[ReplaceReport] = []
    for manifest in await manifests(backend):
        existing = {info.path for info in await _scan_folders(backend, manifest)}
        if all(o.path in existing for o in manifest.outputs):
            log.info("finishing replacement %s (%s)", manifest.id, manifest.reason)
            reports.append(await _finish(backend, manifest, mark_loaded, 0))
            continue
        log.info("undoing half-made replacement %s (%s)", manifest.id, manifest.reason)
        for output in manifest.outputs:
            await backend.delete(output.path)
        await backend.delete(manifest.path)
        reports.append(
            ReplaceReport(
                id=manifest.id,
                reason=manifest.reason,
                outcome="undone",
                inputs_deleted=0,
                outputs_created=0,
            )
        )
    return reports


async def _scan_folders(backend: FileBackend, manifest: Manifest) -> list[FileInfo]:
    folders = {o.path.rpartition("/")[0] + "/" for o in manifest.outputs}
    listed: list[FileInfo] = []
    for folder in sorted(folders):
        listed.extend(await backend.scan(folder))
    return listed
