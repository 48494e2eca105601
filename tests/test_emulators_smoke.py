"""The emulators answer the official Google clients the way later tests rely on."""

from __future__ import annotations

import contextlib
import datetime as dt
import threading
import uuid
from typing import Any

import google.cloud.pubsub_v1 as pubsub_v1
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from google.api_core.exceptions import Conflict, PreconditionFailed
from google.cloud import bigquery

from tests.emulators import BigQueryEmulator, GcsEmulator, PubSubEmulator, short_retry

pytestmark = pytest.mark.integration

JOB_TIMEOUT = 60.0


def test_gcs_upload_read_back_and_create_only(gcs_emulator: GcsEmulator, gcs_bucket: str) -> None:
    client = gcs_emulator.client()
    blob = client.bucket(gcs_bucket).blob("events/a/b.txt")
    blob.upload_from_string(b"hello", if_generation_match=0)

    again = client.bucket(gcs_bucket).blob("events/a/b.txt")
    assert again.download_as_bytes() == b"hello"
    # objects are plain files under the filesystem root (local-bigquery reads them from there)
    assert (gcs_emulator.root / gcs_bucket / "events" / "a" / "b.txt").read_bytes() == b"hello"

    with pytest.raises(PreconditionFailed):
        again.upload_from_string(b"other", if_generation_match=0)
    assert again.download_as_bytes() == b"hello"


def test_pubsub_ordered_publish_and_streaming_pull(pubsub_emulator: PubSubEmulator) -> None:
    publisher = pubsub_emulator.publisher(
        publisher_options=pubsub_v1.types.PublisherOptions(enable_message_ordering=True)
    )
    subscriber = pubsub_emulator.subscriber()
    topic = pubsub_emulator.topic_path(pubsub_emulator.new_name("topic"))
    subscription = pubsub_emulator.subscription_path(pubsub_emulator.new_name("sub"))
    publisher.create_topic(name=topic)
    subscriber.create_subscription(
        request={"name": subscription, "topic": topic, "enable_message_ordering": True}
    )

    sent = [f"event-{i}".encode() for i in range(10)]
    futures = [publisher.publish(topic, data, ordering_key="user-1") for data in sent]
    for future in futures:
        future.result(timeout=30)

    received: list[bytes] = []
    lock = threading.Lock()
    done = threading.Event()

    def callback(message: Any) -> None:
        with lock:
            received.append(message.data)
            if len(received) >= len(sent):
                done.set()
        message.ack()

    streaming = subscriber.subscribe(subscription, callback=callback)
    try:
        assert done.wait(timeout=60), f"received only {len(received)} of {len(sent)}"
    finally:
        streaming.cancel()
        with contextlib.suppress(Exception):
            streaming.result(timeout=10)
        subscriber.close()
    assert received == sent  # one ordering key: delivered in publish order


def _parquet_bytes(table: pa.Table) -> bytes:
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink)
    return bytes(sink.getvalue().to_pybytes())


def test_bigquery_load_parquet_from_gcs_and_query(
    bigquery_emulator: BigQueryEmulator, gcs_bucket: str, bigquery_dataset: str
) -> None:
    received = pa.array(
        [dt.datetime(2024, 1, 1, h, tzinfo=dt.UTC) for h in (1, 2, 3)], pa.timestamp("us", "UTC")
    )
    table = pa.table(
        {"message_id": ["m1", "m1", "m2"], "type": ["track"] * 3, "received_at": received}
    )
    storage = bigquery_emulator.gcs.client()
    path = "events/tracks/2024/01/01/00/0-2.parquet"
    storage.bucket(gcs_bucket).blob(path).upload_from_string(
        _parquet_bytes(table), content_type="application/octet-stream"
    )

    client = bigquery_emulator.client()
    retry = short_retry()
    destination = f"{bigquery_emulator.project}.{bigquery_dataset}.raw_events"
    job_id = f"load_{uuid.uuid4().hex}"
    config = bigquery.LoadJobConfig(source_format=bigquery.SourceFormat.PARQUET)
    load = client.load_table_from_uri(
        f"gs://{gcs_bucket}/{path}", destination, job_id=job_id, job_config=config, retry=retry
    )
    load.result(timeout=JOB_TIMEOUT, retry=retry)
    assert load.output_rows == 3

    # the loader relies on: get_job by a fixed id, and 409 when the same id is submitted again
    again = client.get_job(job_id, retry=retry)
    assert (again.job_id, again.state, again.job_type) == (job_id, "DONE", "load")
    with pytest.raises(Conflict):
        client.load_table_from_uri(
            f"gs://{gcs_bucket}/{path}", destination, job_id=job_id, job_config=config, retry=retry
        )

    rows = client.query(
        f"SELECT message_id, received_at FROM `{destination}` ORDER BY received_at",
        retry=retry,
        job_retry=None,
    ).result(timeout=JOB_TIMEOUT)
    assert [r["message_id"] for r in rows] == ["m1", "m1", "m2"]


def test_bigquery_features_the_warehouse_needs(
    bigquery_emulator: BigQueryEmulator, bigquery_dataset: str
) -> None:
    client = bigquery_emulator.client()
    retry = short_retry()
    dataset = f"{bigquery_emulator.project}.{bigquery_dataset}"

    def run(sql: str) -> list[tuple[Any, ...]]:
        job = client.query(sql, retry=retry, job_retry=None)
        return [tuple(row.values()) for row in job.result(timeout=JOB_TIMEOUT)]

    # time partitioning + clustering at creation (DDL), visible through get_table
    run(
        f"CREATE TABLE `{dataset}.raw_events` (message_id STRING, type STRING, "
        "received_at TIMESTAMP, n INT64) PARTITION BY DATE(received_at) CLUSTER BY type, message_id"
    )
    created = client.get_table(f"{dataset}.raw_events", retry=retry)
    assert created.time_partitioning.field == "received_at"
    assert created.clustering_fields == ["type", "message_id"]

    # ... and through the API
    api_table = bigquery.Table(f"{dataset}.api_events", schema=created.schema)
    api_table.time_partitioning = bigquery.TimePartitioning(
        type_=bigquery.TimePartitioningType.DAY, field="received_at"
    )
    api_table.clustering_fields = ["type"]
    client.create_table(api_table, retry=retry)
    assert client.get_table(f"{dataset}.api_events", retry=retry).clustering_fields == ["type"]

    run(
        f"INSERT INTO `{dataset}.raw_events` VALUES "
        "('a', 'track', TIMESTAMP '2024-01-01 00:00:00+00', 1), "
        "('a', 'track', TIMESTAMP '2024-01-01 00:00:01+00', 2), "
        "('b', 'page', TIMESTAMP '2024-01-01 00:00:02+00', 3)"
    )
    # a deduplicating view with QUALIFY
    run(
        f"CREATE OR REPLACE VIEW `{dataset}.events` AS SELECT * FROM `{dataset}.raw_events` "
        "WHERE TRUE QUALIFY ROW_NUMBER() OVER (PARTITION BY message_id ORDER BY received_at) = 1"
    )
    assert run(f"SELECT message_id, n FROM `{dataset}.events` ORDER BY message_id") == [
        ("a", 1),
        ("b", 3),
    ]
    # MERGE for insert-if-absent
    run(
        f"MERGE `{dataset}.raw_events` T USING (SELECT 'c' AS message_id, 'track' AS type, "
        "TIMESTAMP '2024-01-02 00:00:00+00' AS received_at, 4 AS n UNION ALL "
        "SELECT 'a', 'track', TIMESTAMP '2024-01-01 00:00:00+00', 9) S "
        "ON T.message_id = S.message_id "
        "WHEN NOT MATCHED THEN INSERT (message_id, type, received_at, n) "
        "VALUES (S.message_id, S.type, S.received_at, S.n)"
    )
    assert run(f"SELECT message_id, n FROM `{dataset}.events` ORDER BY message_id") == [
        ("a", 1),
        ("b", 3),
        ("c", 4),
    ]


def test_all_three_emulators_run_together(
    gcs_emulator: GcsEmulator, pubsub_emulator: PubSubEmulator, bigquery_emulator: BigQueryEmulator
) -> None:
    """All three can be up at once, each answering its client."""
    bucket = gcs_emulator.create_bucket()
    assert bucket in {b.name for b in gcs_emulator.client().list_buckets()}
    with contextlib.closing(bigquery_emulator.client()) as bq:
        assert bq.get_dataset("local", retry=short_retry()).dataset_id == "local"
    publisher = pubsub_emulator.publisher()
    topic = pubsub_emulator.topic_path(pubsub_emulator.new_name("smoke"))
    publisher.create_topic(name=topic)
    listed = publisher.list_topics(request={"project": f"projects/{pubsub_emulator.project}"})
    assert topic in {t.name for t in listed}
    publisher.stop()
