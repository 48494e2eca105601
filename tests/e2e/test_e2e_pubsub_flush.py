"""End to end in Pub/Sub mode: the archive subscription holds a whole flush of un-acked messages.

The archive acks a message only once the file holding it is written, so if the streaming pull
held fewer messages than ``EVENTKIT_FLUSH_MAX_EVENTS`` the size limit could never be reached and
every flush would wait for ``EVENTKIT_FLUSH_MAX_AGE`` (draining at "held messages per age").
"""

from __future__ import annotations

import time
import uuid
from typing import Any

import httpx
import pyarrow.parquet as pq
import pytest

from tests.e2e.conftest import StartCollector, wait_until
from tests.e2e.faults import stored_ids, visible_files
from tests.emulators import PubSubEmulator

pytestmark = [pytest.mark.integration, pytest.mark.slow]

FLUSH_EVENTS = 500
#: Far longer than the test's deadlines: a file before it can only come from the size limit.
FLUSH_AGE = 600


def tracks(count: int) -> tuple[list[str], dict[str, Any]]:
    ids = [str(uuid.uuid4()) for _ in range(count)]
    batch = [
        {"type": "track", "userId": f"user-{n % 50}", "event": "Clicked", "messageId": m}
        for n, m in enumerate(ids)
    ]
    return ids, {"batch": batch}


def test_a_full_flush_is_written_by_size_long_before_the_age_limit(
    collector_server: StartCollector, pubsub_emulator: PubSubEmulator
) -> None:
    cp = collector_server(
        EVENTKIT_QUEUE_MODE="pubsub",
        GCP_PROJECT_ID=pubsub_emulator.project,
        EVENTKIT_PUBSUB_TOPIC=pubsub_emulator.new_name("flush"),
        EVENTKIT_PUBSUB_SUBSCRIPTION=pubsub_emulator.new_name("flush-archive"),
        EVENTKIT_FLUSH_MAX_EVENTS=str(FLUSH_EVENTS),
        EVENTKIT_FLUSH_MAX_AGE=str(FLUSH_AGE),
    )
    sent: set[str] = set()
    started = time.monotonic()
    with httpx.Client(base_url=cp.url, timeout=30) as client:
        for _ in range(FLUSH_EVENTS // 100):
            ids, body = tracks(100)
            assert client.post("/v1/batch", json=body).status_code == 200
            sent.update(ids)
    wait_until(lambda: set(stored_ids(cp.data_dir)) >= sent, 120, "one flush of 500 events")
    assert time.monotonic() - started < FLUSH_AGE  # so the size limit wrote it, not the age
    files = visible_files(cp.data_dir)
    assert len(files) == 1, files  # one flush, not several small ones
    assert pq.read_metadata(files[0]).num_rows == FLUSH_EVENTS
    assert cp.stop() == 0
