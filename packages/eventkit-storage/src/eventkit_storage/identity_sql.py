"""The SQL of the identity pass, shared by DuckDB and BigQuery (:class:`SqlIdentityStore`).

Placeholders: ``{<table>}`` is a table reference, ``{ids}`` (and other ``{rel_*}``) a relation of
rows the pass passes in (a registered Arrow table in DuckDB, ``UNNEST(@param)`` in BigQuery),
``{ts}`` the ``timestamp`` column. Each backend only says how to run a statement with relations.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Sequence
from typing import Any

from eventkit_storage.identity import (
    ChunkResult,
    Edge,
    EventFacts,
    EventIds,
    Identity,
    StoredFacts,
)
from eventkit_storage.warehouse import IDENTITY_FACTS_TABLE, IDENTITY_TABLES

__all__ = ["Relation", "SqlIdentityStore"]

#: (column names, rows): what a statement reads as ``{rel_name}``.
Relation = tuple[tuple[str, ...], list[tuple[Any, ...]]]

IDS = ("t", "v")

PENDING = """
SELECT r.message_id, r.type, r.{ts}, r.user_id, r.anonymous_id, r.previous_id,
  CASE WHEN r.type = 'identify' THEN r.traits END,
  CASE WHEN r.context LIKE '%externalIds%' THEN r.context END
FROM {raw} AS r
WHERE NOT EXISTS (SELECT 1 FROM {facts} AS p WHERE p.message_id = r.message_id)
LIMIT {limit}
"""

EDGES = """
SELECT e.id_type_1, e.id_value_1, e.id_type_2, e.id_value_2, e.kind, e.message_id, e.{ts}
FROM {identity_edges} AS e JOIN {ids} AS i ON e.id_type_1 = i.t AND e.id_value_1 = i.v
UNION ALL
SELECT e.id_type_1, e.id_value_1, e.id_type_2, e.id_value_2, e.kind, e.message_id, e.{ts}
FROM {identity_edges} AS e JOIN {ids} AS i ON e.id_type_2 = i.t AND e.id_value_2 = i.v
"""

IDENTITIES = """
SELECT d.id_type, d.id_value, d.profile_id, d.first_seen, d.last_seen
FROM {identities} AS d JOIN {ids} AS i ON d.id_type = i.t AND d.id_value = i.v
"""

COUNTS = """
SELECT f.id_type, f.id_value, COUNT(*)
FROM {facts} AS f JOIN {ids} AS i ON f.id_type = i.t AND f.id_value = i.v
GROUP BY f.id_type, f.id_value
"""

IDENTIFIES = """
SELECT f.message_id, f.type, f.{ts}, f.id_type, f.id_value, {traits_text}
FROM {facts} AS f JOIN {ids} AS i ON f.id_type = i.t AND f.id_value = i.v
WHERE f.traits IS NOT NULL
"""


def _delete_where(table: str, condition: str) -> str:
    return f"DELETE FROM {{{table}}} AS x WHERE EXISTS (SELECT 1 FROM {condition})"


#: (sql, the relation it reads) in write order: facts last (the progress marker).
WRITES: tuple[tuple[str, str], ...] = (
    (_delete_where("identity_edges", "{rel_msgs} AS m WHERE m.message_id = x.message_id"), "msgs"),
    ("INSERT INTO {identity_edges} ({cols}) SELECT {rcols} FROM {rel_edges} AS r", "edges"),
    (
        _delete_where(
            "identity_rejections",
            "{rel_msgs} AS m WHERE m.message_id = x.message_id AND x.rule = 'blocked_value'",
        ),
        "msgs",
    ),
    (
        "INSERT INTO {identity_rejections} ({cols}) SELECT {rcols} FROM {rel_blocked} AS r",
        "blocked",
    ),
    (
        _delete_where(
            "identity_rejections",
            "{rel_ids} AS i WHERE i.t = x.id_type_1 AND i.v = x.id_value_1 "
            "AND x.rule != 'blocked_value'",
        ),
        "ids",
    ),
    (
        "INSERT INTO {identity_rejections} ({cols}) SELECT {rcols} FROM {rel_rejections} AS r",
        "rejections",
    ),
    (
        _delete_where(
            "profile_merges", "{rel_merges} AS m WHERE m.from_profile_id = x.from_profile_id"
        ),
        "merges",
    ),
    ("INSERT INTO {profile_merges} ({cols}) SELECT {rcols} FROM {rel_merges} AS r", "merges"),
    (
        _delete_where("identities", "{rel_ids} AS i WHERE i.t = x.id_type AND i.v = x.id_value"),
        "ids",
    ),
    ("INSERT INTO {identities} ({cols}) SELECT {rcols} FROM {rel_identities} AS r", "identities"),
    (_delete_where("profiles", "{rel_pids} AS p WHERE p.profile_id = x.profile_id"), "pids"),
    ("INSERT INTO {profiles} ({cols}) SELECT {rcols} FROM {rel_profiles} AS r", "profiles"),
    (_delete_where("facts", "{rel_msgs} AS m WHERE m.message_id = x.message_id"), "msgs"),
    ("INSERT INTO {facts} ({cols}) SELECT {rcols} FROM {rel_facts} AS r", "facts"),
)

#: relation name -> the table whose columns it has (insert relations).
_INSERT_TABLE = {
    "edges": "identity_edges",
    "blocked": "identity_rejections",
    "rejections": "identity_rejections",
    "merges": "profile_merges",
    "identities": "identities",
    "profiles": "profiles",
    "facts": IDENTITY_FACTS_TABLE,
}


def table_columns(table: str) -> tuple[str, ...]:
    return tuple(name for name, _, _ in IDENTITY_TABLES[table])


def chunk_relations(result: ChunkResult) -> dict[str, Relation]:
    """The relations the writes of one chunk read."""
    messages = sorted({e.message_id for e in result.events})
    pids = sorted({*result.old_profile_ids, *(p.profile_id for p in result.profiles)})
    return {
        "msgs": (("message_id",), [(m,) for m in messages]),
        "ids": (IDS, list(result.component_ids)),
        "pids": (("profile_id",), [(p,) for p in pids]),
        "edges": (table_columns("identity_edges"), [tuple(e) for e in result.edges]),
        "blocked": (table_columns("identity_rejections"), [tuple(r) for r in result.blocked]),
        "rejections": (table_columns("identity_rejections"), [tuple(r) for r in result.rejections]),
        "merges": (table_columns("profile_merges"), [tuple(m) for m in result.merges]),
        "identities": (table_columns("identities"), [tuple(i) for i in result.identities]),
        "profiles": (
            table_columns("profiles"),
            [(*p[:2], list(p.anonymous_ids), *p[3:]) for p in result.profiles],
        ),
        "facts": (table_columns(IDENTITY_FACTS_TABLE), [tuple(f) for f in result.events]),
    }


class SqlIdentityStore:
    """An :class:`~eventkit_storage.identity.IdentityStore` over SQL; a backend implements
    :meth:`_select` and :meth:`_execute` (statements with ``{rel_*}`` relations)."""

    #: how ``{traits_text}`` reads the facts' JSON traits as text
    traits_text = "f.traits"

    def _refs(self) -> dict[str, str]:
        """Placeholders -> quoted table references and the ``ts`` column."""
        raise NotImplementedError

    def _select(
        self, sql: str, relations: dict[str, Relation] | None = None
    ) -> list[tuple[Any, ...]]:
        raise NotImplementedError

    def _execute_all(self, statements: Sequence[tuple[str, dict[str, Relation]]]) -> None:
        raise NotImplementedError

    def _format(self, sql: str, **extra: str) -> str:
        names = self._rel_names()
        return sql.format(
            **self._refs(), **names, ids=names["rel_ids"], traits_text=self.traits_text, **extra
        )

    # -- IdentityStore ----------------------------------------------------------------------

    def pending_events(self, limit: int) -> list[EventIds]:
        rows = self._select(self._format(PENDING, limit=str(int(limit))))
        out = []
        for mid, type_, ts, user, anon, prev, traits, context in rows:
            externals = None
            if context is not None:
                try:
                    decoded = json.loads(context)
                except ValueError:
                    decoded = None
                if isinstance(decoded, dict):
                    externals = decoded.get("externalIds")
            out.append(EventIds(mid, type_, ts, user, anon, prev, traits, externals))
        return out

    def edges_touching(self, ids: Collection[Identity]) -> list[Edge]:
        if not ids:
            return []
        relation: dict[str, Relation] = {"ids": (IDS, sorted(ids))}
        rows = self._select(self._format(EDGES), relation)
        return [Edge(*row) for row in rows]

    def facts(self, ids: Collection[Identity]) -> StoredFacts:
        facts = StoredFacts()
        if not ids:
            return facts
        relation: dict[str, Relation] = {"ids": (IDS, sorted(ids))}
        for t, v, pid, first, last in self._select(self._format(IDENTITIES), relation):
            facts.identities[(t, v)] = (pid, first, last)
        for t, v, count in self._select(self._format(COUNTS), relation):
            facts.counts[(t, v)] = int(count)
        facts.identifies = [
            EventFacts(*row) for row in self._select(self._format(IDENTIFIES), relation)
        ]
        return facts

    def write(self, result: ChunkResult) -> None:
        relations = chunk_relations(result)
        statements = []
        for sql, rel in WRITES:
            columns, rows = relations[rel]
            if not rows:
                continue
            cols = ", ".join(
                self._quote_column(c) for c in table_columns(_INSERT_TABLE.get(rel, "identities"))
            )
            rcols = ", ".join(
                "r." + self._quote_column(c)
                for c in table_columns(_INSERT_TABLE.get(rel, "identities"))
            )
            text = sql.replace("{cols}", cols).replace("{rcols}", rcols)
            statements.append((self._format(text), {rel: (columns, rows)}))
        self._execute_all(statements)

    def _quote_column(self, name: str) -> str:
        return name

    def _rel_names(self) -> dict[str, str]:
        """``rel_<name>`` -> how a statement reads the relation ``<name>``."""
        raise NotImplementedError


#: Every relation a statement may read.
RELATIONS = ("ids", "msgs", "pids", *_INSERT_TABLE)
