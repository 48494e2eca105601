"""Files and tables of the layout before ``extras`` (``payload`` required, no ``extras``) keep
loading and querying, in DuckDB and in BigQuery (the emulator).

An old warehouse holds rows an older version loaded; the new loader migrates the raw table
(``extras`` added, ``payload`` nullable), loads old-layout files still waiting and new files,
and the ``events`` view serves all of them; every row rebuilds its normalised event.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from eventkit_core import TypedEvent
from eventkit_storage import EVENT_SCHEMA
from eventkit_storage.duckdb import DuckDBWarehouseLoader
from eventkit_storage.extras import normalised_event
from eventkit_storage.parquet import events_to_table, read_events, table_to_parquet_bytes
from google.cloud import bigquery

from tests.emulators import BigQueryEmulator, short_retry
from tests.storage.test_st_extras import adapted, as_json, expected
from tests.storage.test_wh_conformance import BigQueryBackend

#: The raw table and file layout before ``extras``: ``payload`` (the whole object) required.
OLD_SCHEMA = pa.schema(
    [
        field.with_nullable(False) if field.name == "payload" else field
        for field in EVENT_SCHEMA
        if field.name != "extras"
    ]
)
OLD_DDL = Path(__file__).with_name("old_layout_duckdb.sql")


def old_file(events: list[TypedEvent]) -> bytes:
    """Parquet bytes as an older version wrote them."""
    table = events_to_table(events, payload="full").drop_columns(["extras"]).cast(OLD_SCHEMA)
    data = table_to_parquet_bytes(table)
    assert "extras" not in pq.ParquetFile(pa.BufferReader(data)).schema_arrow.names
    return data


def split() -> tuple[list[TypedEvent], list[TypedEvent], list[TypedEvent]]:
    """(loaded by the old version, old-layout file loaded by the new one, new file)."""
    events = adapted()
    third = len(events) // 3
    return events[:third], events[third : 2 * third], events[2 * third :]


def check_rows(rows: list[dict[str, Any]], events: list[TypedEvent]) -> None:
    by_id = {row["message_id"]: row for row in rows}
    assert sorted(by_id) == sorted(e.message_id for e in events)
    for event in events:
        assert as_json(normalised_event(by_id[event.message_id])) == as_json(expected(event))


def test_an_old_layout_file_reads_with_todays_schema() -> None:
    events = adapted()
    table = read_events(old_file(events))
    assert table.schema.equals(EVENT_SCHEMA)
    assert table.column("extras").null_count == len(events)
    check_rows(table.to_pylist(), events)


async def test_duckdb_migrates_an_old_table_and_loads_old_and_new_files(tmp_path: Path) -> None:
    import duckdb

    database = tmp_path / "warehouse.duckdb"
    before, old_pending, new = split()
    (tmp_path / "before.parquet").write_bytes(old_file(before))
    (tmp_path / "old.parquet").write_bytes(old_file(old_pending))
    with duckdb.connect(str(database)) as con:  # what the older version made and loaded
        con.execute(OLD_DDL.read_text("utf-8").replace("{TABLE}", "raw_events"))
        con.execute(
            "INSERT INTO raw_events SELECT * FROM read_parquet(?)",
            [str(tmp_path / "before.parquet")],
        )
        con.execute(
            "INSERT INTO _eventkit_loaded_files VALUES (?, ?, now())",
            [(tmp_path / "before.parquet").as_uri(), len(before)],
        )
        assert "extras" not in [row[0] for row in con.execute("DESCRIBE raw_events").fetchall()]
    (tmp_path / "new.parquet").write_bytes(table_to_parquet_bytes(events_to_table(new)))

    loader = DuckDBWarehouseLoader(database)
    uris = [(tmp_path / name).as_uri() for name in ("before.parquet", "old.parquet", "new.parquet")]
    report = await loader.load_files(uris)

    assert report.skipped == (uris[0],)  # loaded by the older version
    assert report.loaded == tuple(uris[1:])
    assert report.rows == len(old_pending) + len(new)
    _, described = loader.query("DESCRIBE raw_events")
    nullable = {row[0]: row[2] for row in described}
    assert (nullable["extras"], nullable["payload"]) == ("YES", "YES")
    for relation in ("raw_events", "events"):
        names, rows = loader.query(f"SELECT * FROM {relation}")
        check_rows([dict(zip(names, row, strict=True)) for row in rows], before + old_pending + new)
    _, counts = loader.query(
        "SELECT count(payload), count(extras) FROM events WHERE message_id IN "
        f"({', '.join(repr(e.message_id) for e in new)})"
    )
    assert counts[0][0] == 0  # new rows: no payload (the default)


async def test_duckdb_ensure_schema_migrates_an_old_table(tmp_path: Path) -> None:
    import duckdb

    database = tmp_path / "warehouse.duckdb"
    with duckdb.connect(str(database)) as con:
        con.execute(OLD_DDL.read_text("utf-8").replace("{TABLE}", "raw_events"))
    loader = DuckDBWarehouseLoader(database)
    await loader.ensure_schema()  # what `eventkit-loader create-table` runs
    await loader.ensure_schema()  # and again: nothing left to change
    _, described = loader.query("DESCRIBE raw_events")
    assert {row[0]: row[2] for row in described}["payload"] == "YES"
    names, _ = loader.query("SELECT * FROM events LIMIT 0")
    assert names[-3:] == ["payload", "extras", "profile_id"]


@pytest.fixture
def backend(
    bigquery_emulator: BigQueryEmulator, gcs_bucket: str, bigquery_dataset: str
) -> Iterator[BigQueryBackend]:
    chosen = BigQueryBackend(bigquery_emulator, gcs_bucket, bigquery_dataset)
    with contextlib.closing(chosen.client):
        yield chosen


def _old_bigquery_schema() -> list[bigquery.SchemaField]:
    return [
        bigquery.SchemaField(
            f.name,
            "TIMESTAMP" if pa.types.is_timestamp(f.type) else "STRING",
            mode="NULLABLE" if f.nullable else "REQUIRED",
        )
        for f in OLD_SCHEMA
    ]


@pytest.mark.integration
async def test_bigquery_migrates_an_old_table_and_loads_old_and_new_files(
    backend: BigQueryBackend,
) -> None:
    client, loader = backend.client, backend.loader
    before, old_pending, new = split()
    client.create_dataset(loader.dataset_ref, exists_ok=True, retry=short_retry())
    client.create_table(
        bigquery.Table(loader.table_ref, schema=_old_bigquery_schema()), retry=short_retry()
    )
    old_loaded = backend.put_bytes("x/2024/05/01/11/before.parquet", old_file(before))
    client.load_table_from_uri(
        old_loaded,
        loader.table_ref,
        job_config=bigquery.LoadJobConfig(source_format=bigquery.SourceFormat.PARQUET),
        retry=short_retry(),
    ).result(timeout=60)

    await loader.ensure_schema()
    modes = {f.name: f.mode for f in client.get_table(loader.table_ref).schema}
    assert (modes["extras"], modes["payload"]) == ("NULLABLE", "NULLABLE")
    await loader.ensure_schema()  # again: nothing left to change
    # Written in the hour before the upgrade and after it; both wait for this pass.
    old = backend.put_bytes("x/2024/05/01/12/old.parquet", old_file(old_pending))
    fresh = backend.put_bytes(
        "x/2024/05/01/13/new.parquet", table_to_parquet_bytes(events_to_table(new))
    )
    report = await loader.load_files([old, fresh])

    assert set(report.loaded) == {old, fresh}
    assert report.rows == len(old_pending) + len(new)
    job = client.query(f"SELECT * FROM `{loader.dataset_ref}.events`", retry=short_retry())
    rows = [dict(row.items()) for row in job.result(timeout=60)]
    check_rows(rows, before + old_pending + new)
