"""Dead letters in GCS (fake-gcs-server) -> the ``dead_letters`` table in BigQuery (local-bigquery).

The loader runs as a real process; the dead letters are made as the collector makes them and
written by the storage library's GCSErrorStore. One test: the emulator is slow.
"""

from __future__ import annotations

import asyncio
import contextlib
import json

import pytest
from eventkit_storage.gcs import GCSErrorStore

from tests.emulators import BigQueryEmulator, short_retry
from tests.loader.ld_support import run_loader
from tests.loader.test_ld_bigquery import _args, _env
from tests.loader.test_ld_dead_letters import EARLY, LATE, _letter

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_dead_letters_load_into_bigquery_once_and_are_listed(
    bigquery_emulator: BigQueryEmulator, gcs_bucket: str, bigquery_dataset: str
) -> None:
    letters = [
        _letter({"type": "track", "userId": "u1"}, "events", EARLY),
        _letter({"type": "track", "userId": "u2"}, "events", EARLY),
        _letter(5, "pages", LATE),
    ]
    store = GCSErrorStore(gcs_bucket, prefix="pre", client=bigquery_emulator.gcs.client())
    asyncio.run(store.store_errors(letters))
    args, env = _args(bigquery_emulator, gcs_bucket, bigquery_dataset), _env(bigquery_emulator)

    listed = run_loader("dead-letters", *args, "--json", env=env)  # read from GCS
    assert listed.returncode == 0, listed.stderr
    summary = json.loads(listed.stdout)
    assert summary["total"] == 3
    assert [(g["stream"], g["reason_code"], g["count"]) for g in summary["groups"]] == [
        ("events", "missing_field", 2),
        ("pages", "not_an_object", 1),
    ]

    assert run_loader("create-table", *args, env=env).returncode == 0
    for expected in ((2, 3), (0, 0)):  # the second pass loads nothing again
        done = run_loader("once", *args, "--json", env=env)
        assert done.returncode == 0, done.stderr
        result = json.loads(done.stdout)
        assert (result["dead_letter_files"], result["dead_letter_rows"]) == expected

    with contextlib.closing(bigquery_emulator.client()) as client:
        rows = client.query(
            f"SELECT stream, reason_code, payload FROM "
            f"`{bigquery_emulator.project}.{bigquery_dataset}.dead_letters` ORDER BY stream",
            retry=short_retry(),
        ).result(timeout=60)
        got = [(r["stream"], r["reason_code"], r["payload"]) for r in rows]
    assert sorted(got) == sorted((d.stream, d.reason_code, d.payload) for d in letters)

    status = run_loader("status", *args, "--json", env=env)
    assert status.returncode == 0, status.stderr
    assert json.loads(status.stdout)["dead_letters"] == {"files": 2, "loaded": 2, "pending": 0}
