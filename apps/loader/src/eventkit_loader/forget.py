"""``eventkit-loader forget``: remove one person from the warehouse and the stored files.

Steps (each safe to rerun after a crash): finish or undo unfinished file replacements; resolve
the person's ids through the identity tables; add them to the suppression list (the collector
drops new events, replay skips old ones); load pending files; delete the person's warehouse rows
and purge the DuckDB file's free blocks; rewrite every stored file holding the person's rows
(:mod:`eventkit_storage.rewrite`); record the request (no personal data) in ``deletions``.

DuckDB or BigQuery, local or GCS store (the row rules are in :mod:`eventkit_loader.forget_rows`).
Finding the files reads every stored file (a full scan: fine for small stores, slow for large
ones). BigQuery keeps deleted rows in time travel (2-7 days, the dataset's setting) and then
fail-safe (7 days); nothing here can shorten that (see the guide).
"""

from __future__ import annotations

import asyncio
import json
import os
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
from eventkit_core import utcnow
from eventkit_storage.identity import parse_identity
from eventkit_storage.identity_read import reader_for
from eventkit_storage.rewrite import (
    Output,
    Replacement,
    output_name,
    read_table,
    recover,
    replace,
    sibling_path,
    table_output,
)
from eventkit_storage.suppression import candidate_ids, payload_ids

from eventkit_loader import backends
from eventkit_loader import forget_rows as person
from eventkit_loader.settings import LoaderSettings

Identity = tuple[str, str]

#: A test hook: the step name after which the command kills itself (crash-safety tests).
CRASH_AFTER_ENV = "EVENTKIT_FORGET_CRASH_AFTER"


@dataclass
class ForgetReport:
    """What forget changed (or, with ``dry_run``, would change)."""

    ids: list[Identity]
    known: bool
    dry_run: bool
    request_id: str = field(default_factory=lambda: uuid.uuid4().hex)
    rows: dict[str, int] = field(default_factory=dict)
    files: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "request_id": self.request_id,
            "dry_run": self.dry_run,
            "known_profile": self.known,
            "ids": [f"{t}:{v}" for t, v in self.ids],
            "rows": self.rows,
            "files": self.files,
        }


def _crash_point(step: str, say: Any) -> None:
    say(f"forget: {step} done")
    if os.environ.get(CRASH_AFTER_ENV) == step:
        os.kill(os.getpid(), 9)


def _resolve(settings: LoaderSettings, id_type: str, value: str) -> tuple[list[Identity], bool]:
    reader = reader_for(backends.warehouse(settings))
    found = reader.find(id_type, value)
    # By identities, not the profiles row: a BigQuery run killed midway deleted that first.
    held = [] if found is None else reader.identities(found)
    if found is None or not held:
        return [(id_type, value)], False
    ids = [(str(t), str(v)) for t, v, _ in held]
    ids.append(("profile_id", found))
    if (id_type, value) not in ids:
        ids.append((id_type, value))
    return ids, True


def _row_ids(row: dict[str, Any]) -> list[Identity]:
    if "type" not in row:  # a dead letter: its ids are in the payload
        return payload_ids(row.get("payload") or "")
    return candidate_ids(
        user_id=row.get("user_id"),
        anonymous_id=row.get("anonymous_id"),
        previous_id=row.get("previous_id"),
        traits=row.get("traits"),
        context=row.get("context"),
    )


#: Whether any of a row's ids belongs to a forgotten person.
Matcher = Callable[[list[Identity]], bool]


def _keep_mask(table: pa.Table, matches: Matcher) -> tuple[list[bool], list[str]]:
    keep: list[bool] = []
    gone: list[str] = []
    for row in table.to_pylist():
        hit = matches(_row_ids(row))
        keep.append(not hit)
        if hit and row.get("message_id"):
            gone.append(str(row["message_id"]))
    return keep, gone


async def _plan_files(
    store: Any, matches: Matcher, loaded: set[str]
) -> tuple[list[Replacement], list[str]]:
    """A replacement per stored file holding the person's rows; their message ids."""
    plans: list[Replacement] = []
    messages: list[str] = []
    for info in await store.list_files():
        table = read_table(await store.read_bytes(info.path))
        keep, gone = _keep_mask(table, matches)
        if all(keep):
            continue
        messages += gone
        name = sibling_path(info.path, output_name("forget", [info.path]))
        out = table_output(name, table.filter(pa.array(keep)))
        outputs: tuple[Output, ...] = () if out is None else (out,)
        plans.append(
            Replacement(
                reason="forget",
                inputs=(info.path,),
                outputs=outputs,
                loaded=store.uri(info.path) in loaded,
            )
        )
    return plans, messages


def purge_duckdb(path: Path) -> None:
    """Rewrite the DuckDB file: DELETE leaves the old strings in free blocks of the file."""
    fresh = path.with_name(path.name + ".forget-tmp")
    fresh.unlink(missing_ok=True)
    con = duckdb.connect(str(path))
    try:
        name = con.execute("SELECT current_database()").fetchone()
        con.execute(f"ATTACH '{fresh}' AS forget_fresh")
        con.execute(f'COPY FROM DATABASE "{name[0] if name else path.stem}" TO forget_fresh')
        con.execute("DETACH forget_fresh")
    finally:
        con.close()
    path.with_name(path.name + ".wal").unlink(missing_ok=True)
    os.replace(fresh, path)


async def forget(settings: LoaderSettings, ident: str, *, dry_run: bool, say: Any) -> ForgetReport:
    """Forget the person with id ``ident`` (``ID_TYPE:VALUE``)."""
    from eventkit_storage.suppression import SuppressionList

    from eventkit_loader.service import LoaderService

    id_type, value = parse_identity(ident)  # a bad id fails before anything changes
    requested = utcnow()
    events, errors = backends.event_store(settings), backends.error_store(settings)
    warehouse = backends.warehouse(settings)
    if not dry_run:
        for store in (events, errors):
            await recover(store.backend, warehouse.mark_loaded)
        _crash_point("recover", say)
    if settings.warehouse_kind != "duckdb":
        await warehouse.ensure_schema()  # a new dataset: the (empty) tables the steps read
    ids, known = [(id_type, value)], False
    if _has_warehouse(settings):
        ids, known = await asyncio.to_thread(_resolve, settings, id_type, value)
    report = ForgetReport(ids=ids, known=known, dry_run=dry_run)
    if not dry_run:
        await SuppressionList(errors.backend).add(ids, report.request_id)
        _crash_point("suppress", say)
        await LoaderService(events, warehouse).run_pass()
        _crash_point("load", say)
    loaded = await asyncio.to_thread(warehouse.loaded_files)
    # Rows match by the whole suppression list, not just the ids resolved now: a run killed
    # after the warehouse step no longer finds the profile, but its ids are on the list.
    idset = set(ids)
    matches: Matcher = lambda row_ids: any(i in idset for i in row_ids)  # noqa: E731
    if not dry_run:
        matches = (await SuppressionList(errors.backend).load()).matches
    plans: list[tuple[Any, Replacement]] = []
    messages: list[str] = []
    for store in (events, errors):
        found, gone = await _plan_files(store, matches, loaded)
        plans += [(store, p) for p in found]
        messages += gone
    report.files = [p.inputs[0] for _, p in plans]
    duck = settings.warehouse_kind == "duckdb"
    if _has_warehouse(settings):
        count = person.duckdb_person_rows if duck else person.bigquery_person_rows
        where: Any = settings.duckdb_path if duck else warehouse
        report.rows = await asyncio.to_thread(count, where, ids, messages, delete=not dry_run)
    if dry_run:
        return report
    if duck:
        await asyncio.to_thread(purge_duckdb, settings.duckdb_path)
    _crash_point("warehouse", say)
    for store, plan in plans:
        await replace(store.backend, plan, warehouse.mark_loaded)
        _crash_point("file", say)
    record = person.duckdb_record if duck else person.bigquery_record
    await asyncio.to_thread(
        record,
        settings.duckdb_path if duck else warehouse,
        report.request_id,
        requested,
        len(report.files),
        sum(report.rows.values()),
    )
    return report


def _has_warehouse(settings: LoaderSettings) -> bool:
    """BigQuery: always (the schema is created on first use); DuckDB: once its file exists."""
    return settings.warehouse_kind != "duckdb" or settings.duckdb_path.exists()


async def cmd_forget(settings: LoaderSettings, ident: str, dry_run: bool, as_json: bool) -> int:
    """The CLI command: a summary (or one JSON object) on stdout, step lines on stderr."""
    import sys

    def say(line: str) -> None:
        print(line, file=sys.stderr, flush=True)

    report = await forget(settings, ident, dry_run=dry_run, say=say)
    if as_json:
        print(json.dumps(report.as_dict()))
        return 0
    verb = "would remove" if dry_run else "removed"
    if not report.known:
        print(f"no profile has {ident}: suppressing that id only")
    print("ids: " + ", ".join(f"{t}:{v}" for t, v in report.ids))
    for table, count in sorted(report.rows.items()):
        print(f"{verb} {count} rows from {table}")
    print(f"{'would rewrite' if dry_run else 'rewrote'} {len(report.files)} files")
    for path in report.files:
        print(f"  {path}")
    return 0
