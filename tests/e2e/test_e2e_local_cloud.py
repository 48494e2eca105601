"""The local cloud (``python -m tests.emulators up`` / ``env`` / ``down``) as a user runs it.

``up`` in a subprocess, then the collector (GCS event store, Pub/Sub queue) and ``eventkit-loader
once`` (BigQuery) with nothing but the environment ``up`` printed; the event is queryable in the
BigQuery emulator; ``down`` leaves no process behind.
"""

from __future__ import annotations

import contextlib
import json
import shlex
import subprocess
import sys
import uuid
from pathlib import Path

import httpx
import pytest

from tests.e2e.conftest import StartCollector, wait_until
from tests.emulators import short_retry
from tests.emulators._common import PROJECT, anonymous_credentials
from tests.emulators.local import REPO_ROOT, STATE_FILE, _alive
from tests.loader.ld_support import loader_env, run_loader

pytestmark = pytest.mark.integration


def _local_cloud(state_dir: Path, command: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tests.emulators", command, "--dir", str(state_dir)],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )


def _parse_exports(text: str) -> dict[str, str]:
    env: dict[str, str] = {}
    for line in text.splitlines():
        name, _, value = line.removeprefix("export ").partition("=")
        env[name] = shlex.split(value)[0]
    return env


def _bigquery_ids(env: dict[str, str]) -> list[str]:
    from google.cloud import bigquery

    client = bigquery.Client(
        project=PROJECT,
        credentials=anonymous_credentials(),
        client_options={"api_endpoint": env["EVENTKIT_BIGQUERY_API_ENDPOINT"]},
    )
    with contextlib.closing(client):
        view = f"`{PROJECT}.{env['GCP_BIGQUERY_DATASET']}.events`"
        rows = client.query(f"SELECT message_id FROM {view}", retry=short_retry()).result(
            timeout=60
        )
        return [str(r["message_id"]) for r in rows]


def test_up_collector_loader_bigquery_down(
    collector_server: StartCollector, tmp_path: Path
) -> None:
    state_dir = tmp_path / "local-cloud"
    started = _local_cloud(state_dir, "up")
    try:
        assert started.returncode == 0, started.stderr
        env = _parse_exports(started.stdout)
        assert env["EVENTKIT_EVENT_STORE"] == "gcs"
        assert env["EVENTKIT_QUEUE_MODE"] == "pubsub"
        again = _local_cloud(state_dir, "env")
        assert again.returncode == 0
        assert _parse_exports(again.stdout) == env
        # up twice: still one cloud, resources already there
        assert _local_cloud(state_dir, "up").stdout == started.stdout

        cp = collector_server(tmp_path / "collector", EVENTKIT_FLUSH_MAX_AGE="0.5", **env)
        message_id = str(uuid.uuid4())
        body = {"type": "track", "event": "Local", "userId": "u-1", "messageId": message_id}
        response = httpx.post(f"{cp.url}/v1/track", json=body, timeout=30)
        assert response.status_code == 200, response.text

        gcs_root = Path(json.loads((state_dir / STATE_FILE).read_text())["gcs_root"])
        bucket = gcs_root / env["GCP_GCS_BUCKET"]

        def in_gcs() -> bool:
            return any(p.suffix == ".parquet" for p in bucket.rglob("*"))

        wait_until(in_gcs, 120, "the collector's Parquet object in the local bucket")
        loader = loader_env(**env)
        done = run_loader("once", "--json", env=loader, cwd=tmp_path, timeout=300)
        assert done.returncode == 0, done.stderr
        assert json.loads(done.stdout)["rows"] >= 1
        assert cp.stop() == 0
        assert _bigquery_ids(env) == [message_id]
    finally:
        state = (
            json.loads((state_dir / STATE_FILE).read_text())
            if (state_dir / STATE_FILE).exists()
            else None
        )
        stopped = _local_cloud(state_dir, "down")
    assert stopped.returncode == 0, stopped.stderr
    assert state is not None
    pids = [state["supervisor_pid"], *state["pids"]]
    assert len(pids) == 4
    assert not [p for p in pids if _alive(int(p))]
    assert _local_cloud(state_dir, "env").returncode == 1  # nothing up any more
