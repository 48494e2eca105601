"""End to end, what operators watch: metric values and labels after known traffic, /ready and the
metrics server's /health answering 503 while a backend is down (and 200 once it is back), the
component_health gauge, and the ``--workers`` supervisor restarting a worker that died.

The real ``eventkit-collector`` process (tests/e2e/conftest.py); GCS against its emulator.
"""

from __future__ import annotations

import os
import re
import signal
import uuid
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.e2e.conftest import CollectorProcess, StartCollector, wait_until
from tests.e2e.test_e2e_collector import count_rows, ev, read_rows, scrape
from tests.emulators import GcsEmulator

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def samples(text: str) -> Samples:
    """Every sample of a Prometheus scrape: (name, labels) -> value."""
    out: Samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return out


def value(got: Samples, name: str, **labels: str) -> float:
    """The one sample of ``name`` whose labels include ``labels`` (fails when not exactly one)."""
    wanted = set(labels.items())
    found = [v for (n, ls), v in got.items() if n == name and wanted <= ls]
    assert len(found) == 1, (name, labels, sorted((n, sorted(ls)) for n, ls in got if n == name))
    return found[0]


def label_values(got: Samples, name: str, label: str) -> set[str]:
    return {dict(ls)[label] for n, ls in got if n == name and label in dict(ls)}


def test_metric_values_and_labels_after_known_traffic(collector_server: StartCollector) -> None:
    cp = collector_server(EVENTKIT_FLUSH_MAX_AGE="0.2")
    with httpx.Client(base_url=cp.url, timeout=30) as c:
        for _ in range(3):
            assert c.post("/v1/track", json=ev("track")).status_code == 200
        assert c.post("/v1/identify", json=ev("identify")).status_code == 200
        batch = {"batch": [ev("page"), ev("page"), ev("nonsense"), 5]}
        assert c.post("/v1/batch", json=batch).status_code == 200
        assert c.post("/v1/track", json={"userId": "u"}).status_code == 200  # no event name
        assert c.post("/v1/track", content=b'{"a": NaN}').status_code == 400
    # 4 + 4 + 1 events received; 3 dead letters in the batch and one invalid track
    wait_until(lambda: count_rows(cp.data_dir) == 6, 60, "six events in Parquet")
    wait_until(lambda: count_rows(cp.data_dir, "dead-letters") == 3, 60, "three dead letters")

    def settled() -> bool:  # the counters are read at scrape time: wait for the workers
        got = samples(scrape(cp))
        processed = [v for (n, _), v in got.items() if n == "eventkit_events_processed_total"]
        failed = [v for (n, _), v in got.items() if n == "eventkit_events_failed_total"]
        return sum(processed) == 6 and sum(failed) == 3

    wait_until(settled, 60, "processed and failed counters")
    got = samples(scrape(cp))

    requests = "eventkit_api_requests_total"
    assert value(got, requests, endpoint="/v1/track", method="POST", status="200") == 4
    assert value(got, requests, endpoint="/v1/track", method="POST", status="400") == 1
    assert value(got, requests, endpoint="/v1/identify", method="POST", status="200") == 1
    assert value(got, requests, endpoint="/v1/batch", method="POST", status="200") == 1
    assert value(got, "eventkit_events_received_total") == 9
    processed = "eventkit_events_processed_total"
    assert value(got, processed, event_type="track") == 3
    assert value(got, processed, event_type="identify") == 1
    assert value(got, processed, event_type="page") == 2
    assert label_values(got, processed, "event_type") == {"track", "identify", "page"}
    failed = "eventkit_events_failed_total"
    by_reason = {dict(ls)["reason"]: v for (n, ls), v in got.items() if n == failed}
    assert sum(by_reason.values()) == 3
    dead = read_rows(cp.data_dir, "dead-letters")
    assert set(by_reason) == {d["reason_code"] for d in dead}  # labelled by the dead letter's code
    assert value(got, "eventkit_api_request_duration_seconds_count", endpoint="/v1/track") == 5
    assert value(got, "eventkit_info", version=value_label(got, "eventkit_info", "version")) == 1
    assert value(got, "eventkit_uptime_seconds") > 0
    health = "eventkit_component_health"
    for component in ("ring_buffer", "storage"):
        assert value(got, health, component=component, status="healthy") == 1
        assert value(got, health, component=component, status="unhealthy") == 0
    assert cp.stop() == 0


def value_label(got: Samples, name: str, label: str) -> str:
    (only,) = label_values(got, name, label)
    return only


@pytest.mark.integration
@pytest.mark.slow
def test_ready_and_metrics_health_answer_503_while_the_store_is_down(
    collector_server: StartCollector, gcs_emulator: GcsEmulator
) -> None:
    bucket = f"later-{uuid.uuid4().hex[:12]}"  # does not exist yet: every write fails
    cp = collector_server(
        EVENTKIT_EVENT_STORE="gcs",
        GCP_GCS_BUCKET=bucket,
        GCP_PROJECT_ID=gcs_emulator.project,
        EVENTKIT_FLUSH_MAX_AGE="0.2",
    )
    sent = [ev("track") for _ in range(5)]
    with httpx.Client(base_url=cp.url, timeout=30) as c:
        assert c.post("/v1/batch", json={"batch": sent}).status_code == 200  # durable: accepted

        def not_ready() -> bool:
            return c.get("/ready").status_code == 503

        wait_until(not_ready, 60, "/ready to answer 503")
        ready = c.get("/ready")
        assert ready.status_code == 503
        body = ready.json()
        assert body["status"] == "not_ready"
        components = body["components"]
        assert (components.pop("storage"), components.pop("ring_buffer")) == (False, True)
        assert all(components.values()), components  # nothing else is blamed
        assert c.get("/health").status_code == 200  # alive: only readiness says no
    metrics_health = httpx.get(f"{cp.metrics_url}/health", timeout=10)
    assert metrics_health.status_code == 503
    assert metrics_health.json() == {"status": "unhealthy"}
    got = samples(scrape(cp))
    health = "eventkit_component_health"
    assert value(got, health, component="storage", status="unhealthy") == 1
    assert value(got, health, component="storage", status="healthy") == 0
    assert value(got, health, component="ring_buffer", status="healthy") == 1

    gcs_emulator.create_bucket(bucket)  # the store comes back: the retried batch lands
    root = Path(gcs_emulator.root) / bucket
    wait_until(lambda: count_rows(root) == 5, 90, "the retried batch in the bucket")
    wait_until(lambda: httpx.get(f"{cp.url}/ready").status_code == 200, 60, "ready again")
    assert httpx.get(f"{cp.metrics_url}/health", timeout=10).status_code == 200
    got = samples(scrape(cp))
    assert value(got, health, component="storage", status="healthy") == 1
    assert cp.stop() == 0
    assert {r["message_id"] for r in read_rows(root)} == {e["messageId"] for e in sent}


def worker_pids(cp: CollectorProcess) -> dict[int, int]:
    """shard -> pid of the worker that last said it listens (the log has "[pid] ... (shard n)")."""
    pids: dict[int, int] = {}
    for match in re.finditer(
        r"\[(\d+)\] \S+: eventkit collector listening .*\(shard (\d+)\)", cp.log()
    ):
        pids[int(match.group(2))] = int(match.group(1))
    return pids


@pytest.mark.slow
def test_the_supervisor_restarts_a_dead_worker_which_delivers_its_shard(
    collector_server: StartCollector,
) -> None:
    # Nothing flushes by age: what the killed worker acknowledged waits in its ring shard.
    cp = collector_server(workers=2, EVENTKIT_FLUSH_MAX_AGE="600")
    wait_until(lambda: len(worker_pids(cp)) == 2, 30, "both workers in the log")
    before = worker_pids(cp)
    sent: set[str] = set()

    def post_batches(n: int) -> None:
        with httpx.Client(base_url=cp.url, timeout=30) as c:
            for _ in range(n):
                batch = [ev("identify") for _ in range(10)]
                # a fresh connection each time so that both workers get some
                r = c.post("/v1/batch", json={"batch": batch}, headers={"Connection": "close"})
                assert r.status_code == 200
                sent.update(e["messageId"] for e in batch)

    post_batches(20)
    victim = before[1]
    os.kill(victim, signal.SIGKILL)

    def restarted() -> bool:
        pid = worker_pids(cp).get(1)
        if pid is None or pid == victim:
            return False
        try:
            url = f"http://127.0.0.1:{cp.metrics_port + 1}/health"
            return httpx.get(url, timeout=1.0).status_code == 200
        except httpx.HTTPError:
            return False

    wait_until(restarted, 90, "worker 1 restarted and healthy")
    assert re.search(r"worker 1 exited with -9; restarting it", cp.log())
    assert worker_pids(cp)[0] == before[0]  # the other worker was left alone
    post_batches(20)  # both serve again
    assert cp.stop() == 0
    rows = read_rows(cp.data_dir)
    assert {r["message_id"] for r in rows} == sent  # the dead worker's shard was delivered
    assert sorted(p.name for p in (cp.data_dir / "ring").glob("*.db")) == ["0.db", "1.db"]
