"""Which warehouse rows belong to a forgotten person, and deleting them: DuckDB and BigQuery.

The rules are written once, as data (:func:`person_rules`: per table, the columns whose value
is one of the person's ids or message ids); each warehouse renders them in its own SQL. DuckDB
deletes every table in one transaction. BigQuery has no multi-table transaction here (and its
emulator none at all), so its deletes run one table at a time, ``identities`` last: a run killed
midway still resolves the person from ``identities`` when rerun (see ``forget._resolve``).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb
from eventkit_core import utcnow
from eventkit_storage.warehouse import (
    DEAD_LETTERS_TABLE,
    DELETIONS_COLUMNS,
    DELETIONS_TABLE,
    IDENTITY_TABLES,
)

Identity = tuple[str, str]


@dataclass(frozen=True)
class Match:
    """``expr`` (SQL over the table's columns, the same in both dialects) is one of ``values``."""

    expr: str
    values: tuple[str, ...]


@dataclass(frozen=True)
class Rule:
    """A row of ``table`` is the person's when any match holds. ``contains``: dead letters
    without a message id match when their payload holds one of these strings (JSON-quoted ids:
    may over-match)."""

    table: str
    matches: tuple[Match, ...]
    contains: tuple[str, ...] = ()


def _pair(a: str, b: str) -> str:
    return f"CONCAT({a}, ':', {b})"


def person_rules(ids: Iterable[Identity], messages: Sequence[str]) -> list[Rule]:
    """The rules for every table holding the person's rows, ``identities`` last."""
    pairs = sorted(set(ids))
    users = tuple(v for t, v in pairs if t == "user_id")
    anons = tuple(v for t, v in pairs if t == "anonymous_id")
    profiles = tuple(v for t, v in pairs if t == "profile_id")
    keys = tuple(f"{t}:{v}" for t, v in pairs)
    msgs = tuple(messages)
    rules = [
        Rule(
            "raw_events",
            (Match("user_id", users), Match("anonymous_id", anons), Match("message_id", msgs)),
        ),
        Rule(
            DEAD_LETTERS_TABLE,
            (Match("message_id", msgs),),
            tuple(json.dumps(v) for _, v in pairs),
        ),
        Rule(
            "identity_edges",
            (
                Match(_pair("id_type_1", "id_value_1"), keys),
                Match(_pair("id_type_2", "id_value_2"), keys),
                Match("message_id", msgs),
            ),
        ),
        Rule(
            "identity_rejections",
            (Match(_pair("id_type_1", "id_value_1"), keys), Match("message_id", msgs)),
        ),
        Rule(
            "profile_merges",
            (
                Match("from_profile_id", profiles),
                Match("into_profile_id", profiles),
                Match("message_id", msgs),
            ),
        ),
    ]
    named = {r.table for r in rules} | {"profiles", "identities"}
    for table in IDENTITY_TABLES:  # the per-event facts: id pairs and message ids
        if table not in named:
            pair = Match(_pair("id_type", "id_value"), keys)
            rules.append(Rule(table, (pair, Match("message_id", msgs))))
    rules.append(Rule("profiles", (Match("profile_id", profiles),)))
    rules.append(
        Rule(
            "identities", (Match(_pair("id_type", "id_value"), keys), Match("profile_id", profiles))
        )
    )
    return rules


def _duckdb_where(rule: Rule) -> tuple[str, list[Any]]:
    parts = [f"list_contains(?, {m.expr})" for m in rule.matches if m.values]
    params: list[Any] = [list(m.values) for m in rule.matches if m.values]
    if rule.contains:
        likes = " OR ".join("contains(payload, ?)" for _ in rule.contains)
        parts.append(f"(message_id IS NULL AND ({likes}))")
        params += list(rule.contains)
    return " OR ".join(parts) or "false", params


def duckdb_person_rows(
    path: Path, ids: list[Identity], messages: list[str], *, delete: bool
) -> dict[str, int]:
    """Count (and with ``delete``, delete) the person's rows: all tables or none."""
    counts: dict[str, int] = {}
    con = duckdb.connect(str(path))
    try:
        present = {
            r[0] for r in con.execute("SELECT table_name FROM information_schema.tables").fetchall()
        }
        con.execute("BEGIN")  # all tables or none: a rerun must still find the profile
        for rule in person_rules(ids, messages):
            if rule.table not in present:
                continue
            where, params = _duckdb_where(rule)
            row = con.execute(f'SELECT count(*) FROM "{rule.table}" WHERE {where}', params)
            found = row.fetchone()
            counts[rule.table] = int(found[0]) if found else 0
            if delete and counts[rule.table]:
                con.execute(f'DELETE FROM "{rule.table}" WHERE {where}', params)
        con.execute("COMMIT")
    finally:
        con.close()
    return counts


def duckdb_record(path: Path, request_id: str, requested: Any, files: int, rows: int) -> None:
    con = duckdb.connect(str(path))
    try:
        columns = ", ".join(f"{n} {_DUCKDB_TYPES[t]} NOT NULL" for n, t, _ in DELETIONS_COLUMNS)
        con.execute(f'CREATE TABLE IF NOT EXISTS "{DELETIONS_TABLE}" ({columns})')
        con.execute(
            f'INSERT INTO "{DELETIONS_TABLE}" VALUES (?, ?, ?, ?, ?)',
            [request_id, requested, utcnow(), files, rows],
        )
    finally:
        con.close()


_DUCKDB_TYPES = {"STRING": "VARCHAR", "TIMESTAMP": "TIMESTAMPTZ", "INT64": "BIGINT"}


def _bigquery_where(rule: Rule) -> tuple[str, list[Any]]:
    from google.cloud import bigquery

    parts: list[str] = []
    params: list[Any] = []
    for match in rule.matches:
        if match.values:
            name = f"p{len(params)}"
            parts.append(f"{match.expr} IN UNNEST(@{name})")
            params.append(bigquery.ArrayQueryParameter(name, "STRING", list(match.values)))
    likes: list[str] = []
    for text in rule.contains:
        name = f"p{len(params)}"
        likes.append(f"STRPOS(payload, @{name}) > 0")
        params.append(bigquery.ScalarQueryParameter(name, "STRING", text))
    if likes:
        parts.append(f"(message_id IS NULL AND ({' OR '.join(likes)}))")
    return " OR ".join(parts) or "FALSE", params


def bigquery_person_rows(
    loader: Any, ids: list[Identity], messages: list[str], *, delete: bool
) -> dict[str, int]:
    """Count (and with ``delete``, delete) the person's rows, one table at a time, in the
    order of :func:`person_rules` (``identities`` last)."""
    counts: dict[str, int] = {}
    for rule in person_rules(ids, messages):
        where, params = _bigquery_where(rule)
        ref = f"`{loader.dataset_ref}.{rule.table}`"
        rows = loader._run_query(f"SELECT count(*) AS n FROM {ref} WHERE {where}", params)
        counts[rule.table] = int(rows[0]["n"]) if rows else 0
        if delete and counts[rule.table]:
            loader._run_query(f"DELETE FROM {ref} WHERE {where}", params)
    return counts


def bigquery_record(loader: Any, request_id: str, requested: Any, files: int, rows: int) -> None:
    from google.cloud import bigquery

    ref = f"{loader.dataset_ref}.{DELETIONS_TABLE}"
    schema = [bigquery.SchemaField(n, t, mode=m) for n, t, m in DELETIONS_COLUMNS]
    loader.client.create_table(bigquery.Table(ref, schema=schema), exists_ok=True)
    values = [
        bigquery.ScalarQueryParameter("request_id", "STRING", request_id),
        bigquery.ScalarQueryParameter("requested_at", "TIMESTAMP", requested),
        bigquery.ScalarQueryParameter("completed_at", "TIMESTAMP", utcnow()),
        bigquery.ScalarQueryParameter("files", "INT64", files),
        bigquery.ScalarQueryParameter("rows", "INT64", rows),
    ]
    loader._run_query(
        f"INSERT INTO `{ref}` (request_id, requested_at, completed_at, files_rewritten, "
        "rows_removed) VALUES (@request_id, @requested_at, @completed_at, @files, @rows)",
        values,
    )
