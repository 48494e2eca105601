"""The identity pass on BigQuery: :class:`BigQueryIdentityStore`.

Relations go in as query parameters (``UNNEST(@name)`` of STRUCTs). BigQuery has no transaction
across these statements here, so a chunk's writes run in :data:`~eventkit_storage.identity_sql.
WRITES` order with the facts (the progress marker) last: a pass killed midway leaves the chunk's
events pending, and the rerun deletes and rewrites the same rows.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any

from eventkit_core.errors import WarehouseError
from google.api_core import exceptions as api_exceptions
from google.cloud import bigquery

from eventkit_storage.identity_sql import RELATIONS, Relation, SqlIdentityStore
from eventkit_storage.warehouse import IDENTITY_FACTS_TABLE, IDENTITY_TABLES

__all__ = ["BigQueryIdentityStore", "bigquery_query", "identity_schema"]

log = logging.getLogger(__name__)

_TYPES: dict[str, tuple[str, str]] = {
    name: ("STRING" if type_ == "JSON" else type_, mode)
    for columns in IDENTITY_TABLES.values()
    for name, type_, mode in columns
}


def identity_schema(table: str) -> list[bigquery.SchemaField]:
    """The BigQuery schema of one of :data:`~eventkit_storage.warehouse.IDENTITY_TABLES`."""
    return [
        bigquery.SchemaField(name, "STRING" if type_ == "JSON" else type_, mode=mode)
        for name, type_, mode in IDENTITY_TABLES[table]
    ]


def _parameter(name: str, columns: Sequence[str], rows: list[tuple[Any, ...]]) -> Any:
    structs = []
    for row in rows:
        fields: list[Any] = []
        for column, value in zip(columns, row, strict=True):
            type_, mode = _TYPES.get(column, ("STRING", "NULLABLE"))
            if mode == "REPEATED":
                fields.append(bigquery.ArrayQueryParameter(column, type_, list(value)))
            else:
                fields.append(bigquery.ScalarQueryParameter(column, type_, value))
        structs.append(bigquery.StructQueryParameter(None, *fields))
    return bigquery.ArrayQueryParameter(name, "STRUCT", structs)


class BigQueryIdentityStore(SqlIdentityStore):
    """Reads and writes the identity tables of ``loader``'s dataset."""

    micros = "UNIX_MICROS({})"

    def __init__(self, loader: Any) -> None:
        self.loader = loader  # a BigQueryWarehouseLoader: its client, refs and retries

    def _refs(self) -> dict[str, str]:
        base = self.loader.dataset_ref
        refs = {name: f"`{base}.{name}`" for name in IDENTITY_TABLES}
        return {
            **refs,
            "raw": f"`{self.loader.table_ref}`",
            "facts": f"`{base}.{IDENTITY_FACTS_TABLE}`",
            "ts": "`timestamp`",
        }

    def _rel_names(self) -> dict[str, str]:
        return {f"rel_{name}": f"UNNEST(@{name})" for name in RELATIONS}

    def _params(self, relations: dict[str, Relation] | None) -> list[Any]:
        return [_parameter(n, cols, rows) for n, (cols, rows) in (relations or {}).items()]

    def _select(
        self, sql: str, relations: dict[str, Relation] | None = None
    ) -> list[tuple[Any, ...]]:
        rows = self.loader._run_query(sql, self._params(relations))
        return [tuple(row.values()) for row in rows]

    def _execute_all(self, statements: Sequence[tuple[str, dict[str, Relation]]]) -> None:
        for number, (sql, relations) in enumerate(statements, 1):
            # DEBUG: where a killed pass stopped (the crash tests wait for these lines)
            log.debug("identity write %d/%d: %s", number, len(statements), sql.split(" (")[0])
            self.loader._run_query(sql, self._params(relations))


def _positional(value: Any) -> bigquery.ScalarQueryParameter:
    if isinstance(value, bool):
        return bigquery.ScalarQueryParameter(None, "BOOL", value)
    if isinstance(value, int):
        return bigquery.ScalarQueryParameter(None, "INT64", value)
    return bigquery.ScalarQueryParameter(None, "STRING", None if value is None else str(value))


def bigquery_query(loader: Any) -> Callable[[str, Sequence[Any]], list[tuple[Any, ...]]]:
    """A ``query(sql, params)`` with ``?`` placeholders over ``loader`` (what
    :class:`~eventkit_storage.identity_read.ProfileReader` reads through)."""

    def query(sql: str, params: Sequence[Any]) -> list[tuple[Any, ...]]:
        try:
            rows = loader._run_query(sql, [_positional(v) for v in params])
        except api_exceptions.GoogleAPIError as exc:
            raise WarehouseError(f"profile read on {loader.dataset_ref} failed: {exc}") from exc
        return [tuple(row.values()) for row in rows]

    return query
