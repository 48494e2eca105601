"""Duplicates: whatever stores a messageId more than once, ``events`` has it once after the loader.

- The same batch (and the same single event) sent 3 times: 3 rows in the files and in
  ``raw_events``, one in ``events``.
- Pub/Sub redeliveries: the collector in Pub/Sub mode pulls messages (three copies of one batch
  among the 110 events) and holds them unacked, waiting for a flush by age that never comes
  before it is SIGKILLed; Pub/Sub delivers them again to the restarted collector once the
  killed run's leases lapse, which stores them: ``events`` holds every acknowledged event once.
"""

from __future__ import annotations

import uuid
from pathlib import Path

import httpx
import pytest

from tests.e2e.conftest import CollectorProcess, StartCollector, free_port, wait_until
from tests.e2e.faults import batch_body, stored_ids
from tests.emulators import PubSubEmulator
from tests.loader.ld_support import query_json, run_loader

pytestmark = pytest.mark.slow


def _load_and_check_once(data: Path, expected: set[str]) -> None:
    done = run_loader("once", "--data-dir", str(data), "--json")
    assert done.returncode == 0, done.stderr
    rows = query_json(data, "select message_id, count(*) as n from events group by 1")
    assert {r["message_id"] for r in rows} == expected
    assert max(r["n"] for r in rows) == 1


def test_the_same_batch_sent_three_times_is_once_in_events(
    collector_server: StartCollector, tmp_path: Path
) -> None:
    data = tmp_path / "data"
    cp = collector_server(data, EVENTKIT_FLUSH_MAX_AGE="0.2")
    ids, body = batch_body(30, tag="thrice")
    single = {"userId": "u-1", "event": "Once", "messageId": str(uuid.uuid4())}
    with httpx.Client(base_url=cp.url, timeout=30) as client:
        for _ in range(3):
            assert client.post("/v1/batch", json=body).status_code == 200
            assert client.post("/v1/track", json=single).status_code == 200
    expected = {*ids, single["messageId"]}
    wait_until(lambda: sum(stored_ids(data).values()) == 3 * len(expected), 60, "3 copies stored")
    assert cp.stop() == 0
    assert set(stored_ids(data).values()) == {3}

    _load_and_check_once(data, expected)
    raw = query_json(data, "select message_id, count(*) as n from raw_events group by 1")
    assert {r["n"] for r in raw} == {3}  # the files' copies are all loaded, and hidden


@pytest.mark.integration
def test_pubsub_redeliveries_after_a_kill_are_once_in_events(
    collector_server: StartCollector, pubsub_emulator: PubSubEmulator, tmp_path: Path
) -> None:
    data = tmp_path / "data"
    port = free_port()
    env = {
        "EVENTKIT_QUEUE_MODE": "pubsub",
        "GCP_PROJECT_ID": pubsub_emulator.project,
        "EVENTKIT_PUBSUB_TOPIC": pubsub_emulator.new_name("dups"),
        "EVENTKIT_PUBSUB_SUBSCRIPTION": pubsub_emulator.new_name("dups-archive"),
    }
    # Nothing is flushed by age: the archive pulls the messages and holds them unacked.
    cp = collector_server(data, port=port, EVENTKIT_FLUSH_MAX_AGE="600", **env)
    ids, body = batch_body(20, tag="redelivered")
    with httpx.Client(base_url=cp.url, timeout=30) as client:
        for _ in range(3):  # three copies of one batch, as a retrying client sends them
            assert client.post("/v1/batch", json=body).status_code == 200
        more = [batch_body(10, tag=f"once-{n}") for n in range(5)]
        for _more_ids, more_body in more:
            assert client.post("/v1/batch", json=more_body).status_code == 200
    expected = set(ids).union(*(set(m) for m, _b in more))

    def pulled() -> bool:  # the archive coordinator holds some (received, not acked)
        return _dequeued(cp) >= 1

    wait_until(pulled, 120, "the archive to hold messages")
    assert stored_ids(data) == {}
    cp.kill()  # before any ack: Pub/Sub delivers every message again, to the next run
    cp = collector_server(data, port=port, EVENTKIT_FLUSH_MAX_AGE="0.3", **env)

    def all_stored() -> bool:  # every copy: the three of each batch id are three messages
        stored = stored_ids(data)
        return expected <= set(stored) and all(stored[i] >= 3 for i in ids)

    # Redelivery waits for the killed run's leases to lapse (the ack deadline, 60 s).
    wait_until(all_stored, 240, "every message redelivered and stored")
    assert cp.stop() == 0
    stored = stored_ids(data)
    assert set(stored) == expected
    assert all(stored[i] >= 3 for i in ids)  # the three copies are all in the files
    _load_and_check_once(data, expected)


def _metrics(cp: CollectorProcess) -> str:
    return httpx.get(f"{cp.metrics_url}/metrics", timeout=10).text


def _dequeued(cp: CollectorProcess) -> float:
    total = 0.0
    for line in _metrics(cp).splitlines():
        if line.startswith("eventkit_queue_dequeued_total") and 'queue_mode="pubsub"' in line:
            total += float(line.rsplit(" ", 1)[1])
    return total
