"""The SQL of the identity pass, shared by DuckDB and BigQuery (:class:`SqlIdentityStore`).

Placeholders: ``{<table>}`` is a table reference, ``{ids}`` (and other ``{rel_*}``) a relation of
rows the pass passes in (a registered Arrow table in DuckDB, ``UNNEST(@param)`` in BigQuery),
``{ts}`` the ``timestamp`` column. Each backend only says how to run a statement with relations.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from eventkit_storage.identity import (
    ChunkResult,
    Edge,
    EventFacts,
    EventIds,
    Identity,
    ProfileRow,
    StoredFacts,
)
from eventkit_storage.warehouse import IDENTITY_FACTS_TABLE, IDENTITY_TABLES

__all__ = ["Relation", "SqlIdentityStore"]

#: (column names, rows): what a statement reads as ``{rel_name}``.
Relation = tuple[tuple[str, ...], list[tuple[Any, ...]]]

IDS = ("t", "v")

PENDING = """
SELECT r.message_id, r.type, {us_r_ts}, r.user_id, r.anonymous_id, r.previous_id,
  CASE WHEN r.type = 'identify' THEN r.traits END,
  CASE WHEN r.context LIKE '%externalIds%' THEN r.context END
FROM {raw} AS r
WHERE NOT EXISTS (SELECT 1 FROM {facts} AS p WHERE p.message_id = r.message_id)
LIMIT {limit}
"""

EDGES = """
SELECT e.id_type_1, e.id_value_1, e.id_type_2, e.id_value_2, e.kind, e.message_id, {us_e_ts}
FROM {identity_edges} AS e
WHERE EXISTS (SELECT 1 FROM {ids} AS i WHERE e.id_type_1 = i.t AND e.id_value_1 = i.v)
  OR EXISTS (SELECT 1 FROM {ids} AS i WHERE e.id_type_2 = i.t AND e.id_value_2 = i.v)
"""

IDENTITIES = """
SELECT d.id_type, d.id_value, d.profile_id, {us_first_seen}, {us_last_seen}
FROM {identities} AS d JOIN {ids} AS i ON d.id_type = i.t AND d.id_value = i.v
"""

COUNTS = """
SELECT f.id_type, f.id_value, COUNT(*)
FROM {facts} AS f JOIN {ids} AS i ON f.id_type = i.t AND f.id_value = i.v
GROUP BY f.id_type, f.id_value
"""

IDENTIFIES = """
SELECT f.message_id, f.type, {us_f_ts}, f.id_type, f.id_value, {traits_text}
FROM {facts} AS f JOIN {ids} AS i ON f.id_type = i.t AND f.id_value = i.v
WHERE f.traits IS NOT NULL
"""


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _time(micros: int) -> datetime:
    return _EPOCH + timedelta(microseconds=micros)


def _delete_where(table: str, condition: str) -> str:
    return f"DELETE FROM {{{table}}} AS x WHERE EXISTS (SELECT 1 FROM {condition})"


MEMBERS = """
SELECT DISTINCT d2.id_type, d2.id_value
FROM {identities} AS d JOIN {ids} AS i ON d.id_type = i.t AND d.id_value = i.v
JOIN {identities} AS d2 ON d2.profile_id = d.profile_id
"""

#: what an in-place profile update sets (anonymous_ids changed: the row is rewritten instead)
_PROFILE_SET = ", ".join(
    f"{c} = r.{c}" for c in ("user_id", "traits", "first_seen", "last_seen", "event_count")
)
_INSERT_MISSING = (
    "INSERT INTO {{{table}}} ({{cols}}) SELECT {{rcols}} FROM {{rel_{rel}}} AS r "
    "WHERE NOT EXISTS (SELECT 1 FROM {{{table}}} AS x WHERE {cond})"
)
_SAME_ID = "x.id_type = r.id_type AND x.id_value = r.id_value"

#: (sql, the relation it reads) in write order. Every statement is idempotent given the state
#: the chunk was computed from, and a rerun recomputes from what an interrupted run left: edges
#: and rejections are replaced by key; profiles are written before identities (a rerun still
#: sees the old identities, so it finds the same vanished profiles and merges again); identities
#: are written as a diff (in-place updates of first/last seen keep DuckDB's ART indexes
#: untouched); the facts, the progress marker, go last.
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
    (_delete_where("profiles", "{rel_gone} AS p WHERE p.profile_id = x.profile_id"), "gone"),
    ("INSERT INTO {profiles} ({cols}) SELECT {rcols} FROM {rel_profiles} AS r", "profiles"),
    (
        f"UPDATE {{profiles}} AS x SET {_PROFILE_SET} FROM {{rel_touched}} AS r "
        "WHERE x.profile_id = r.profile_id",
        "touched",
    ),
    (  # a row an interrupted BigQuery write never inserted
        _INSERT_MISSING.format(table="profiles", rel="touched", cond="x.profile_id = r.profile_id"),
        "touched",
    ),
    (
        _delete_where("identities", "{rel_moved} AS i WHERE i.t = x.id_type AND i.v = x.id_value"),
        "moved",
    ),
    (
        "UPDATE {identities} AS x SET first_seen = r.first_seen, last_seen = r.last_seen "
        f"FROM {{rel_seen}} AS r WHERE {_SAME_ID}",
        "seen",
    ),
    (
        _INSERT_MISSING.format(table="identities", rel="identities", cond=_SAME_ID),
        "identities",
    ),
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
    "seen": "identities",
    "profiles": "profiles",
    "touched": "profiles",
    "facts": IDENTITY_FACTS_TABLE,
}


def table_columns(table: str) -> tuple[str, ...]:
    return tuple(name for name, _, _ in IDENTITY_TABLES[table])


def chunk_relations(result: ChunkResult) -> dict[str, Relation]:
    """The relations the writes of one chunk read."""
    messages = sorted({e.message_id for e in result.events})
    inserts, moved, seen = result.identity_changes()
    gone, new_profiles, touched = result.profile_changes()

    def profile_rows(rows: list[ProfileRow]) -> list[tuple[Any, ...]]:
        return [(*p[:2], list(p.anonymous_ids), *p[3:]) for p in rows]

    return {
        "msgs": (("message_id",), [(m,) for m in messages]),
        "ids": (IDS, list(result.component_ids)),
        "gone": (("profile_id",), [(p,) for p in gone]),
        "moved": (IDS, moved),
        "seen": (table_columns("identities"), [tuple(i) for i in seen]),
        "edges": (table_columns("identity_edges"), [tuple(e) for e in result.edges]),
        "blocked": (table_columns("identity_rejections"), [tuple(r) for r in result.blocked]),
        "rejections": (table_columns("identity_rejections"), [tuple(r) for r in result.rejections]),
        "merges": (table_columns("profile_merges"), [tuple(m) for m in result.merges]),
        "identities": (table_columns("identities"), [tuple(i) for i in inserts]),
        "profiles": (table_columns("profiles"), profile_rows(new_profiles)),
        "touched": (table_columns("profiles"), profile_rows(touched)),
        "facts": (table_columns(IDENTITY_FACTS_TABLE), [tuple(f) for f in result.events]),
    }


class SqlIdentityStore:
    """An :class:`~eventkit_storage.identity.IdentityStore` over SQL; a backend implements
    :meth:`_select` and :meth:`_execute` (statements with ``{rel_*}`` relations)."""

    #: how ``{traits_text}`` reads the facts' JSON traits as text
    traits_text = "f.traits"
    #: a TIMESTAMP as microseconds since the epoch: reads fetch integers, which turn into
    #: datetimes several times faster than the drivers' own timestamp conversion
    micros = "epoch_us({})"

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
        refs = self._refs()
        us = {
            "us_r_ts": self.micros.format("r." + refs["ts"]),
            "us_e_ts": self.micros.format("e." + refs["ts"]),
            "us_f_ts": self.micros.format("f." + refs["ts"]),
            "us_first_seen": self.micros.format("d.first_seen"),
            "us_last_seen": self.micros.format("d.last_seen"),
        }
        return sql.format(
            **refs, **names, **us, ids=names["rel_ids"], traits_text=self.traits_text, **extra
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
            out.append(EventIds(mid, type_, _time(ts), user, anon, prev, traits, externals))
        return out

    def profile_members(self, ids: Collection[Identity]) -> set[Identity]:
        if not ids:
            return set()
        relation: dict[str, Relation] = {"ids": (IDS, sorted(ids))}
        return {(t, v) for t, v in self._select(self._format(MEMBERS), relation)}

    def edges_touching(self, ids: Collection[Identity]) -> list[Edge]:
        if not ids:
            return []
        relation: dict[str, Relation] = {"ids": (IDS, sorted(ids))}
        rows = self._select(self._format(EDGES), relation)
        return [Edge(a, b, c, d, kind, mid, _time(ts)) for a, b, c, d, kind, mid, ts in rows]

    def facts(self, ids: Collection[Identity]) -> StoredFacts:
        facts = StoredFacts()
        if not ids:
            return facts
        relation: dict[str, Relation] = {"ids": (IDS, sorted(ids))}
        queries = [self._format(q) for q in (IDENTITIES, COUNTS, IDENTIFIES)]
        identities, counts, identifies = self._select_many(queries, relation)
        for t, v, pid, first, last in identities:
            facts.identities[(t, v)] = (pid, _time(first), _time(last))
        for t, v, count in counts:
            facts.counts[(t, v)] = int(count)
        facts.identifies = [EventFacts(m, t, _time(ts), *rest) for m, t, ts, *rest in identifies]
        return facts

    def _select_many(
        self, queries: Sequence[str], relations: dict[str, Relation]
    ) -> list[list[tuple[Any, ...]]]:
        """Several reads of the same relations (a backend may pass them in once)."""
        return [self._select(sql, relations) for sql in queries]

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
RELATIONS = ("ids", "msgs", "gone", "moved", *_INSERT_TABLE)
