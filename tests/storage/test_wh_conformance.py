"""Every WarehouseLoader backend through the same tests: DuckDB (local) and BigQuery (emulators).

The BigQuery backend runs against local-bigquery reading gs:// objects uploaded to fake-gcs-server
(``bigquery_emulator``, ``gcs_bucket``, ``bigquery_dataset`` fixtures of tests/conftest.py).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import signal
import subprocess
import sys
import textwrap
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Protocol

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from eventkit_core import LoadReport, WarehouseLoader
from eventkit_storage.schema import EVENT_COLUMNS, EVENT_SCHEMA
from eventkit_storage.warehouse import (
    EVENT_VIEW_COLUMNS,
    USERS_COLUMNS,
    VIEW_NAMES,
    batch_load_job_id,
)
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader

T0 = dt.datetime(2024, 5, 1, 12, 0, tzinfo=dt.UTC)


def at(seconds: float) -> dt.datetime:
    return T0 + dt.timedelta(seconds=seconds)


def event_row(
    message_id: str,
    type_: str = "track",
    *,
    received_at: dt.datetime = T0,
    timestamp: dt.datetime | None = None,
    user_id: str | None = None,
    traits: dict[str, Any] | None = None,
    event: str | None = None,
    properties: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """One row of EVENT_SCHEMA."""
    streams = {"identify": "users", "track": "events", "page": "pages", "screen": "screens"}
    payload: dict[str, Any] = {"messageId": message_id, "type": type_}
    if user_id is not None:
        payload["userId"] = user_id
    return {
        "message_id": message_id,
        "type": type_,
        "stream": streams.get(type_, type_ + "s"),
        "user_id": user_id,
        "anonymous_id": None if user_id else f"anon-{message_id}",
        "event": event if event is not None else ("Clicked" if type_ == "track" else None),
        "name": "Home" if type_ in ("page", "screen") else None,
        "group_id": "g1" if type_ == "group" else None,
        "previous_id": "old-id" if type_ == "alias" else None,
        "timestamp": timestamp or received_at,
        "original_timestamp": None,
        "sent_at": None,
        "received_at": received_at,
        "properties": json.dumps(properties) if properties is not None else None,
        "traits": json.dumps(traits) if traits is not None else None,
        "context": "{}",
        "integrations": None,
        "payload": json.dumps(payload),
    }


def event_table(rows: list[dict[str, Any]]) -> pa.Table:
    return pa.Table.from_pylist(rows, schema=EVENT_SCHEMA)


def parquet_bytes(table: pa.Table) -> bytes:
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink)
    return bytes(sink.getvalue().to_pybytes())


def counter_values(reader: InMemoryMetricReader) -> dict[str, int]:
    """Sum of each counter's data points."""
    data = reader.get_metrics_data()
    totals: dict[str, int] = {}
    if data is None:
        return totals
    for resource in data.resource_metrics:
        for scope in resource.scope_metrics:
            for metric in scope.metrics:
                points = getattr(metric.data, "data_points", ())
                totals[metric.name] = sum(int(p.value) for p in points)
    return totals


class Backend(Protocol):
    """What the conformance tests need from a backend, beside its loader."""

    name: str
    loader: Any  # a WarehouseLoader with loaded_files()
    metrics: InMemoryMetricReader

    def put(self, name: str, table: pa.Table) -> str: ...  # store a file, return its URI

    def put_bytes(self, name: str, data: bytes) -> str: ...

    def rows(self, relation: str, columns: str, order_by: str) -> list[tuple[Any, ...]]: ...

    def columns(self, relation: str) -> list[str]: ...

    def simulate_killed_load(self, uris: list[str]) -> None:
        """Load ``uris`` the way a loader killed after starting its job and before recording
        it in the ledger would have left them."""


class DuckDBBackend:
    name = "duckdb"

    def __init__(self, root: Path) -> None:
        from eventkit_storage.duckdb import DuckDBWarehouseLoader

        self.root = root
        self.metrics = InMemoryMetricReader()
        self.database = root / "warehouse.duckdb"
        self.loader = DuckDBWarehouseLoader(
            self.database, meter_provider=MeterProvider(metric_readers=[self.metrics])
        )

    def put_bytes(self, name: str, data: bytes) -> str:
        path = self.root / "events" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        return path.as_uri()

    def put(self, name: str, table: pa.Table) -> str:
        return self.put_bytes(name, parquet_bytes(table))

    def rows(self, relation: str, columns: str, order_by: str) -> list[tuple[Any, ...]]:
        _, rows = self.loader.query(f'SELECT {columns} FROM "{relation}" ORDER BY {order_by}')
        return rows

    def columns(self, relation: str) -> list[str]:
        names, _ = self.loader.query(f'SELECT * FROM "{relation}" LIMIT 0')
        return names

    def simulate_killed_load(self, uris: list[str]) -> None:
        # A real loader process, SIGKILLed after inserting the rows of its first file and before
        # its transaction commits (in place of the ledger insert).
        code = textwrap.dedent(
            f"""
            import os, signal, sys
            from eventkit_storage.duckdb import DuckDBWarehouseLoader

            class Killed(DuckDBWarehouseLoader):
                def _record_loaded(self, con, key, count):
                    assert count > 0
                    os.kill(os.getpid(), signal.SIGKILL)

            import asyncio
            asyncio.run(Killed({str(self.database)!r}).load_files({uris!r}))
            sys.exit(3)
            """
        )
        done = subprocess.run([sys.executable, "-c", code], capture_output=True, timeout=120)
        assert done.returncode == -signal.SIGKILL, done.stderr.decode()


class BigQueryBackend:
    name = "bigquery"

    def __init__(self, emulator: Any, bucket: str, dataset: str) -> None:
        from eventkit_storage.bigquery import BigQueryWarehouseLoader

        self.emulator = emulator
        self.bucket = bucket
        self.dataset = dataset
        self.client = emulator.client()
        self.metrics = InMemoryMetricReader()
        self.loader = BigQueryWarehouseLoader(
            emulator.project,
            dataset,
            client=self.client,
            job_timeout=60.0,
            retry_deadline=20.0,
            meter_provider=MeterProvider(metric_readers=[self.metrics]),
        )

    def put_bytes(self, name: str, data: bytes) -> str:
        path = f"events/{name}"
        blob = self.emulator.gcs.client().bucket(self.bucket).blob(path)
        blob.upload_from_string(data, content_type="application/octet-stream")
        return f"gs://{self.bucket}/{path}"

    def put(self, name: str, table: pa.Table) -> str:
        return self.put_bytes(name, parquet_bytes(table))

    def _ref(self, relation: str) -> str:
        return f"`{self.emulator.project}.{self.dataset}.{relation}`"

    def rows(self, relation: str, columns: str, order_by: str) -> list[tuple[Any, ...]]:
        from tests.emulators import short_retry

        job = self.client.query(
            f"SELECT {columns} FROM {self._ref(relation)} ORDER BY {order_by}",
            retry=short_retry(),
            job_retry=None,
        )
        return [tuple(row.values()) for row in job.result(timeout=60)]

    def columns(self, relation: str) -> list[str]:
        from tests.emulators import short_retry

        job = self.client.query(
            f"SELECT * FROM {self._ref(relation)} LIMIT 0", retry=short_retry(), job_retry=None
        )
        return [field.name for field in job.result(timeout=60).schema]

    def simulate_killed_load(self, uris: list[str]) -> None:
        # The load job a loader would have started for these files (same deterministic id),
        # completed, with nothing written to the ledger.
        from google.cloud import bigquery

        from tests.emulators import short_retry

        job = self.client.load_table_from_uri(
            uris,
            self.loader.table_ref,
            job_id=batch_load_job_id([(uri, "") for uri in uris]),
            job_config=bigquery.LoadJobConfig(
                source_format=bigquery.SourceFormat.PARQUET,
                write_disposition=bigquery.WriteDisposition.WRITE_APPEND,
            ),
            retry=short_retry(),
        )
        job.result(timeout=60)
        assert job.output_rows


@pytest.fixture(
    params=["duckdb", pytest.param("bigquery", marks=pytest.mark.integration)],
)
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    if request.param == "duckdb":
        yield DuckDBBackend(tmp_path)
        return
    emulator = request.getfixturevalue("bigquery_emulator")
    bucket = request.getfixturevalue("gcs_bucket")
    dataset = request.getfixturevalue("bigquery_dataset")
    chosen = BigQueryBackend(emulator, bucket, dataset)
    with contextlib.closing(chosen.client):
        yield chosen


def message_ids(backend: Backend, relation: str) -> list[str]:
    return [str(row[0]) for row in backend.rows(relation, "message_id", "message_id")]


def unique_name(prefix: str = "f") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}.parquet"


# ------------------------------------------------------------------------------------------ tests


async def test_is_a_warehouse_loader(backend: Backend) -> None:
    assert isinstance(backend.loader, WarehouseLoader)
    assert backend.loader.health_check() is True


async def test_ensure_schema_is_idempotent_and_creates_every_view(backend: Backend) -> None:
    await backend.loader.ensure_schema()
    await backend.loader.ensure_schema()
    assert backend.columns("raw_events") == list(EVENT_COLUMNS)
    for view in VIEW_NAMES:
        expected = USERS_COLUMNS if view == "users" else EVENT_VIEW_COLUMNS
        assert backend.columns(view) == list(expected), view
        assert backend.rows(view, "*", "1") == []
    assert backend.loader.loaded_files() == set()


async def test_load_files_loads_every_row_and_records_the_files(backend: Backend) -> None:
    await backend.loader.ensure_schema()
    first = backend.put("2024/05/01/12/a.parquet", event_table([event_row("m1"), event_row("m2")]))
    second = backend.put("2024/05/01/12/b.parquet", event_table([event_row("m3", "page")]))

    report = await backend.loader.load_files([first, second])

    assert report == LoadReport(loaded=(first, second), rows=3)
    assert message_ids(backend, "raw_events") == ["m1", "m2", "m3"]
    assert backend.loader.loaded_files() == {first, second}
    row = backend.rows("raw_events", "message_id, type, stream, received_at", "message_id")[2]
    assert row == ("m3", "page", "pages", T0)
    assert counter_values(backend.metrics).get("eventkit_warehouse_loader_files_processed") == 2


async def test_load_files_without_ensure_schema_creates_it(backend: Backend) -> None:
    uri = backend.put(unique_name(), event_table([event_row("m1")]))
    report = await backend.loader.load_files([uri])
    assert report.loaded == (uri,)
    assert message_ids(backend, "events") == ["m1"]


async def test_loading_the_same_files_again_adds_no_rows(backend: Backend) -> None:
    await backend.loader.ensure_schema()
    first = backend.put(unique_name(), event_table([event_row("m1"), event_row("m2")]))
    second = backend.put(unique_name(), event_table([event_row("m3")]))

    assert (await backend.loader.load_files([first])).loaded == (first,)
    again = await backend.loader.load_files([first, second, first])

    assert again.loaded == (second,)
    assert set(again.skipped) == {first}
    assert again.rows == 1
    third = await backend.loader.load_files([first, second])
    assert third == LoadReport(skipped=(first, second))
    assert message_ids(backend, "raw_events") == ["m1", "m2", "m3"]
    assert len(backend.loader.loaded_files()) == 2


async def test_a_kill_between_job_start_and_ledger_update_loads_each_row_once(
    backend: Backend,
) -> None:
    await backend.loader.ensure_schema()
    uris = [
        backend.put(unique_name(), event_table([event_row("m1"), event_row("m2")])),
        backend.put(unique_name(), event_table([event_row("m3")])),
    ]
    backend.simulate_killed_load(uris)
    assert backend.loader.loaded_files() == set()

    report = await backend.loader.load_files(uris)

    assert set(report.loaded) == set(uris)
    assert message_ids(backend, "raw_events") == ["m1", "m2", "m3"]
    assert len(backend.loader.loaded_files()) == 2
    assert (await backend.loader.load_files(uris)).skipped == tuple(uris)
    assert message_ids(backend, "raw_events") == ["m1", "m2", "m3"]


async def test_a_message_id_in_two_files_is_kept_twice_raw_and_once_in_events(
    backend: Backend,
) -> None:
    await backend.loader.ensure_schema()
    later = event_row("dup", received_at=at(60), properties={"copy": "later"})
    earlier = event_row("dup", received_at=at(1), properties={"copy": "earlier"})
    uris = [
        backend.put(unique_name("later"), event_table([later, event_row("solo")])),
        backend.put(unique_name("earlier"), event_table([earlier])),
    ]
    assert (await backend.loader.load_files(uris)).rows == 3

    assert message_ids(backend, "raw_events") == ["dup", "dup", "solo"]
    assert message_ids(backend, "events") == ["dup", "solo"]
    assert message_ids(backend, "tracks") == ["dup", "solo"]
    kept = backend.rows("events", "properties, received_at", "message_id")[0]
    assert (json.loads(kept[0]), kept[1]) == ({"copy": "earlier"}, at(1))


async def test_type_views_and_users_return_the_right_rows(backend: Backend) -> None:
    await backend.loader.ensure_schema()
    rows = [
        event_row("t1", "track"),
        event_row("p1", "page"),
        event_row("s1", "screen"),
        event_row("g1", "group"),
        event_row("a1", "alias", user_id="u1"),
        event_row("c1", "custom"),
        # u1: the newest identify by timestamp wins, even though it was received first
        event_row(
            "i-old",
            "identify",
            user_id="u1",
            received_at=at(50),
            timestamp=at(10),
            traits={"plan": "free"},
        ),
        event_row(
            "i-new",
            "identify",
            user_id="u1",
            received_at=at(40),
            timestamp=at(20),
            traits={"plan": "pro"},
        ),
        event_row("i-u2", "identify", user_id="u2", traits={"plan": "team"}),
        event_row("i-anon", "identify", traits={"plan": "none"}),  # no user_id: not a user
        event_row("t-u3", "track", user_id="u3"),  # not an identify: not a user
    ]
    # the same identify stored twice: counted once
    uris = [
        backend.put(unique_name(), event_table(rows)),
        backend.put(unique_name(), event_table([rows[7]])),
    ]
    await backend.loader.load_files(uris)

    assert message_ids(backend, "tracks") == ["t-u3", "t1"]
    assert message_ids(backend, "pages") == ["p1"]
    assert message_ids(backend, "screens") == ["s1"]
    assert message_ids(backend, "groups") == ["g1"]
    assert message_ids(backend, "aliases") == ["a1"]
    assert message_ids(backend, "identifies") == ["i-anon", "i-new", "i-old", "i-u2"]
    assert len(message_ids(backend, "events")) == len(rows)
    # users: Segment's users table, made by the identity pass: every user id, with its
    # profile's traits merged by event timestamp (the alias joined old-id to u1).
    await backend.loader.resolve_identities()
    users = backend.rows("users", "user_id, profile_id, traits, first_seen, last_seen", "user_id")
    assert [(u, json.loads(t), first, last) for u, _, t, first, last in users] == [
        ("old-id", {"plan": "pro"}, T0, T0),
        ("u1", {"plan": "pro"}, T0, at(20)),
        ("u2", {"plan": "team"}, T0, T0),
        ("u3", {}, T0, T0),
    ]
    assert users[0][1] == users[1][1] != users[2][1]


async def test_a_bad_file_is_reported_failed_and_the_others_load(backend: Backend) -> None:
    await backend.loader.ensure_schema()
    good = backend.put(unique_name("good"), event_table([event_row("m1")]))
    bad = backend.put_bytes(unique_name("bad"), b"this is not parquet")
    also_good = backend.put(unique_name("good"), event_table([event_row("m2")]))

    report = await backend.loader.load_files([good, bad, also_good])

    assert report.failed == (bad,)
    assert set(report.loaded) == {good, also_good}
    assert report.rows == 2
    assert message_ids(backend, "raw_events") == ["m1", "m2"]
    assert bad not in backend.loader.loaded_files()
    counts = counter_values(backend.metrics)
    assert counts.get("eventkit_warehouse_loader_errors", 0) >= 1
    assert counts.get("eventkit_warehouse_loader_files_processed") == 2
