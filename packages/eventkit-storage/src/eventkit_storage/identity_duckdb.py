"""The identity pass on DuckDB: :class:`DuckDBIdentityStore` (one transaction per chunk)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from typing import Any

import duckdb
import pyarrow as pa

from eventkit_storage.identity_sql import RELATIONS, Relation, SqlIdentityStore
from eventkit_storage.warehouse import IDENTITY_FACTS_TABLE, IDENTITY_TABLES

__all__ = ["DuckDBIdentityStore"]

_TS = pa.timestamp("us", tz="UTC")
_TYPES: dict[str, pa.DataType] = {}
for _columns in IDENTITY_TABLES.values():
    for _name, _type, _mode in _columns:
        base = {"TIMESTAMP": _TS, "INT64": pa.int64()}.get(_type, pa.string())
        _TYPES[_name] = pa.list_(base) if _mode == "REPEATED" else base


def _arrow(columns: Sequence[str], rows: list[tuple[Any, ...]]) -> pa.Table:
    data = list(zip(*rows, strict=True)) if rows else [() for _ in columns]
    return pa.table(
        {
            name: pa.array(list(values), type=_TYPES.get(name, pa.string()))
            for name, values in zip(columns, data, strict=True)
        }
    )


class DuckDBIdentityStore(SqlIdentityStore):
    """Reads and writes the identity tables through an open DuckDB connection."""

    traits_text = "CAST(f.traits AS VARCHAR)"

    def __init__(self, con: duckdb.DuckDBPyConnection, table: str = "raw_events") -> None:
        self.con = con
        self.table = table

    def _refs(self) -> dict[str, str]:
        refs = {name: f'"{name}"' for name in IDENTITY_TABLES}
        return {
            **refs,
            "raw": f'"{self.table}"',
            "facts": f'"{IDENTITY_FACTS_TABLE}"',
            "ts": '"timestamp"',
        }

    def _rel_names(self) -> dict[str, str]:
        return {f"rel_{name}": f"_ek_rel_{name}" for name in RELATIONS}

    @contextlib.contextmanager
    def _registered(self, relations: dict[str, Relation] | None) -> Iterator[None]:
        names = []
        try:
            for name, (columns, rows) in (relations or {}).items():
                self.con.register(f"_ek_rel_{name}", _arrow(columns, rows))
                names.append(f"_ek_rel_{name}")
            yield
        finally:
            for name in names:
                self.con.unregister(name)

    def _select(
        self, sql: str, relations: dict[str, Relation] | None = None
    ) -> list[tuple[Any, ...]]:
        with self._registered(relations):
            return [tuple(row) for row in self.con.execute(sql).fetchall()]

    def _select_many(
        self, queries: Sequence[str], relations: dict[str, Relation]
    ) -> list[list[tuple[Any, ...]]]:
        with self._registered(relations):
            return [[tuple(row) for row in self.con.execute(sql).fetchall()] for sql in queries]

    def _execute_all(self, statements: Sequence[tuple[str, dict[str, Relation]]]) -> None:
        self.con.begin()
        try:
            for sql, relations in statements:
                with self._registered(relations):
                    self.con.execute(sql)
            self.con.commit()
        except BaseException:
            with contextlib.suppress(duckdb.Error):
                self.con.rollback()
            raise
