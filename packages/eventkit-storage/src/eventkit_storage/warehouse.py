"""Backend-independent pieces of the warehouse: view definitions, DDL, load job ids, metrics.

Both warehouses (BigQuery, :mod:`eventkit_storage.bigquery`; DuckDB, :mod:`eventkit_storage.duckdb`)
hold the same objects under the same names:

- ``raw_events`` (the table name is configurable): the columns of
  :data:`eventkit_storage.schema.EVENT_SCHEMA`, one row per row of every loaded file, duplicates
  included (at-least-once delivery can store one event in two files);
- ``_eventkit_loaded_files``: the ledger of loaded files (each file is loaded once);
- the views :data:`VIEW_NAMES`: ``events`` is ``raw_events`` deduplicated on ``message_id``
  (the row with the earliest ``received_at`` wins), ``tracks`` ... ``aliases`` are ``events``
  filtered by type; ``events`` carries ``profile_id`` and exposes ``properties``, ``traits`` and
  ``context`` as JSON (DuckDB's JSON type; JSON text in BigQuery, read with ``JSON_VALUE``);
- the identity tables :data:`IDENTITY_TABLES` (maintained by the identity pass,
  :mod:`eventkit_storage.identity`) and ``users``: one row per user_id with its profile's merged
  traits.

Views live beside the table (same dataset / schema) and refer to it by its full reference.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Sequence
from importlib import resources
from typing import Final, Literal

import pyarrow as pa
from eventkit_core.errors import ConfigurationError
from opentelemetry import metrics
from opentelemetry.metrics import Counter, MeterProvider

from eventkit_storage.schema import (
    BIGQUERY_TYPES,
    DEAD_LETTER_SCHEMA,
    EVENT_COLUMNS,
    EVENT_SCHEMA,
)

__all__ = [
    "DEAD_LETTERS_TABLE",
    "DEAD_LETTER_COLUMNS",
    "DEDUPE_ORDER",
    "DEFAULT_TABLE",
    "DELETIONS_COLUMNS",
    "DELETIONS_TABLE",
    "EVENT_VIEW_COLUMNS",
    "IDENTITY_FACTS_TABLE",
    "IDENTITY_TABLES",
    "LEDGER_TABLE",
    "TYPE_VIEWS",
    "USERS_COLUMNS",
    "VIEW_NAMES",
    "Dialect",
    "batch_load_job_id",
    "bigquery_ddl",
    "bigquery_ddl_template",
    "dedupe_order_sql",
    "duckdb_ddl",
    "duckdb_ddl_template",
    "migration_sql",
    "split_generation",
    "view_sql",
    "views_sql",
]

Dialect = Literal["bigquery", "duckdb"]

DEFAULT_TABLE: Final = "raw_events"
LEDGER_TABLE: Final = "_eventkit_loaded_files"
VIEW_NAMES: Final = (
    "events",
    "tracks",
    "identifies",
    "pages",
    "screens",
    "groups",
    "aliases",
    "users",
)
#: The per-type views over ``events`` and the event ``type`` each keeps.
TYPE_VIEWS: Final = {
    "tracks": "track",
    "identifies": "identify",
    "pages": "page",
    "screens": "screen",
    "groups": "group",
    "aliases": "alias",
}
#: Columns of the ``users`` view (Segment's users table): one row per user_id.
USERS_COLUMNS: Final = ("user_id", "profile_id", "traits", "first_seen", "last_seen")
#: Columns of ``events`` and the per-type views: the stored columns and the resolved profile.
EVENT_VIEW_COLUMNS: Final = (*EVENT_COLUMNS, "profile_id")
#: The JSON text columns the views expose as JSON.
VIEW_JSON_COLUMNS: Final = ("properties", "traits", "context", "extras")
#: Columns a raw table made before ``extras`` existed lacks (added by the migration).
ADDED_COLUMNS: Final = ("extras",)
#: Columns that were REQUIRED before and are NULLABLE now (relaxed by the migration).
RELAXED_COLUMNS: Final = ("payload",)
#: The order in which ``events`` picks one row per message_id: the earliest ``received_at``,
#: then every other column, so that the choice is deterministic whatever the rows hold.
DEDUPE_ORDER: Final = (
    "received_at",
    "timestamp",
    *(name for name in EVENT_COLUMNS if name not in ("message_id", "received_at", "timestamp")),
)

#: Internal: what the identity pass kept of each processed event (its progress marker too).
IDENTITY_FACTS_TABLE: Final = "_eventkit_identity_events"
#: The identity tables: name -> ((column, BigQuery type, mode), ...). ``JSON`` is JSON text
#: (STRING in BigQuery, JSON in DuckDB); ``REPEATED`` STRING is an array of strings.
#: The table dead-letter files load into: the dead-letter file columns (DEAD_LETTER_SCHEMA).
DEAD_LETTERS_TABLE: Final = "dead_letters"
DEAD_LETTER_COLUMNS: Final[tuple[tuple[str, str, str], ...]] = tuple(
    (
        f.name,
        "TIMESTAMP" if pa.types.is_timestamp(f.type) else "STRING",
        "NULLABLE" if f.nullable else "REQUIRED",
    )
    for f in DEAD_LETTER_SCHEMA
)

#: ``eventkit-loader forget`` records each request here: when, how much, never whose.
DELETIONS_TABLE: Final = "deletions"
DELETIONS_COLUMNS: Final[tuple[tuple[str, str, str], ...]] = (
    ("request_id", "STRING", "REQUIRED"),
    ("requested_at", "TIMESTAMP", "REQUIRED"),
    ("completed_at", "TIMESTAMP", "REQUIRED"),
    ("files_rewritten", "INT64", "REQUIRED"),
    ("rows_removed", "INT64", "REQUIRED"),
)

IDENTITY_TABLES: Final[dict[str, tuple[tuple[str, str, str], ...]]] = {
    "identity_edges": (
        ("id_type_1", "STRING", "REQUIRED"),
        ("id_value_1", "STRING", "REQUIRED"),
        ("id_type_2", "STRING", "REQUIRED"),
        ("id_value_2", "STRING", "REQUIRED"),
        ("kind", "STRING", "REQUIRED"),
        ("message_id", "STRING", "REQUIRED"),
        ("timestamp", "TIMESTAMP", "REQUIRED"),
    ),
    "identities": (
        ("id_type", "STRING", "REQUIRED"),
        ("id_value", "STRING", "REQUIRED"),
        ("profile_id", "STRING", "REQUIRED"),
        ("first_seen", "TIMESTAMP", "REQUIRED"),
        ("last_seen", "TIMESTAMP", "REQUIRED"),
    ),
    "profile_merges": (
        ("from_profile_id", "STRING", "REQUIRED"),
        ("into_profile_id", "STRING", "REQUIRED"),
        ("merged_at", "TIMESTAMP", "REQUIRED"),
        ("message_id", "STRING", "REQUIRED"),
    ),
    "identity_rejections": (
        ("id_type_1", "STRING", "REQUIRED"),
        ("id_value_1", "STRING", "REQUIRED"),
        ("id_type_2", "STRING", "NULLABLE"),
        ("id_value_2", "STRING", "NULLABLE"),
        ("rule", "STRING", "REQUIRED"),
        ("message_id", "STRING", "REQUIRED"),
        ("seen_at", "TIMESTAMP", "REQUIRED"),
    ),
    "profiles": (
        ("profile_id", "STRING", "REQUIRED"),
        ("user_id", "STRING", "NULLABLE"),
        ("anonymous_ids", "STRING", "REPEATED"),
        ("traits", "JSON", "REQUIRED"),
        ("first_seen", "TIMESTAMP", "REQUIRED"),
        ("last_seen", "TIMESTAMP", "REQUIRED"),
        ("event_count", "INT64", "REQUIRED"),
    ),
    IDENTITY_FACTS_TABLE: (
        ("message_id", "STRING", "REQUIRED"),
        ("type", "STRING", "REQUIRED"),
        ("timestamp", "TIMESTAMP", "REQUIRED"),
        ("id_type", "STRING", "NULLABLE"),
        ("id_value", "STRING", "NULLABLE"),
        ("traits", "JSON", "NULLABLE"),
    ),
}

JOB_ID_PREFIX: Final = "eventkit_load_"

_TABLE_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,1023}")
_DATASET_RE = re.compile(r"[A-Za-z0-9_]{1,1024}")
_PROJECT_RE = re.compile(r"[a-z][a-z0-9.:-]{0,62}[a-z0-9]")


def check_table_name(table: str) -> str:
    """``table`` if it is a plain table name (letters, digits, ``_``), else ConfigurationError."""
    reserved = (*VIEW_NAMES, LEDGER_TABLE, *IDENTITY_TABLES)
    if not _TABLE_RE.fullmatch(table) or table in reserved:
        raise ConfigurationError(
            f"warehouse table name {table!r} is invalid: use 1-1024 of A-Z, a-z, 0-9 and _, "
            f"starting with a letter or _, and not one of {reserved}"
        )
    return table


def check_dataset_name(dataset: str) -> str:
    if not _DATASET_RE.fullmatch(dataset):
        raise ConfigurationError(
            f"BigQuery dataset {dataset!r} is invalid: use 1-1024 of A-Z, a-z, 0-9 and _"
        )
    return dataset


def check_project_id(project: str) -> str:
    if not _PROJECT_RE.fullmatch(project):
        raise ConfigurationError(
            f"GCP project id {project!r} is invalid: use lower-case letters, digits and -, "
            "starting with a letter (e.g. my-project-123)"
        )
    return project


# --------------------------------------------------------------------------------------- views


def _quote(dialect: Dialect, table_ref: str) -> str:
    if dialect == "bigquery":
        return f"`{table_ref}`"
    return ".".join(f'"{part}"' for part in table_ref.split("."))


def _column(dialect: Dialect, name: str) -> str:
    return f'"{name}"' if dialect == "duckdb" else name


def _sibling(table_ref: str, name: str) -> str:
    head, _, _ = table_ref.rpartition(".")
    return f"{head}.{name}" if head else name


def view_sql(dialect: Dialect, table_ref: str, view: str) -> str:
    """The SELECT defining ``view`` (one of :data:`VIEW_NAMES`) in ``dialect``.

    ``table_ref`` is the unquoted reference of the raw table: ``project.dataset.raw_events`` in
    BigQuery, ``raw_events`` (or ``schema.raw_events``) in DuckDB. The other views are its siblings
    (``project.dataset.events``). Every view has the same columns in both dialects.
    """
    if dialect not in ("bigquery", "duckdb"):
        raise ConfigurationError(f"unknown SQL dialect {dialect!r}: use 'bigquery' or 'duckdb'")

    def cols(names: Iterable[str]) -> str:
        return ", ".join(_column(dialect, name) for name in names)

    events = _quote(dialect, _sibling(table_ref, "events"))
    identities = _quote(dialect, _sibling(table_ref, "identities"))
    if view == "events":
        return _events_view(dialect, table_ref, identities)
    if view in TYPE_VIEWS:
        return (
            f"SELECT {cols(EVENT_VIEW_COLUMNS)}\nFROM {events}\nWHERE type = '{TYPE_VIEWS[view]}'"
        )
    if view == "users":
        # Segment's users table: every user id the identity pass knows, with its profile's
        # merged traits (a user id stays a row after an alias joined it to another).
        profiles = _quote(dialect, _sibling(table_ref, "profiles"))
        return (
            "SELECT i.id_value AS user_id, i.profile_id, p.traits, i.first_seen, i.last_seen\n"
            f"FROM {identities} AS i\n"
            f"LEFT JOIN {profiles} AS p ON p.profile_id = i.profile_id\n"
            "WHERE i.id_type = 'user_id'"
        )
    raise ConfigurationError(f"unknown view {view!r}: use one of {VIEW_NAMES}")


def _events_view(dialect: Dialect, table_ref: str, identities: str) -> str:
    """One row per message_id: the earliest received_at; ties broken by the other columns so
    that the choice is deterministic. WHERE TRUE: older BigQuery wants one beside QUALIFY.
    profile_id: the profile of the event's user_id, else of its anonymous_id (the id the identity
    pass counts it under; a blocked user_id has no identity, so the anonymous id's profile)."""

    def out(name: str) -> str:
        column = f"e.{_column(dialect, name)}"
        if dialect == "duckdb" and name in VIEW_JSON_COLUMNS:
            return f"CAST({column} AS JSON) AS {_column(dialect, name)}"
        return column

    inner = ", ".join(_column(dialect, name) for name in EVENT_COLUMNS)
    return (
        f"SELECT {', '.join(out(name) for name in EVENT_COLUMNS)},\n"
        "  COALESCE(iu.profile_id, ia.profile_id) AS profile_id\n"
        f"FROM (\n  SELECT {inner}\n  FROM {_quote(dialect, table_ref)}\n  WHERE TRUE\n"
        "  QUALIFY ROW_NUMBER() OVER (\n    PARTITION BY message_id\n"
        f"    ORDER BY {dedupe_order_sql(dialect)}\n  ) = 1\n) AS e\n"
        f"LEFT JOIN {identities} AS iu\n"
        "  ON iu.id_type = 'user_id' AND iu.id_value = TRIM(e.user_id)\n"
        f"LEFT JOIN {identities} AS ia\n"
        "  ON ia.id_type = 'anonymous_id' AND ia.id_value = TRIM(e.anonymous_id)"
    )


def dedupe_order_sql(dialect: Dialect) -> str:
    """The ORDER BY list of the dedupe window (:data:`DEDUPE_ORDER`), for the SQL of ``dialect``."""
    return ", ".join(_column(dialect, name) for name in DEDUPE_ORDER)


def migration_sql(dialect: Dialect, table_ref: str) -> list[str]:
    """Statements that bring a raw table made by an older version to today's columns
    (``extras`` added, ``payload`` nullable); they change nothing on a current table."""
    table = _quote(dialect, table_ref)
    column_type = "STRING" if dialect == "bigquery" else "VARCHAR"
    statements = [
        f"ALTER TABLE {table} ADD COLUMN IF NOT EXISTS {_column(dialect, name)} {column_type}"
        for name in ADDED_COLUMNS
    ]
    statements += [
        f"ALTER TABLE {table} ALTER COLUMN {_column(dialect, name)} DROP NOT NULL"
        for name in RELAXED_COLUMNS
    ]
    return statements


def views_sql(dialect: Dialect, table_ref: str) -> dict[str, str]:
    """All views: ``{name: SELECT}`` in creation order (``events`` first)."""
    return {view: view_sql(dialect, table_ref, view) for view in VIEW_NAMES}


# ----------------------------------------------------------------------------------------- DDL


def _duckdb_type(name: str) -> str:
    return "TIMESTAMPTZ" if BIGQUERY_TYPES[name] == "TIMESTAMP" else "VARCHAR"


def _columns_ddl(type_of: dict[str, str], quote: bool) -> str:
    lines = []
    for field in EVENT_SCHEMA:
        name = f'"{field.name}"' if quote else field.name
        null = "" if field.nullable else " NOT NULL"
        lines.append(f"  {name} {type_of[field.name]}{null}")
    return ",\n".join(lines)


def _identity_columns(dialect: Dialect, columns: Iterable[tuple[str, str, str]]) -> str:
    lines = []
    for name, type_, mode in columns:
        if dialect == "bigquery":
            base = "STRING" if type_ == "JSON" else type_
            sql = f"ARRAY<{base}>" if mode == "REPEATED" else base
        else:
            base = {"STRING": "VARCHAR", "TIMESTAMP": "TIMESTAMPTZ", "INT64": "BIGINT"}.get(
                type_, type_
            )
            sql = f"{base}[]" if mode == "REPEATED" else base
        null = " NOT NULL" if mode == "REQUIRED" else ""
        lines.append(f"  {_column(dialect, name)} {sql}{null}")
    return ",\n".join(lines)


def _render_bigquery_ddl(project: str, dataset: str, table: str) -> str:
    base = f"{project}.{dataset}"
    table_ref = f"{base}.{table}"
    types = dict(BIGQUERY_TYPES)
    parts = [
        "-- eventkit warehouse for BigQuery: the raw table, the ledger of loaded files, the views.",
        "-- Generated by eventkit_storage.warehouse.bigquery_ddl(); safe to run again.",
        f"CREATE SCHEMA IF NOT EXISTS `{base}`;",
        "",
        f"CREATE TABLE IF NOT EXISTS `{table_ref}` (\n{_columns_ddl(types, quote=False)}\n)\n"
        "PARTITION BY DATE(timestamp)\n"
        "CLUSTER BY stream, type\n"
        "OPTIONS (description = 'eventkit events: one row per stored row; see the events view');",
        "",
        "-- A table made by an older version gets extras (a no-op otherwise). Its payload was",
        "-- REQUIRED: run this once on such a table (not safe to repeat: local-bigquery refuses",
        "-- it on a NULLABLE column); ensure_schema / `eventkit-loader create-table` do both:",
        *(
            f"{'-- ' if 'DROP NOT NULL' in statement else ''}{statement};"
            for statement in migration_sql("bigquery", table_ref)
        ),
        "",
        f"CREATE TABLE IF NOT EXISTS `{base}.{LEDGER_TABLE}` (\n{BIGQUERY_LEDGER_COLUMNS}\n)\n"
        "OPTIONS (description = 'eventkit: files loaded into the raw table (append-only)');",
    ]
    for name, columns in IDENTITY_TABLES.items():
        parts += [
            "",
            f"CREATE TABLE IF NOT EXISTS `{base}.{name}` (\n{_identity_columns('bigquery', columns)}\n)"
            f"\nOPTIONS (description = 'eventkit identity resolution: {name}');",
        ]
    parts += [
        "",
        f"CREATE TABLE IF NOT EXISTS `{base}.{DEAD_LETTERS_TABLE}` (\n"
        f"{_identity_columns('bigquery', DEAD_LETTER_COLUMNS)}\n)\n"
        "OPTIONS (description = 'eventkit dead letters: one row per stored dead letter');",
        "",
        f"CREATE TABLE IF NOT EXISTS `{base}.{DELETIONS_TABLE}` (\n"
        f"{_identity_columns('bigquery', DELETIONS_COLUMNS)}\n)\n"
        "OPTIONS (description = 'eventkit forget requests: no personal data');",
    ]
    for view, select in views_sql("bigquery", table_ref).items():
        parts += ["", f"CREATE OR REPLACE VIEW `{base}.{view}` AS\n{select};"]
    return "\n".join(parts) + "\n"


#: Columns of the BigQuery ledger (append-only). A file (uri, generation) is loaded once it has a
#: ``loaded`` row; otherwise its latest row holds its state: ``pending`` (the load job of the batch
#: ``job_id`` names was, or was about to be, submitted) or ``failed``. ``job_rows``: rows the whole
#: load job added (a job may load several files).
BIGQUERY_LEDGER_FIELDS: Final = (
    ("uri", "STRING", "REQUIRED"),
    ("generation", "STRING", "REQUIRED"),
    ("job_id", "STRING", "REQUIRED"),
    ("state", "STRING", "REQUIRED"),
    ("job_rows", "INT64", "NULLABLE"),
    ("recorded_at", "TIMESTAMP", "REQUIRED"),
)
BIGQUERY_LEDGER_COLUMNS: Final = ",\n".join(
    f"  {name} {type_}{' NOT NULL' if mode == 'REQUIRED' else ''}"
    for name, type_, mode in BIGQUERY_LEDGER_FIELDS
)


def bigquery_ddl(project: str, dataset: str, table: str = DEFAULT_TABLE) -> str:
    """The whole BigQuery schema as one script (``bq query --use_legacy_sql=false < file``).

    The same text, with ``{PROJECT_ID}``, ``{DATASET}`` and ``{TABLE}`` placeholders, ships as
    ``eventkit_storage/sql/bigquery.sql`` (see :func:`bigquery_ddl_template`).
    """
    return _render_bigquery_ddl(
        check_project_id(project), check_dataset_name(dataset), check_table_name(table)
    )


def bigquery_ddl_template() -> str:
    """The shipped ``sql/bigquery.sql``: :func:`bigquery_ddl` with placeholders."""
    return resources.files("eventkit_storage").joinpath("sql/bigquery.sql").read_text("utf-8")


def duckdb_ddl_template() -> str:
    """The shipped ``sql/duckdb.sql``: :func:`duckdb_ddl` with a ``{TABLE}`` placeholder."""
    return resources.files("eventkit_storage").joinpath("sql/duckdb.sql").read_text("utf-8")


def duckdb_ddl(table: str = DEFAULT_TABLE) -> str:
    """The DuckDB schema (tables if missing, views replaced); also shipped as ``sql/duckdb.sql``
    (with a ``{TABLE}`` placeholder)."""
    return _render_duckdb_ddl(check_table_name(table))


def _render_duckdb_ddl(table: str) -> str:
    types = {name: _duckdb_type(name) for name in EVENT_COLUMNS}
    parts = [
        f'CREATE TABLE IF NOT EXISTS "{table}" (\n{_columns_ddl(types, quote=True)}\n);',
        "-- A table made by an older version: add extras, let payload be null (no-ops otherwise).\n"
        + "\n".join(f"{statement};" for statement in migration_sql("duckdb", table)),
        f'CREATE TABLE IF NOT EXISTS "{LEDGER_TABLE}" (\n'
        "  uri VARCHAR PRIMARY KEY,\n"
        "  row_count BIGINT NOT NULL,\n"
        "  loaded_at TIMESTAMPTZ NOT NULL\n"
        ");",
    ]
    for name, columns in IDENTITY_TABLES.items():
        parts.append(
            f'CREATE TABLE IF NOT EXISTS "{name}" (\n{_identity_columns("duckdb", columns)}\n);'
        )
    parts.append(
        f'CREATE TABLE IF NOT EXISTS "{DEAD_LETTERS_TABLE}" (\n'
        f"{_identity_columns('duckdb', DEAD_LETTER_COLUMNS)}\n);"
    )
    parts.append(
        f'CREATE TABLE IF NOT EXISTS "{DELETIONS_TABLE}" (\n'
        f"{_identity_columns('duckdb', DELETIONS_COLUMNS)}\n);"
    )
    # Point lookups (profile, Profile API) by id and by profile: ART indexes (not unique ones:
    # a chunk may delete and re-insert the same keys in one transaction). Single-column: DuckDB
    # scans an index only for one equality filter, so lookups by id filter on id_value alone.
    parts += [
        'DROP INDEX IF EXISTS "identities_by_id";',
        'CREATE INDEX IF NOT EXISTS "identities_by_value" ON "identities" (id_value);',
        'CREATE INDEX IF NOT EXISTS "identities_by_profile" ON "identities" (profile_id);',
        'CREATE INDEX IF NOT EXISTS "profiles_by_id" ON "profiles" (profile_id);',
    ]
    for view, select in views_sql("duckdb", table).items():
        parts.append(f'CREATE OR REPLACE VIEW "{view}" AS\n{select};')
    return "\n\n".join(parts) + "\n"


# ------------------------------------------------------------------------------------- job ids


def split_generation(uri: str) -> tuple[str, str]:
    """``gs://b/o#123`` -> ``("gs://b/o", "123")``; without a ``#generation``: ``(uri, "")``.

    ``gs://bucket/object#generation`` is how GCS names one generation of an object.
    """
    head, sep, tail = uri.rpartition("#")
    if sep and tail.isdigit():
        return head, tail
    return uri, ""


def batch_load_job_id(files: Sequence[tuple[str, int | str]], attempt: int = 0) -> str:
    """The deterministic id of the load job for ``files`` (``(uri, generation)`` pairs).

    The order of ``files`` does not matter. Attempt ``n + 1`` is used after attempt ``n`` failed.
    """
    if not files:
        raise ConfigurationError("a load job needs at least one file")
    if attempt < 0:
        raise ConfigurationError(f"attempt must be >= 0, not {attempt}")
    lines = sorted(f"{uri}\n{generation}" for uri, generation in files)
    digest = hashlib.sha256(("\n\n".join(lines) + f"\n\nattempt={attempt}").encode()).hexdigest()
    return JOB_ID_PREFIX + digest


# ------------------------------------------------------------------------------------- metrics


class LoaderMetrics:
    """The warehouse loader's counters (OTel API: the app decides where they go)."""

    def __init__(self, backend: str, meter_provider: MeterProvider | None = None) -> None:
        from eventkit_storage import __version__

        meter = metrics.get_meter("eventkit_storage.warehouse", __version__, meter_provider)
        # Counters are exposed with a `_total` suffix by the Prometheus exporter; unit "" keeps
        # the exposed names stable (no unit suffix), as existing dashboards query them.
        self.files_processed: Counter = meter.create_counter(
            "eventkit_warehouse_loader_files_processed",
            unit="",
            description="Files loaded to warehouse",
        )
        self.errors: Counter = meter.create_counter(
            "eventkit_warehouse_loader_errors", unit="", description="Loader errors"
        )
        self._attributes = {"warehouse": backend}

    def loaded(self, files: int) -> None:
        if files:
            self.files_processed.add(files, self._attributes)

    def error(self, count: int = 1) -> None:
        if count:
            self.errors.add(count, self._attributes)
