"""EVENTKIT_RATE_LIMIT against a running collector: the 429 answer, a shared budget across
``--workers 2``, and a real SDK (rudder-sdk-python, which retries 429 with backoff) whose events
all land although the collector refused some of its requests.

Rates are chosen so that no bucket refills during a check that counts (0.01 requests/s: one
token per 100 s), so the counts do not depend on how fast this machine is.
"""

from __future__ import annotations

import json
import re
import uuid
from pathlib import Path

import httpx
import pyarrow.parquet as pq

from tests.clients import run_python_client
from tests.compat.sdk_scripts import PYTHON_SCRIPTS
from tests.e2e.conftest import CollectorProcess, StartCollector, wait_until

KEY = "rl-key-one"
OTHER = "rl-key-two"


def track(cp: CollectorProcess, key: str, client: httpx.Client | None = None) -> httpx.Response:
    body = {"userId": "u1", "event": "Clicked", "messageId": uuid.uuid4().hex}
    if client is None:  # a new connection per request: --workers spreads connections
        return httpx.post(f"{cp.url}/v1/track", json=body, auth=(key, ""), timeout=10.0)
    return client.post(f"{cp.url}/v1/track", json=body, auth=(key, ""))


def status_count(metrics_url: str, status: int) -> int:
    """``eventkit_api_requests_total`` with ``status`` (summed over endpoints) on one worker."""
    text = httpx.get(f"{metrics_url}/metrics", timeout=5.0).text
    total = 0.0
    for line in text.splitlines():
        if line.startswith("eventkit_api_requests_total{") and f'status="{status}"' in line:
            total += float(line.rsplit(" ", 1)[1])
    return int(total)


def stored_ids(data: Path) -> set[str]:
    ids: set[str] = set()
    for f in sorted((data / "events").rglob("*.parquet")) if (data / "events").exists() else []:
        ids.update(str(m) for m in pq.read_table(f, columns=["message_id"]).column(0).to_pylist())
    return ids


def test_over_the_limit_is_a_429_with_retry_after(collector_server: StartCollector) -> None:
    cp = collector_server(
        EVENTKIT_WRITE_KEYS=f"{KEY},{OTHER}",
        EVENTKIT_RATE_LIMIT="0.01",
        EVENTKIT_RATE_LIMIT_BURST="2",
        EVENTKIT_RATE_LIMIT_KEYS=f"{OTHER}:1:1",
    )
    with httpx.Client(timeout=10.0) as client:
        first, second, third = (track(cp, KEY, client) for _ in range(3))
        assert (first.status_code, second.status_code) == (200, 200)
        assert third.status_code == 429, third.text
        body = third.json()
        assert body["code"] == "rate_limited"
        assert "EVENTKIT_RATE_LIMIT" in body["message"]
        retry_after = int(third.headers["Retry-After"])
        assert 1 <= retry_after <= 100
        assert third.headers["X-RateLimit-Reset"] == third.headers["Retry-After"]
        # Another key has its own bucket (its override: 1 request/s, burst 1).
        assert track(cp, OTHER, client).status_code == 200
        assert track(cp, OTHER, client).status_code == 429
        wait_until(lambda: track(cp, OTHER, client).status_code == 200, 30.0, "a refilled bucket")
        # A wrong key is still a 401, not charged to anyone's bucket.
        assert track(cp, "not-a-key", client).status_code == 401
    assert status_count(cp.metrics_url, 429) >= 2


def test_workers_share_one_budget(collector_server: StartCollector) -> None:
    """Burst 4 at 0.01/s: 4 requests pass in all, whichever worker answers (not 4 per worker)."""
    cp = collector_server(
        workers=2,
        EVENTKIT_WRITE_KEYS=KEY,
        EVENTKIT_RATE_LIMIT="0.01",
        EVENTKIT_RATE_LIMIT_BURST="4",
    )
    workers = [f"http://127.0.0.1:{cp.metrics_port + n}" for n in range(2)]
    statuses: list[int] = []

    def both_answered() -> bool:
        statuses.append(track(cp, KEY).status_code)
        served = [status_count(w, 200) + status_count(w, 429) for w in workers]
        return len(statuses) >= 12 and all(n > 0 for n in served)

    wait_until(both_answered, 60.0, "both workers to answer requests")
    assert statuses.count(200) == 4, statuses
    assert statuses.count(429) == len(statuses) - 4
    assert sum(status_count(w, 200) for w in workers) == 4


def test_a_real_sdk_backs_off_and_every_event_lands(
    collector_server: StartCollector, tmp_path: Path
) -> None:
    """rudder-sdk-python sends one request per call (flush after each) at 1 request/s."""
    cp = collector_server(
        EVENTKIT_WRITE_KEYS=KEY,
        EVENTKIT_RATE_LIMIT="1",
        EVENTKIT_RATE_LIMIT_BURST="1",
        EVENTKIT_FLUSH_MAX_AGE="0.2",
    )
    prefix = f"rl-{uuid.uuid4().hex[:8]}"
    # The compatibility script, with a flush after every call: six requests in a row.
    script = re.sub(
        r"(\nanalytics\.(identify|track|page|screen|group|alias)\()",
        r"\nanalytics.flush()\1",
        PYTHON_SCRIPTS["rudderstack"],
    )
    done = run_python_client(
        "rudderstack", script, {"HOST": cp.url, "WRITE_KEY": KEY, "PREFIX": prefix}, 120.0
    )
    assert json.loads(done.stdout.strip().splitlines()[-1])["errors"] == []
    expected = {
        f"{prefix}-{call}" for call in ("identify", "track", "page", "screen", "group", "alias")
    }
    wait_until(lambda: expected <= stored_ids(cp.data_dir), 60.0, "the SDK's events in Parquet")
    assert status_count(cp.metrics_url, 429) >= 1  # it was limited, and retried
