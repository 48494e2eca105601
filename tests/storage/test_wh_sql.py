"""Backend-independent warehouse pieces: job ids, DDL, views, shipped SQL files."""

from __future__ import annotations

import re
from importlib import resources

import duckdb
import pytest
from eventkit_core import ConfigurationError
from eventkit_storage import warehouse
from eventkit_storage.schema import DEAD_LETTER_SCHEMA, EVENT_COLUMNS
from eventkit_storage.warehouse import (
    IDENTITY_TABLES,
    VIEW_NAMES,
    batch_load_job_id,
    bigquery_ddl,
    bigquery_ddl_template,
    duckdb_ddl,
    duckdb_ddl_template,
    split_generation,
    view_sql,
    views_sql,
)

JOB_ID = re.compile(r"eventkit_load_[0-9a-f]{64}")


def test_load_job_ids_are_deterministic_and_valid_bigquery_job_ids() -> None:
    uri = "gs://b/events/tracks/2024/05/01/12/1-9.parquet"
    job_id = batch_load_job_id([(uri, 1714564800000000)])
    assert JOB_ID.fullmatch(job_id)
    assert job_id == batch_load_job_id([(uri, "1714564800000000")], 0)
    others = {batch_load_job_id([(uri, 2)]), batch_load_job_id([(uri, 1714564800000000)], 1)}
    assert len({job_id, *others}) == 3
    assert batch_load_job_id([(uri + "x", 1714564800000000)]) != job_id


def test_batch_job_ids_ignore_order() -> None:
    a, b = ("gs://b/a.parquet", ""), ("gs://b/b.parquet", "7")
    assert batch_load_job_id([a, b]) == batch_load_job_id([b, a])
    assert batch_load_job_id([a, b], 1) != batch_load_job_id([a, b])
    assert batch_load_job_id([a, b]) != batch_load_job_id([a])
    with pytest.raises(ValueError):
        batch_load_job_id([])
    with pytest.raises(ValueError):
        batch_load_job_id([("gs://b/a", "")], -1)


def test_split_generation() -> None:
    assert split_generation("gs://b/o.parquet#123") == ("gs://b/o.parquet", "123")
    assert split_generation("gs://b/o.parquet") == ("gs://b/o.parquet", "")
    assert split_generation("gs://b/o#x.parquet") == ("gs://b/o#x.parquet", "")


def test_the_shipped_sql_files_are_the_generated_ddl() -> None:
    shipped = resources.files("eventkit_storage").joinpath("sql")
    assert shipped.joinpath("bigquery.sql").read_text("utf-8") == bigquery_ddl_template()
    assert bigquery_ddl_template() == warehouse._render_bigquery_ddl(
        "{PROJECT_ID}", "{DATASET}", "{TABLE}"
    )
    assert duckdb_ddl_template() == warehouse._render_duckdb_ddl("{TABLE}")
    filled = (
        bigquery_ddl_template()
        .replace("{PROJECT_ID}", "my-project")
        .replace("{DATASET}", "analytics")
        .replace("{TABLE}", "raw_events")
    )
    assert filled == bigquery_ddl("my-project", "analytics")
    assert duckdb_ddl_template().replace("{TABLE}", "t1") == duckdb_ddl("t1")


def test_bigquery_ddl_partitions_clusters_and_defines_every_view() -> None:
    ddl = bigquery_ddl("my-project", "analytics", "raw")
    assert "CREATE TABLE IF NOT EXISTS `my-project.analytics.raw`" in ddl
    assert "PARTITION BY DATE(timestamp)\nCLUSTER BY stream, type" in ddl
    assert "message_id STRING NOT NULL" in ddl
    assert "user_id STRING,\n" in ddl
    assert "received_at TIMESTAMP NOT NULL" in ddl
    assert "`my-project.analytics._eventkit_loaded_files`" in ddl
    for view in VIEW_NAMES:
        assert f"CREATE OR REPLACE VIEW `my-project.analytics.{view}` AS" in ddl
    assert (
        "FROM `my-project.analytics.raw`"
        in views_sql("bigquery", "my-project.analytics.raw")["events"]
    )
    assert "FROM `my-project.analytics.events`" in view_sql(
        "bigquery", "my-project.analytics.raw", "tracks"
    )


def test_the_duckdb_ddl_runs_twice_and_gives_the_contract_names() -> None:
    con = duckdb.connect(":memory:")
    con.execute(duckdb_ddl())
    con.execute(duckdb_ddl())
    tables = {row[0] for row in con.execute("SELECT table_name FROM duckdb_tables()").fetchall()}
    views = {
        row[0]
        for row in con.execute("SELECT view_name FROM duckdb_views() WHERE NOT internal").fetchall()
    }
    assert tables == {
        "raw_events",
        "_eventkit_loaded_files",
        "dead_letters",
        "deletions",
        *IDENTITY_TABLES,
    }
    assert views == set(VIEW_NAMES)
    columns = [row[0] for row in con.execute("DESCRIBE raw_events").fetchall()]
    assert columns == list(EVENT_COLUMNS)
    dead = [row[0] for row in con.execute("DESCRIBE dead_letters").fetchall()]
    assert dead == list(DEAD_LETTER_SCHEMA.names)


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda: bigquery_ddl("My_Project", "d"), "project id"),
        (lambda: bigquery_ddl("p-1", "a-b"), "dataset"),
        (lambda: bigquery_ddl("p-1", "d", "x`; DROP"), "table name"),
        (lambda: duckdb_ddl("events"), "table name"),  # a view's name
        (lambda: view_sql("duckdb", "raw_events", "sessions"), "unknown view"),
        (lambda: view_sql("postgres", "raw_events", "events"), "dialect"),  # type: ignore[arg-type]
    ],
)
def test_bad_names_are_configuration_errors(call: object, match: str) -> None:
    assert callable(call)
    with pytest.raises(ConfigurationError, match=match) as raised:
        call()
    assert isinstance(raised.value, ValueError)
