"""``eventkit-loader forget`` on a GCS store and the BigQuery emulator, killed midway and rerun.

The same people as ``test_ld_forget`` (Ann on two devices, Bob); afterwards no object in the
bucket holds one of Ann's ids in its raw bytes, no BigQuery table holds her rows, Bob is intact
and nothing is loaded twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from eventkit_storage.gcs import GCSErrorStore, GCSEventStore

from tests.emulators import BigQueryEmulator
from tests.loader.ld_support import T0, loader_env, run_loader, scratch_dir
from tests.loader.test_ld_dead_letters import _letter
from tests.loader.test_ld_forget import ANN_IDS
from tests.loader.test_ld_profile import person_events
from tests.storage.test_wh_conformance import BigQueryBackend

pytestmark = pytest.mark.integration

#: Tables and the columns that would hold one of Ann's ids.
ID_COLUMNS = {
    "raw_events": "coalesce(user_id, anonymous_id, '')",
    "identities": "id_value",
    "identity_edges": "CONCAT(id_value_1, ' ', id_value_2)",
    "profiles": "coalesce(user_id, '')",
    "dead_letters": "payload",
}


@dataclass
class Cloud:
    args: list[str]
    env: dict[str, str]
    bucket: Any
    bq: BigQueryBackend

    def leaks(self) -> list[str]:
        """Objects in the bucket whose raw bytes hold one of Ann's ids."""
        return [
            b.name
            for b in self.bucket.list_blobs()
            if any(i in b.download_as_bytes() for i in ANN_IDS)
        ]

    def values(self, table: str) -> list[str]:
        return [str(r[0]) for r in self.bq.rows(table, ID_COLUMNS[table], "1")]

    def run(self, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
        argv = [sys.executable, "-m", "eventkit_loader.cli", *args, *self.args]
        return subprocess.run(
            argv,
            env={**self.env, **env},
            cwd=scratch_dir(),
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )


@pytest.fixture
def cloud(request: pytest.FixtureRequest) -> Iterator[Cloud]:
    emulator: BigQueryEmulator = request.getfixturevalue("bigquery_emulator")
    bucket: str = request.getfixturevalue("gcs_bucket")
    dataset: str = request.getfixturevalue("bigquery_dataset")
    client = emulator.gcs.client()
    letters = [
        _letter({"type": "track", "userId": "ann"}, "events", T0),  # no event name
        _letter({"type": "track", "userId": "bob"}, "events", T0),
    ]

    async def fill() -> None:
        await GCSEventStore(bucket, prefix="pre", client=client).store_batch(person_events())
        await GCSErrorStore(bucket, prefix="pre", client=client).store_errors(letters)

    asyncio.run(fill())
    bq = BigQueryBackend(emulator, bucket, dataset)
    with contextlib.closing(bq.client):
        yield Cloud(
            [
                *("--event-store", "gcs", "--bucket", bucket, "--prefix", "pre"),
                *("--project", emulator.project, "--dataset", dataset),
            ],
            loader_env(
                EVENTKIT_BIGQUERY_API_ENDPOINT=emulator.endpoint,
                STORAGE_EMULATOR_HOST=emulator.gcs.endpoint,
            ),
            client.bucket(bucket),
            bq,
        )


@pytest.mark.parametrize("step", ["load", "file"])
def test_forget_on_gcs_and_bigquery_killed_midway_then_rerun(cloud: Cloud, step: str) -> None:
    if step == "load":  # before the first pass the dataset has no tables yet
        fresh = cloud.run("forget", "user_id:ann", "--dry-run", "--json")
        assert fresh.returncode == 0, fresh.stderr
        assert json.loads(fresh.stdout)["known_profile"] is False
    loaded = run_loader("once", *cloud.args, "--json", env=cloud.env)
    assert loaded.returncode == 0, loaded.stderr
    assert sorted(cloud.values("raw_events")) == ["ann", "ann", "ann", "bob", "laptop", "phone"]
    assert cloud.leaks()  # the check can fail: before forget the ids are there

    dry = cloud.run("forget", "email:ann@example.com", "--dry-run", "--json")
    assert dry.returncode == 0, dry.stderr
    plan = json.loads(dry.stdout)
    assert set(plan["ids"]) >= {"user_id:ann", "anonymous_id:phone", "anonymous_id:laptop"}
    assert plan["rows"]["raw_events"] == 5
    assert plan["rows"]["dead_letters"] == 1
    assert len(plan["files"]) == 2  # one event file, one dead-letter file
    assert len(cloud.values("raw_events")) == 6  # a dry run changes nothing

    killed = cloud.run("forget", "user_id:ann", EVENTKIT_FORGET_CRASH_AFTER=step)
    assert killed.returncode == -9, killed.stderr
    assert f"forget: {step} done" in killed.stderr

    rerun = cloud.run("forget", "user_id:ann", "--json")
    assert rerun.returncode == 0, rerun.stderr
    assert cloud.values("raw_events") == ["bob"]  # everyone else kept, nothing loaded twice
    assert len(cloud.values("dead_letters")) == 1  # Bob's
    assert "bob" in cloud.values("dead_letters")[0]
    for table in ("identities", "identity_edges", "profiles"):
        held = " ".join(cloud.values(table)).encode()
        assert not [i for i in ANN_IDS if i in held], table
    assert cloud.leaks() == []
    assert len(cloud.bq.rows("deletions", "request_id", "1")) == 1

    again = run_loader("once", *cloud.args, "--json", env=cloud.env)
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout.strip().splitlines()[-1])["loaded"] == 0
    assert cloud.values("raw_events") == ["bob"]
