"""``eventkit-collector setup`` and ``eventkit-loader create-table`` against the emulators.

Both create what the settings name, twice in a row without error (idempotent), and with
``--dry-run`` print what they would create and create nothing.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from pathlib import Path

import pytest
from google.api_core.exceptions import NotFound

from tests.emulators import BigQueryEmulator, GcsEmulator, PubSubEmulator, short_retry
from tests.loader.ld_support import loader_env, run_loader

pytestmark = pytest.mark.integration


def _setup(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    environ = {k: v for k, v in os.environ.items() if not k.startswith(("EVENTKIT_", "GCP_"))}
    return subprocess.run(
        [sys.executable, "-m", "eventkit_collector.cli", "setup", *args],
        env={**environ, **env},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_collector_setup_dry_run_then_twice(
    gcs_emulator: GcsEmulator, pubsub_emulator: PubSubEmulator
) -> None:
    bucket = gcs_emulator.new_bucket_name("setup")
    topic, sub = pubsub_emulator.new_name("setup"), pubsub_emulator.new_name("setup-archive")
    env = {
        "STORAGE_EMULATOR_HOST": gcs_emulator.endpoint,
        "PUBSUB_EMULATOR_HOST": pubsub_emulator.host,
        "GCP_PROJECT_ID": pubsub_emulator.project,
        "GCP_GCS_BUCKET": bucket,
        "EVENTKIT_EVENT_STORE": "gcs",
        "EVENTKIT_QUEUE_MODE": "pubsub",
        "EVENTKIT_PUBSUB_TOPIC": topic,
        "EVENTKIT_PUBSUB_SUBSCRIPTION": sub,
    }
    dry = _setup("--dry-run", **env)
    assert dry.returncode == 0, dry.stderr
    topic_path = pubsub_emulator.topic_path(topic)
    sub_path = pubsub_emulator.subscription_path(sub)
    for name in (f"gs://{bucket}", topic_path, sub_path):
        assert name in dry.stdout
    storage = gcs_emulator.client()
    publisher, subscriber = pubsub_emulator.publisher(), pubsub_emulator.subscriber()
    assert storage.lookup_bucket(bucket) is None
    with pytest.raises(NotFound):
        publisher.get_topic(topic=topic_path)

    first, second = _setup(**env), _setup(**env)
    assert first.returncode == 0, first.stderr
    assert second.returncode == 0, second.stderr
    assert f"created: bucket gs://{bucket}" in first.stdout
    assert f"exists: bucket gs://{bucket}" in second.stdout
    assert storage.lookup_bucket(bucket) is not None
    assert publisher.get_topic(topic=topic_path).name == topic_path
    assert subscriber.get_subscription(subscription=sub_path).topic == topic_path
    subscriber.close()


def test_collector_setup_local_needs_nothing() -> None:
    done = _setup("--dry-run")
    assert done.returncode == 0, done.stderr
    assert "nothing to create" in done.stdout


def test_loader_create_table_dry_run_then_twice(bigquery_emulator: BigQueryEmulator) -> None:
    dataset = bigquery_emulator.new_dataset_id("setup")
    env = loader_env(
        EVENTKIT_BIGQUERY_API_ENDPOINT=bigquery_emulator.endpoint,
        EVENTKIT_WAREHOUSE="bigquery",
        GCP_PROJECT_ID=bigquery_emulator.project,
        GCP_BIGQUERY_DATASET=dataset,
        GCP_GCS_BUCKET="unused",
        EVENTKIT_EVENT_STORE="gcs",
    )
    dry = run_loader("create-table", "--dry-run", env=env)
    assert dry.returncode == 0, dry.stderr
    assert f"dataset {bigquery_emulator.project}.{dataset}" in dry.stdout
    assert "CREATE" in dry.stdout
    with contextlib.closing(bigquery_emulator.client()) as client:
        with pytest.raises(NotFound):
            client.get_dataset(dataset, retry=short_retry())
        for _ in range(2):
            done = run_loader("create-table", env=env, timeout=300)
            assert done.returncode == 0, done.stderr
        tables = {t.table_id for t in client.list_tables(dataset, retry=short_retry())}
    assert {"raw_events", "events", "tracks", "users"} <= tables


def test_readme_dry_run_example_prints_as_written() -> None:
    readme = (Path(__file__).parents[2] / "apps/collector/README.md").read_text()
    block = readme.split("eventkit-collector setup --dry-run\n", 1)[1].split("```", 1)[0]
    env = {
        "EVENTKIT_EVENT_STORE": "gcs",
        "GCP_GCS_BUCKET": "my-events",
        "EVENTKIT_QUEUE_MODE": "pubsub",
        "GCP_PROJECT_ID": "my-proj",
    }
    done = _setup("--dry-run", **env)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == block.strip().splitlines()
