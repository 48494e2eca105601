"""The real posthog Python client (tests/clients pin), unchanged, against the running collector.

The client is pointed here by its ``host`` option only; it posts ``/batch/`` (JSON, then gzip).
Every mapped field is read back from the Parquet files.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.clients import PYTHON_CLIENTS, run_python_client
from tests.e2e.conftest import StartCollector, wait_until
from tests.e2e.test_e2e_collector import count_rows, read_rows

pytestmark = pytest.mark.integration

# Every call of the client that sends an event; uuids and timestamps are fixed so the test can
# check them in storage. ``sync_mode`` posts each call at once (no background thread to race).
SCRIPT = """
import os, datetime
import posthog
from posthog import Posthog

client = Posthog(os.environ["API_KEY"], host=os.environ["HOST"], sync_mode=True,
                 gzip=os.environ.get("GZIP") == "1", enable_exception_autocapture=False)
T = datetime.datetime(2024, 5, 6, 7, 8, 9, tzinfo=datetime.timezone.utc)
P = os.environ["PREFIX"]
client.capture("Order Completed", distinct_id="user-1", properties={"total": 42.5, "items": 3},
               uuid=P + "0000001", timestamp=T)
client.capture("$pageview", distinct_id="user-1",
               properties={"$current_url": "https://shop.example/cart", "title": "Cart"},
               uuid=P + "0000002", timestamp=T)
client.capture("$screen", distinct_id="user-1", properties={"$screen_name": "Settings"},
               uuid=P + "0000003", timestamp=T)
client.set(distinct_id="user-1", properties={"plan": "pro", "email": "a@example.com"},
           uuid=P + "0000004", timestamp=T)
client.set_once(distinct_id="user-1", properties={"first_seen": "2024-05-06"},
                uuid=P + "0000005", timestamp=T)
client.alias(previous_id="anon-7", distinct_id="user-1",
             uuid=P + "0000006", timestamp=T)
client.group_identify("company", "acme", {"name": "Acme", "seats": 12}, distinct_id="user-1",
                      uuid=P + "0000007", timestamp=T)
client.capture("signup", distinct_id="anon-7",
               properties={"$anon_distinct_id": "anon-7", "$set": {"source": "ad"}},
               uuid=P + "0000008", timestamp=T)
client.flush()
client.shutdown()
"""

T = datetime(2024, 5, 6, 7, 8, 9, tzinfo=UTC)


def _uuid(n: int, prefix: str = "00000000-0000-4000-8000-00000") -> str:
    return f"{prefix}{n:07d}"


JSON_PREFIX = "00000000-0000-4000-8000-00000"
GZIP_PREFIX = "00000000-0000-4000-8000-11111"


def _by_id(root: Path) -> dict[str, dict[str, Any]]:
    return {row["message_id"]: row for row in read_rows(root)}


def _send(url: str, gzip: bool) -> None:
    env = {"API_KEY": "phc_test", "HOST": url, "GZIP": "1" if gzip else "0"}
    run_python_client("posthog", SCRIPT, {**env, "PREFIX": GZIP_PREFIX if gzip else JSON_PREFIX})


def _check(all_rows: dict[str, dict[str, Any]], prefix: str) -> None:
    rows = {k: v for k, v in all_rows.items() if k.startswith(prefix)}
    assert len(rows) == 8

    def _uuid(n: int) -> str:
        return f"{prefix}{n:07d}"

    track = rows[_uuid(1)]
    assert (track["type"], track["stream"]) == ("track", "events")
    assert track["event"] == "Order Completed"
    assert track["user_id"] == "user-1"
    assert track["anonymous_id"] is None
    props = json.loads(track["properties"])
    assert props["total"] == 42.5
    assert props["items"] == 3
    assert props["$lib"] == "posthog-python"
    assert props["$lib_version"] == PYTHON_CLIENTS["posthog"][1]
    assert json.loads(track["context"])["library"] == {
        "name": "posthog-python",
        "version": PYTHON_CLIENTS["posthog"][1],
    }
    assert track["original_timestamp"] == T
    # sent_at came with the batch: timestamp is corrected by the client's clock (same clock here).
    assert abs((track["timestamp"] - T).total_seconds()) < 5
    assert track["sent_at"] is not None

    page = rows[_uuid(2)]
    assert (page["type"], page["stream"], page["name"]) == ("page", "pages", "Cart")
    assert json.loads(page["properties"])["$current_url"] == "https://shop.example/cart"

    screen = rows[_uuid(3)]
    assert (screen["type"], screen["stream"], screen["name"]) == ("screen", "screens", "Settings")

    identify = rows[_uuid(4)]
    assert (identify["type"], identify["stream"], identify["user_id"]) == (
        "identify",
        "users",
        "user-1",
    )
    assert json.loads(identify["traits"]) == {"plan": "pro", "email": "a@example.com"}
    assert json.loads(rows[_uuid(5)]["traits"]) == {"first_seen": "2024-05-06"}

    alias = rows[_uuid(6)]
    assert (alias["type"], alias["stream"]) == ("alias", "aliases")
    assert (alias["user_id"], alias["previous_id"]) == ("user-1", "anon-7")

    group = rows[_uuid(7)]
    assert (group["type"], group["stream"], group["group_id"]) == ("group", "groups", "acme")
    assert group["user_id"] == "user-1"
    assert json.loads(group["traits"]) == {"name": "Acme", "seats": 12}
    assert json.loads(group["properties"])["$group_type"] == "company"

    signup = rows[_uuid(8)]
    assert (signup["type"], signup["event"]) == ("track", "signup")
    assert json.loads(signup["traits"]) == {"source": "ad"}
    for row in rows.values():
        assert json.loads(row["payload"])["uuid"] == row["message_id"]


def test_posthog_python_client_lands_mapped(collector_server: StartCollector) -> None:
    cp = collector_server(EVENTKIT_FLUSH_MAX_AGE="0.3")
    _send(cp.url, gzip=False)
    _send(cp.url, gzip=True)  # Content-Encoding: gzip
    wait_until(lambda: count_rows(cp.data_dir) >= 16, 60, "16 PostHog events in Parquet")
    assert cp.stop() == 0
    rows = _by_id(cp.data_dir)
    assert len(rows) == 16
    _check(rows, JSON_PREFIX)
    _check(rows, GZIP_PREFIX)
    assert count_rows(cp.data_dir, "dead-letters") == 0


def test_posthog_api_key_is_the_write_key_and_streams_follow_the_source_setting(
    collector_server: StartCollector,
) -> None:
    cp = collector_server(
        EVENTKIT_WRITE_KEYS="phc_test",
        EVENTKIT_FLUSH_MAX_AGE="0.3",
        EVENTKIT_SOURCE_STREAMS=json.dumps({"posthog": {"track": "ph_events"}}),
    )
    _send(cp.url, gzip=False)
    wait_until(lambda: count_rows(cp.data_dir) >= 8, 60, "8 PostHog events in Parquet")
    wrong = httpx.post(
        f"{cp.url}/batch/",
        json={"api_key": "phc_other", "batch": [{"event": "x", "distinct_id": "u"}]},
    )
    assert wrong.status_code == 401
    assert wrong.json()["code"] == "unauthorized"
    assert "detail" in wrong.json()
    assert cp.stop() == 0
    rows = _by_id(cp.data_dir)
    assert len(rows) == 8
    assert rows[_uuid(1)]["stream"] == "ph_events"  # track, overridden for PostHog
    assert rows[_uuid(2)]["stream"] == "pages"  # the other calls keep the type streams
