"""The real amplitude-analytics Python client (tests/clients pin), unchanged, against the collector.

It is pointed here by ``Config(server_url=...)`` only: once at the HTTP V2 API (``/2/httpapi``)
and once, with ``use_batch=True``, at the Batch API (``/batch``). Every mapped field is read back
from the Parquet files; a refused event would make the client log an error, so none must appear.
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

SCRIPT = """
import logging, os, sys
from amplitude import Amplitude, BaseEvent, Config, EventOptions, Identify, Revenue

logging.basicConfig(stream=sys.stderr, level=logging.INFO)
P, URL = os.environ["PREFIX"], os.environ["URL"]
answers = []

def callback(event, code, message=None):
    answers.append(code)
    print("callback", event.event_type, code, message, file=sys.stderr)

config = Config(server_url=URL, use_batch=URL.endswith("/batch"), flush_queue_size=100,
                flush_interval_millis=200,
                callback=callback)
client = Amplitude("amp-key", config)
T = 1714979289000  # 2024-05-06T07:08:09Z
client.track(BaseEvent(event_type="Song Played", user_id="user-1", device_id="device-1",
                       time=T, insert_id=P + "-track",
                       event_properties={"title": "Blue", "seconds": 215},
                       platform="Python", os_name="Linux", language="en"))
identify = Identify().set("plan", "pro").set_once("first_seen", "2024-05-06").add("logins", 1)
client.identify(identify, EventOptions(user_id="user-1", device_id="device-1", time=T,
                                       insert_id=P + "-identify"))
client.revenue(Revenue(price=9.99, quantity=2, product_id="sku-1", revenue_type="purchase"),
               EventOptions(user_id="user-1", time=T, insert_id=P + "-revenue"))
client.track(BaseEvent(event_type="Opened App", device_id="device-2", time=T,
                       insert_id=P + "-anonymous"))
client.flush()
client.shutdown()
assert answers == [200, 200, 200, 200], answers
"""

T = datetime(2024, 5, 6, 7, 8, 9, tzinfo=UTC)


def _send(url: str, prefix: str) -> None:
    run_python_client("amplitude", SCRIPT, {"URL": url, "PREFIX": prefix})


def _by_id(root: Path) -> dict[str, dict[str, Any]]:
    return {row["message_id"]: row for row in read_rows(root)}


def _check(rows: dict[str, dict[str, Any]], prefix: str) -> None:
    track = rows[f"{prefix}-track"]
    assert (track["type"], track["stream"]) == ("track", "events")
    assert track["event"] == "Song Played"
    assert (track["user_id"], track["anonymous_id"]) == ("user-1", "device-1")
    assert json.loads(track["properties"]) == {"title": "Blue", "seconds": 215}
    assert track["original_timestamp"] == T
    assert track["timestamp"] == T
    context = json.loads(track["context"])
    assert context["library"] == {
        "name": "amplitude-python",
        "version": PYTHON_CLIENTS["amplitude"][1],
    }
    assert context["os"] == {"name": "Linux"}
    assert context["locale"] == "en"

    identify = rows[f"{prefix}-identify"]
    assert (identify["type"], identify["stream"]) == ("identify", "users")
    assert (identify["user_id"], identify["anonymous_id"]) == ("user-1", "device-1")
    assert json.loads(identify["traits"]) == {"plan": "pro", "first_seen": "2024-05-06"}
    # $add is not applied to traits; it stays in the stored event
    assert json.loads(identify["payload"])["user_properties"]["$add"] == {"logins": 1}

    revenue = rows[f"{prefix}-revenue"]
    assert (revenue["type"], revenue["event"]) == ("track", "revenue_amount")
    props = json.loads(revenue["properties"])
    assert props["$price"] == 9.99
    assert props["$quantity"] == 2
    assert props["$productId"] == "sku-1"

    anonymous = rows[f"{prefix}-anonymous"]
    assert (anonymous["user_id"], anonymous["anonymous_id"]) == (None, "device-2")


def test_amplitude_python_client_lands_mapped(collector_server: StartCollector) -> None:
    cp = collector_server(EVENTKIT_FLUSH_MAX_AGE="0.3", EVENTKIT_WRITE_KEYS="amp-key")
    _send(f"{cp.url}/2/httpapi", "v2")
    _send(f"{cp.url}/batch", "batch")
    # A misfit inside a valid body: 200 for the body (the SDK would resend the rest and drop
    # it otherwise), the event in the dead letters.
    bad = httpx.post(
        f"{cp.url}/2/httpapi",
        json={
            "api_key": "amp-key",
            "events": [{"user_id": "u"}, {"event_type": "ok", "user_id": "u"}],
        },
    )
    assert bad.status_code == 200
    assert bad.json()["code"] == 200
    assert bad.json()["events_ingested"] == 2
    broken = httpx.post(f"{cp.url}/2/httpapi", content=b'{"api_key": "amp-key", "events": [')
    assert broken.status_code == 400
    assert broken.json()["code"] == 400
    assert broken.json()["error"] == "invalid_json"
    wrong_key = httpx.post(f"{cp.url}/batch", json={"api_key": "nope", "events": []})
    assert wrong_key.status_code == 401
    assert wrong_key.json()["code"] == 401
    wait_until(lambda: count_rows(cp.data_dir) >= 9, 60, "9 Amplitude events in Parquet")
    wait_until(lambda: count_rows(cp.data_dir, "dead-letters") >= 1, 60, "the misfit dead letter")
    assert cp.stop() == 0
    rows = _by_id(cp.data_dir)
    assert len(rows) == 9
    _check(rows, "v2")
    _check(rows, "batch")
    (dead,) = read_rows(cp.data_dir, "dead-letters")
    assert dead["reason_code"] == "missing_field"
    assert dead["reason"].startswith("Amplitude event")
