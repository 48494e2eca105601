"""The real posthog Python client and posthog-js's recorded requests, against the running collector.

The Python client (tests/clients pin) is pointed here by its ``host`` option only; it posts
``/batch/`` (JSON, then gzip). posthog-js's requests were recorded in headless Chromium
(tests/fixtures/posthog, see its README) in its three encodings and are replayed byte for byte.
Every mapped field is read back from the Parquet files.
"""

from __future__ import annotations

import base64
import gzip
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import unquote_plus

import httpx
import pytest

from tests.clients import PYTHON_CLIENTS, run_python_client
from tests.e2e.conftest import StartCollector, wait_until
from tests.e2e.test_e2e_collector import count_rows, read_rows

pytestmark = pytest.mark.integration

# Every call of the client that sends an event; uuids and timestamps are fixed so the test can
# check them in storage. The client runs as shipped (its background consumer batches the calls);
# ``flush()`` and ``shutdown()`` wait until everything was posted.
SCRIPT = """
import os, datetime
import posthog
from posthog import Posthog

client = Posthog(os.environ["API_KEY"], host=os.environ["HOST"],
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


FIXTURES = Path(__file__).parent.parent / "fixtures" / "posthog"
ENCODINGS = ("gzip-js", "base64", "json")


def _fixture(encoding: str) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((FIXTURES / f"requests-{encoding}.json").read_text())
    return loaded


def _decoded(request: dict[str, Any]) -> list[dict[str, Any]]:
    """The events of a recorded request, decoded here independently of the collector."""
    body = base64.b64decode(request["body_base64"])
    if body[:2] == b"\x1f\x8b":
        body = gzip.decompress(body)
    elif body.startswith(b"data="):
        body = base64.b64decode(unquote_plus(body[5:].decode()))
    value = json.loads(body)
    events = value["batch"] if isinstance(value, dict) and "batch" in value else value
    return events if isinstance(events, list) else [events]


def _replay(url: str, encoding: str) -> list[dict[str, Any]]:
    events = []
    for request in _fixture(encoding)["requests"]:
        answer = httpx.post(
            url + request["path"],
            content=base64.b64decode(request["body_base64"]),
            headers=request["headers"],
        )
        assert answer.status_code == 200, answer.text
        assert answer.json() == {"status": 1}
        events.extend(_decoded(request))
    return events


def _check_js(rows: dict[str, dict[str, Any]], events: list[dict[str, Any]]) -> None:
    names = {e["event"] for e in events}
    assert {"$pageview", "$identify", "Order Completed", "$screen", "$create_alias"} <= names
    assert {"$groupidentify", "$set"} <= names
    for e in events:
        row = rows[e["uuid"]]
        props = e["properties"]
        device = props["$device_id"]
        assert row["original_timestamp"] == datetime.fromisoformat(e["timestamp"])
        assert json.loads(row["payload"]) == e
        assert json.loads(row["context"])["library"]["name"] == "web"
        if e["event"] == "$create_alias":
            assert (row["type"], row["stream"]) == ("alias", "aliases")
            assert (row["user_id"], row["previous_id"]) == ("alias-1", "user-1")
        elif props["distinct_id"] == device:  # before identify(): anonymous
            assert (row["user_id"], row["anonymous_id"]) == (None, device)
        else:
            assert (row["user_id"], row["anonymous_id"]) == ("user-1", device)
        if e["event"] == "$identify":
            assert (row["type"], row["stream"]) == ("identify", "users")
            assert props["$anon_distinct_id"] == device
            traits = json.loads(row["traits"])
            assert traits["plan"] == "pro"
            assert traits["first_seen"] == "2024-05-06"
        elif e["event"] == "$set":
            assert row["type"] == "identify"
            assert json.loads(row["traits"]) == {"email": "a@example.com"}
        elif e["event"] == "$pageview":
            assert (row["type"], row["name"]) == ("page", "Fixture Page")
        elif e["event"] == "$screen":
            assert (row["type"], row["name"]) == ("screen", "Settings")
        elif e["event"] == "$groupidentify":
            assert (row["type"], row["group_id"]) == ("group", "acme")
            assert json.loads(row["traits"]) == {"name": "Acme"}
        elif e["event"] == "Order Completed":
            assert (row["type"], row["event"]) == ("track", "Order Completed")
            assert json.loads(row["properties"])["total"] == 42.5


def test_posthog_clients_land_mapped(collector_server: StartCollector) -> None:
    """The Python client (JSON and gzip) and posthog-js's gzip-js, base64 and JSON requests."""
    cp = collector_server(
        EVENTKIT_FLUSH_MAX_AGE="0.3", EVENTKIT_WRITE_KEYS="phc_test,phc_fixture_token"
    )
    _send(cp.url, gzip=False)
    _send(cp.url, gzip=True)  # Content-Encoding: gzip
    js = {encoding: _replay(cp.url, encoding) for encoding in ENCODINGS}
    total = 16 + sum(len(events) for events in js.values())
    wait_until(lambda: count_rows(cp.data_dir) >= total, 60, f"{total} PostHog events in Parquet")
    assert cp.stop() == 0
    rows = _by_id(cp.data_dir)
    assert len(rows) == total
    _check(rows, JSON_PREFIX)
    _check(rows, GZIP_PREFIX)
    for events in js.values():
        _check_js(rows, events)
    assert count_rows(cp.data_dir, "dead-letters") == 0


def test_posthog_write_key_and_streams_by_source_setting(
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
