"""End to end: the real collector process writes files, the real loader process loads them.

- embedded default: local files -> ``warehouse.duckdb``, found by the loader with no setting at
  all (the same default data directory as the collector), queried with ``eventkit-loader query``;
- scale-out: files in GCS (fake-gcs-server) -> BigQuery (local-bigquery), ``events`` view queried;
- a dead letter whose rule is relaxed is replayed and appears in the warehouse once.
"""

from __future__ import annotations

import contextlib
import json
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import pyarrow.parquet as pq
import pytest

from tests.e2e.conftest import CollectorProcess, StartCollector, wait_until
from tests.emulators import BigQueryEmulator, GcsEmulator, short_retry
from tests.loader.ld_support import loader_env, query_json, run_loader

pytestmark = pytest.mark.slow

STRICT = '[streams.events]\nrequired = ["userId", "properties.plan"]\n'
RELAXED = '[streams.events]\nrequired = ["userId"]\n'


def _rows(root: Path, kind: str = "events") -> int:
    base = root / kind
    if not base.exists():
        return 0
    return sum(pq.read_metadata(f).num_rows for f in base.rglob("*.parquet"))


def _send(cp: CollectorProcess) -> set[str]:
    """Segment calls, a batch and a schemaless event; returns the message ids sent."""
    ids: set[str] = set()

    def msg(kind: str, **fields: Any) -> dict[str, Any]:
        m = {"type": kind, "userId": "u-1", "messageId": str(uuid.uuid4()), **fields}
        ids.add(m["messageId"])
        return m

    with httpx.Client(base_url=cp.url, timeout=30) as client:
        calls = [
            ("/v1/track", msg("track", event="Signed Up", properties={"plan": "pro"})),
            ("/v1/identify", msg("identify", traits={"email": "a@example.com"})),
            ("/v1/page", msg("page", name="Home")),
            ("/collect/orders", msg("custom", total=12.5)),
            (
                "/v1/batch",
                {
                    "batch": [
                        msg("track", event="Clicked", properties={"plan": "free"}),
                        msg("group", groupId="g-1"),
                        msg("alias", previousId="anon-1"),
                    ]
                },
            ),
        ]
        for path, body in calls:
            response = client.post(path, json=body)
            assert response.status_code == 200, (path, response.text, cp.log()[-3000:])
    return ids


def test_local_collector_files_load_into_duckdb_with_no_setting(
    collector_server: StartCollector, tmp_path: Path
) -> None:
    data = tmp_path / "eventkit-data"  # the loader's default data dir, seen from tmp_path
    cp = collector_server(data, EVENTKIT_FLUSH_MAX_AGE="0.5")
    sent = _send(cp)
    wait_until(lambda: _rows(data) == len(sent), 60, "the collector's Parquet files")

    done = run_loader("once", "--json", cwd=tmp_path)  # no --data-dir, no environment
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["rows"] == len(sent)
    assert (data / "warehouse.duckdb").exists()

    rows = query_json(data, "select message_id, type, stream from events")
    counts = Counter(r["message_id"] for r in rows)
    assert set(counts) == sent
    assert max(counts.values()) == 1
    assert {r["type"] for r in rows} >= {"track", "identify", "page", "group", "alias"}
    assert query_json(data, "select count(*) as n from tracks") == [{"n": 2}]
    assert cp.stop() == 0


def test_relaxed_rule_replays_a_dead_letter_into_the_warehouse_once(
    collector_server: StartCollector, tmp_path: Path
) -> None:
    data = tmp_path / "d"
    rules = tmp_path / "rules.toml"
    rules.write_text(STRICT)
    cp = collector_server(data, EVENTKIT_FLUSH_MAX_AGE="0.5", EVENTKIT_RULES_FILE=str(rules))
    good, bad = str(uuid.uuid4()), str(uuid.uuid4())
    with httpx.Client(base_url=cp.url, timeout=30) as client:
        for message_id, props in ((good, {"plan": "pro"}), (bad, {})):
            body = {
                "userId": "u-1",
                "event": "Signed Up",
                "properties": props,
                "messageId": message_id,
            }
            assert client.post("/v1/track", json=body).status_code == 200
    wait_until(
        lambda: _rows(data) == 1 and _rows(data, "dead-letters") == 1, 60, "event + dead letter"
    )
    assert cp.stop() == 0

    env = loader_env(EVENTKIT_RULES_FILE=str(rules))
    assert run_loader("once", "--data-dir", str(data), env=env).returncode == 0
    ids = [r["message_id"] for r in query_json(data, "select message_id from events")]
    assert ids == [good]

    rules.write_text(RELAXED)
    replay = ("replay-dead-letters", "--data-dir", str(data), "--stream", "events", "--json")
    first = run_loader(*replay, "--load", env=env)
    assert first.returncode == 0, first.stderr
    assert json.loads(first.stdout)["replayed"] == 1
    second = run_loader(*replay, "--load", env=env)
    assert second.returncode == 0, second.stderr
    assert json.loads(second.stdout)["replayed"] == 0

    raw = query_json(data, "select message_id, count(*) as n from raw_events group by 1 order by 1")
    assert raw == sorted(
        [{"message_id": good, "n": 1}, {"message_id": bad, "n": 1}],
        key=lambda r: str(r["message_id"]),
    )


@pytest.mark.integration
def test_gcs_collector_files_load_into_bigquery(
    collector_server: StartCollector,
    gcs_emulator: GcsEmulator,
    gcs_bucket: str,
    bigquery_emulator: BigQueryEmulator,
    bigquery_dataset: str,
) -> None:
    cp = collector_server(
        EVENTKIT_EVENT_STORE="gcs",
        GCP_GCS_BUCKET=gcs_bucket,
        GCP_PROJECT_ID=gcs_emulator.project,
        EVENTKIT_GCS_PREFIX="pipeline",
        EVENTKIT_FLUSH_MAX_AGE="0.5",
    )
    sent = _send(cp)
    root = gcs_emulator.root / gcs_bucket / "pipeline"
    wait_until(lambda: _rows(root) == len(sent), 60, "the collector's objects in GCS")

    args = [
        *("--event-store", "gcs", "--bucket", gcs_bucket, "--prefix", "pipeline"),
        *("--project", bigquery_emulator.project, "--dataset", bigquery_dataset),
    ]
    env = loader_env(
        EVENTKIT_BIGQUERY_API_ENDPOINT=bigquery_emulator.endpoint,
        STORAGE_EMULATOR_HOST=gcs_emulator.endpoint,
    )
    done = run_loader("once", *args, "--json", env=env, timeout=300)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["rows"] == len(sent)
    assert cp.stop() == 0

    with contextlib.closing(bigquery_emulator.client()) as client:
        view = f"`{bigquery_emulator.project}.{bigquery_dataset}.events`"
        rows = client.query(f"SELECT message_id FROM {view}", retry=short_retry()).result(
            timeout=60
        )
        counts = Counter(str(r["message_id"]) for r in rows)
    assert set(counts) == sent
    assert max(counts.values()) == 1
