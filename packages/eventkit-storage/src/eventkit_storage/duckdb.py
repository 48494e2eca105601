"""The embedded warehouse: Parquet files loaded into one DuckDB file (extra ``[duckdb]``).

Exactly once: each file is loaded in its own transaction that also inserts its row in the ledger
table ``_eventkit_loaded_files``; a process killed mid-load leaves neither (DuckDB commits
atomically), so the next pass loads the file again, once.

The DuckDB file is opened only while a pass runs (:meth:`DuckDBWarehouseLoader.ensure_schema`,
:meth:`DuckDBWarehouseLoader.load_files`) and closed after it, so that another process
(``eventkit-loader query``) can open it between passes. DuckDB lets one process write a file, or
several read it: whoever finds it locked waits up to ``lock_timeout`` seconds, then fails with a
:class:`~eventkit_core.WarehouseError` that says so.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any, Final
from urllib.parse import unquote, urlparse

import duckdb  # the top-level package: imports are absolute, this module does not shadow it
from eventkit_core.errors import ConfigurationError, WarehouseError
from eventkit_core.protocols import LoadReport
from opentelemetry.metrics import MeterProvider

from eventkit_storage.identity import IdentityConfig, PassStats, run_identity_pass
from eventkit_storage.schema import DEAD_LETTER_SCHEMA, EVENT_COLUMNS
from eventkit_storage.warehouse import (
    DEAD_LETTERS_TABLE,
    IDENTITY_FACTS_TABLE,
    LEDGER_TABLE,
    LoaderMetrics,
    check_table_name,
    duckdb_ddl,
)

__all__ = ["DuckDBWarehouseLoader", "local_path"]

log = logging.getLogger("eventkit_storage.duckdb")

_POLL_FIRST = 0.02
_POLL_MAX = 0.25


def local_path(uri: str) -> Path:
    """The local file of ``uri``: a path, or a ``file://`` URI. Other schemes: ConfigurationError."""
    if "://" not in uri:
        return Path(uri)
    parsed = urlparse(uri)
    if parsed.scheme != "file" or parsed.netloc not in ("", "localhost"):
        raise ConfigurationError(
            f"the DuckDB warehouse loads local files only, not {uri!r}: use a path or a "
            "file:// URI (load gs:// files with eventkit_storage.bigquery.BigQueryWarehouseLoader)"
        )
    return Path(unquote(parsed.path))


def _is_busy(exc: duckdb.Error) -> bool:
    """True when the file is held by another process (lock) or connection (other config).

    The type comes first; duckdb has no narrower type for these two cases (an IOException is
    also a missing or unreadable file), so its message tells them apart.
    """
    text = str(exc)
    return (isinstance(exc, duckdb.IOException) and "lock" in text.lower()) or (
        isinstance(exc, duckdb.ConnectionException) and "different configuration" in text
    )


DEAD_LETTER_NAMES: Final = tuple(DEAD_LETTER_SCHEMA.names)


class DuckDBWarehouseLoader:
    """Loads Parquet files into ``table`` of the DuckDB file ``database`` (a WarehouseLoader)."""

    def __init__(
        self,
        database: str | Path,
        *,
        table: str = "raw_events",
        lock_timeout: float = 10.0,
        meter_provider: MeterProvider | None = None,
    ) -> None:
        if lock_timeout < 0:
            raise ConfigurationError(f"lock_timeout must be >= 0 seconds, not {lock_timeout}")
        self.database = Path(database)
        self.table = check_table_name(table)
        self.lock_timeout = lock_timeout
        self._metrics = LoaderMetrics("duckdb", meter_provider)
        self._pass_lock = threading.Lock()  # one pass at a time per loader
        self._held: duckdb.DuckDBPyConnection | None = None

    # ---------------------------------------------------------------------------- connections

    def _connect(self, *, read_only: bool) -> duckdb.DuckDBPyConnection:
        deadline = time.monotonic() + self.lock_timeout
        delay = _POLL_FIRST
        while True:
            try:
                return duckdb.connect(str(self.database), read_only=read_only)
            except duckdb.Error as exc:
                if not _is_busy(exc):
                    if read_only and not self.database.exists():
                        raise WarehouseError(
                            f"no DuckDB warehouse at {self.database}: run a load pass first "
                            "(eventkit-loader once)"
                        ) from exc
                    raise WarehouseError(f"cannot open {self.database}: {exc}") from exc
                remaining = deadline - time.monotonic()
                if delay == _POLL_FIRST and remaining > 0:
                    # Once per wait: a command that seems to hang says what it is waiting for.
                    log.info(
                        "%s is locked by another connection (a load pass?): waiting up to %g s",
                        self.database,
                        self.lock_timeout,
                    )
                if remaining <= 0:
                    raise WarehouseError(
                        f"the DuckDB warehouse {self.database} stayed locked by another "
                        f"connection (a load pass?) for {self.lock_timeout:g} s: retry later or "
                        f"allow a longer wait. DuckDB said: {exc}",
                        code="warehouse_busy",
                    ) from exc
                time.sleep(min(delay, remaining))
                delay = min(delay * 2, _POLL_MAX)

    def hold(self) -> None:
        """Keep the file open until :meth:`release`: passes share the connection and reads
        (:meth:`query`) use cursors of it, so this process can serve reads between and during
        passes (DuckDB lets one process write a file; another process then waits)."""
        with self._pass_lock:
            if self._held is None:
                self.database.parent.mkdir(parents=True, exist_ok=True)
                self._held = self._connect(read_only=False)

    def release(self) -> None:
        with self._pass_lock:
            if self._held is not None:
                self._held.close()
                self._held = None

    @contextlib.contextmanager
    def _open(self, *, read_only: bool = False) -> Iterator[duckdb.DuckDBPyConnection]:
        held = self._held
        if held is not None:
            # a cursor is a connection of its own to the same database, safe in its thread
            cursor = held.cursor() if read_only else held
            try:
                yield cursor
            finally:
                if read_only:
                    cursor.close()
            return
        if not read_only:
            self.database.parent.mkdir(parents=True, exist_ok=True)
        try:
            con = self._connect(read_only=read_only)
        except WarehouseError:
            if not read_only:  # a pass that could not start
                self._metrics.error()
            raise
        try:
            yield con
        finally:
            con.close()

    # ---------------------------------------------------------------------------------- schema

    async def ensure_schema(self) -> None:
        """Create the table and the ledger when missing, and (re)create the views."""
        await asyncio.to_thread(self._ensure_schema_sync)

    def _ensure_schema_sync(self) -> None:
        with self._pass_lock, self._open() as con:
            self._apply_ddl(con)

    def _apply_ddl(self, con: duckdb.DuckDBPyConnection) -> None:
        try:
            con.execute(duckdb_ddl(self.table))
        except duckdb.Error as exc:
            self._metrics.error()
            raise WarehouseError(
                f"cannot create the warehouse schema in {self.database}: {exc}"
            ) from exc

    def _has_table(self, con: duckdb.DuckDBPyConnection, name: str) -> bool:
        row = con.execute(
            "SELECT count(*) FROM duckdb_tables() WHERE table_name = ? AND schema_name = 'main'",
            [name],
        ).fetchone()
        return bool(row and row[0])

    def _schema_current(self, con: duckdb.DuckDBPyConnection) -> bool:
        """The raw table and the ledger exist, and the raw table has today's columns."""
        if not self._has_table(con, LEDGER_TABLE):
            return False
        present = {
            str(row[0])
            for row in con.execute(
                "SELECT column_name FROM duckdb_columns() "
                "WHERE table_name = ? AND schema_name = 'main'",
                [self.table],
            ).fetchall()
        }
        return set(EVENT_COLUMNS) <= present

    # ----------------------------------------------------------------------------------- loads

    async def load_files(self, uris: Sequence[str]) -> LoadReport:
        """Load each file not in the ledger yet, once. Bad files are reported, never raised."""
        return await asyncio.to_thread(self._load_files_sync, list(uris))

    async def load_dead_letter_files(self, uris: Sequence[str]) -> LoadReport:
        """Load dead-letter files into ``dead_letters``: each once, with the same ledger."""
        return await asyncio.to_thread(
            self._load_files_sync, list(uris), DEAD_LETTERS_TABLE, DEAD_LETTER_NAMES
        )

    def _load_files_sync(
        self, uris: list[str], table: str | None = None, names: Sequence[str] = EVENT_COLUMNS
    ) -> LoadReport:
        target = self.table if table is None else table
        loaded: list[str] = []
        skipped: list[str] = []
        failed: list[str] = []
        rows = 0
        if not uris:
            return LoadReport()
        with self._pass_lock, self._open() as con:
            if not self._schema_current(con) or not self._has_table(con, target):
                self._apply_ddl(con)  # creates what is missing, migrates an older raw table
            seen: set[str] = set()
            for uri in uris:
                try:
                    path = local_path(uri)
                except ConfigurationError:
                    failed.append(uri)
                    self._metrics.error()
                    continue
                key = path.absolute().as_uri()
                if key in seen:
                    skipped.append(uri)
                    continue
                seen.add(key)
                try:
                    count = self._load_one(con, path, key, target, names)
                except duckdb.Error:
                    failed.append(uri)
                    self._metrics.error()
                    continue
                if count is None:
                    skipped.append(uri)
                else:
                    loaded.append(uri)
                    rows += count
                    self._metrics.loaded(1)
        return LoadReport(
            loaded=tuple(loaded), skipped=tuple(skipped), failed=tuple(failed), rows=rows
        )

    def _load_one(
        self,
        con: duckdb.DuckDBPyConnection,
        path: Path,
        key: str,
        table: str,
        names: Sequence[str],
    ) -> int | None:
        """Load one file in one transaction with its ledger row; None when already loaded."""
        columns = ", ".join(f'"{name}"' for name in names)
        # A file written before a column existed (``extras``) loads with nulls in it.
        in_file = {
            str(row[0])
            for row in con.execute("SELECT name FROM parquet_schema(?)", [str(path)]).fetchall()
        }
        values = ", ".join(
            f'"{name}"' if name in in_file else f'NULL AS "{name}"' for name in names
        )
        con.begin()
        try:
            done = con.execute(f'SELECT 1 FROM "{LEDGER_TABLE}" WHERE uri = ?', [key]).fetchone()
            if done:
                con.rollback()
                return None
            inserted = con.execute(
                f'INSERT INTO "{table}" ({columns}) SELECT {values} FROM read_parquet(?)',
                [str(path)],
            ).fetchone()
            count = int(inserted[0]) if inserted else 0
            self._record_loaded(con, key, count)
            con.commit()
        except BaseException:
            with contextlib.suppress(duckdb.Error):
                con.rollback()
            raise
        return count

    def _record_loaded(self, con: duckdb.DuckDBPyConnection, key: str, count: int) -> None:
        """Insert the ledger row (inside the transaction holding the file's rows)."""
        con.execute(
            f'INSERT INTO "{LEDGER_TABLE}" (uri, row_count, loaded_at) VALUES (?, ?, now())',
            [key, count],
        )

    async def mark_loaded(self, files: Mapping[str, int]) -> None:
        """Record ``files`` (URI -> row count) as loaded without loading them.

        For files whose rows the warehouse holds already: what a lifecycle rewrite
        (:mod:`eventkit_storage.rewrite`) makes of files that were loaded. Idempotent.
        """
        await asyncio.to_thread(self._mark_loaded_sync, dict(files))

    def _mark_loaded_sync(self, files: dict[str, int]) -> None:
        if not files:
            return
        with self._pass_lock, self._open() as con:
            if not self._has_table(con, LEDGER_TABLE):
                self._apply_ddl(con)
            con.begin()
            try:
                for uri, count in files.items():
                    key = local_path(uri).absolute().as_uri()
                    con.execute(
                        f'INSERT INTO "{LEDGER_TABLE}" (uri, row_count, loaded_at) '
                        "VALUES (?, ?, now()) ON CONFLICT DO NOTHING",
                        [key, count],
                    )
                con.commit()
            except BaseException:
                with contextlib.suppress(duckdb.Error):
                    con.rollback()
                raise

    async def delete_received_before(self, cutoffs: Mapping[str, datetime]) -> dict[str, int]:
        """Retention: delete each stream's rows (events and dead letters) received before its
        cutoff, in one transaction, then checkpoint. Rows deleted per table."""
        return await asyncio.to_thread(self._delete_before_sync, dict(cutoffs))

    def _delete_before_sync(self, cutoffs: dict[str, datetime]) -> dict[str, int]:
        removed = {self.table: 0, DEAD_LETTERS_TABLE: 0}
        if not cutoffs or not self.database.exists():
            return removed
        with self._pass_lock, self._open() as con:
            tables = [t for t in removed if self._has_table(con, t)]
            con.begin()
            try:
                for table in tables:
                    for stream, cutoff in sorted(cutoffs.items()):
                        row = con.execute(
                            f'DELETE FROM "{table}" WHERE stream = ? AND received_at < ?',
                            [stream, cutoff],
                        ).fetchone()
                        removed[table] += int(row[0]) if row else 0
                con.commit()
            except BaseException:
                with contextlib.suppress(duckdb.Error):
                    con.rollback()
                raise
            con.execute("CHECKPOINT")
        return removed

    # ------------------------------------------------------------------------------ identities

    async def resolve_identities(
        self, config: IdentityConfig | None = None, *, chunk_events: int = 20_000
    ) -> PassStats:
        """The identity pass: resolve the events not processed yet (see
        :mod:`eventkit_storage.identity`), each chunk of ``chunk_events`` in one transaction, so
        a reader waits for one chunk at most and a killed pass loses at most its last chunk."""
        return await asyncio.to_thread(self._resolve_sync, config, chunk_events)

    def _resolve_sync(self, config: IdentityConfig | None, chunk_events: int) -> PassStats:
        from eventkit_storage.identity_duckdb import DuckDBIdentityStore

        with self._pass_lock, self._open() as con:
            if not self._has_table(con, IDENTITY_FACTS_TABLE):
                self._apply_ddl(con)
            try:
                return run_identity_pass(
                    DuckDBIdentityStore(con, self.table), config, chunk_events=chunk_events
                )
            except duckdb.Error as exc:
                self._metrics.error()
                raise WarehouseError(f"identity pass failed on {self.database}: {exc}") from exc

    def loaded_files(self) -> set[str]:
        """The ``file://`` URIs of every loaded file: absolute, symlinks kept (as LocalEventStore
        names them)."""
        if not self.database.exists():
            return set()
        try:
            _, rows = self.query(f'SELECT uri FROM "{LEDGER_TABLE}"')
        except WarehouseError as exc:
            if isinstance(exc.__cause__, duckdb.CatalogException):  # no ledger table yet
                return set()
            raise
        return {str(row[0]) for row in rows}

    # ----------------------------------------------------------------------------------- reads

    def query(
        self, sql: str, params: Sequence[Any] | dict[str, Any] | None = None
    ) -> tuple[list[str], list[tuple[Any, ...]]]:
        """Run ``sql`` on a read-only connection: (column names, rows).

        Waits up to ``lock_timeout`` seconds while a load pass holds the file.
        """
        with self._open(read_only=True) as con:
            try:
                cursor = con.execute(sql, params)
                names = [column[0] for column in cursor.description or ()]
                return names, [tuple(row) for row in cursor.fetchall()]
            except duckdb.Error as exc:
                raise WarehouseError(f"query failed on {self.database}: {exc}") from exc

    def health_check(self) -> bool:
        """True when the database file is readable and writable, or can be created.

        It does not open the file (a running pass may hold it).
        """
        if self.database.exists():
            return self.database.is_file() and os.access(self.database, os.R_OK | os.W_OK)
        directory = self.database.parent.absolute()
        while not directory.exists() and directory != directory.parent:
            directory = directory.parent
        return directory.is_dir() and os.access(directory, os.W_OK | os.X_OK)
