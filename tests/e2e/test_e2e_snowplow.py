"""Snowplow, unchanged: the real snowplow-tracker Python client and recorded JavaScript-tracker
requests, sent to the running collector, read back from Parquet.

The Python client (snowplow-tracker, pinned in ``tests.clients``) runs in its own cached venv and
posts tp2 bodies or sends ``GET /i`` pixels exactly as it would to a Snowplow collector; the
JavaScript tracker's requests were recorded from @snowplow/browser-tracker in headless Chromium
(``tests/fixtures/snowplow/README.md``) and are replayed byte for byte.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.clients import run_python_client
from tests.e2e.conftest import CollectorProcess, StartCollector, free_port, wait_until
from tests.e2e.test_e2e_collector import read_rows

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "snowplow"
TP2 = "/com.snowplowanalytics.snowplow/tp2"
FAST = {"EVENTKIT_FLUSH_MAX_AGE": "0.3"}

#: Sends a page view, a structured event, a self-describing event with two contexts and a page
#: ping through the real tracker; prints the event ids it returned. ``METHOD``: post or get.
TRACKER_SCRIPT = r"""
import json, os, sys
from snowplow_tracker import Emitter, SelfDescribingJson, Subject, Tracker
from snowplow_tracker.events import PageView, PagePing, SelfDescribing, StructuredEvent

failures = []
emitter = Emitter(
    os.environ["COLLECTOR"], protocol="http", method=os.environ["METHOD"],
    batch_size=int(os.environ.get("BATCH", "10")),
    on_failure=lambda sent, unsent: failures.append(len(unsent)),
)
subject = (
    Subject().set_user_id("user-42").set_domain_user_id("duid-42").set_network_user_id("nuid-42")
    .set_lang("en-GB").set_timezone("Europe/Paris").set_screen_resolution(1920, 1080)
)
tracker = Tracker("sp-ns", emitter, subject=subject, app_id=os.environ.get("APP_ID", "shop"))
plan = SelfDescribingJson("iglu:com.acme/plan/jsonschema/1-0-0", {"plan": "pro"})
device = SelfDescribingJson("iglu:com.acme/device/jsonschema/1-0-0", {"model": "x1"})
ids = {
    "pv": tracker.track(PageView(
        page_url="https://shop.example/cart?step=2", page_title="Cart",
        referrer="https://search.example/", context=[plan],
    )),
    "se": tracker.track(StructuredEvent(
        category="checkout", action="add-to-basket", label="sku-1", property_="red",
        value=2.5, true_timestamp=1700000000123,
    )),
    "ue": tracker.track(SelfDescribing(
        SelfDescribingJson("iglu:com.acme/checkout_started/jsonschema/1-0-0",
                           {"total": 99.5, "items": 3}),
        context=[plan, device],
    )),
    "pp": tracker.track(PagePing(
        page_url="https://shop.example/cart", min_x=0, max_x=100, min_y=10, max_y=900,
    )),
}
tracker.flush()
if failures:
    sys.exit(f"the collector refused events: {failures}")
print(json.dumps(ids))
"""


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CollectorProcess]:
    """One collector (default settings) for the tests that look only at their own events.

    Module-scoped (a collector start is the slow part); ``collector_server`` is per test.
    """
    root = tmp_path_factory.mktemp("snowplow")
    port, metrics_port = free_port(), free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("EVENTKIT_")}
    env.update({"PYTHONUNBUFFERED": "1", **FAST})
    args = [sys.executable, "-m", "eventkit_collector.cli", "serve", "--port", str(port)]
    args += ["--data-dir", str(root / "data"), "--metrics-port", str(metrics_port)]
    log_path = root / "collector.log"
    with log_path.open("wb") as log_file:
        proc = subprocess.Popen(args, env=env, stdout=log_file, stderr=subprocess.STDOUT)
    cp = CollectorProcess(proc, port, metrics_port, root / "data", log_path, args)
    try:

        def ready() -> bool:
            if proc.poll() is not None:
                raise AssertionError(f"collector exited with {proc.returncode}:\n{cp.log()}")
            with contextlib.suppress(httpx.HTTPError):
                return httpx.get(f"{cp.url}/ready", timeout=1.0).status_code == 200
            return False

        wait_until(ready, 90.0, "the collector to become ready")
        yield cp
    finally:
        cp.stop()


def send_with_tracker(cp: CollectorProcess, method: str, **env: str) -> dict[str, str]:
    done = run_python_client(
        "snowplow",
        TRACKER_SCRIPT,
        {"COLLECTOR": f"127.0.0.1:{cp.port}", "METHOD": method, **env},
    )
    ids: dict[str, str] = json.loads(done.stdout.strip().splitlines()[-1])
    return ids


def wait_for_ids(
    cp: CollectorProcess, ids: set[str], kind: str = "events"
) -> dict[str, dict[str, Any]]:
    """The rows of ``ids`` (by message id), once all of them are in Parquet."""
    found: dict[str, dict[str, Any]] = {}

    def arrived() -> bool:
        found.clear()
        found.update({r["message_id"]: r for r in read_rows(cp.data_dir, kind)})
        return ids <= set(found)

    wait_until(arrived, 60, f"{len(ids)} rows in {kind}")
    return {i: found[i] for i in ids}


def check_tracker_rows(
    rows: dict[str, dict[str, Any]], ids: dict[str, str], start: datetime
) -> None:
    """The four events of TRACKER_SCRIPT, mapped as the adapter's table says."""
    pv, se, ue, pp = (rows[ids[k]] for k in ("pv", "se", "ue", "pp"))
    for row in (pv, se, ue, pp):
        assert row["user_id"] == "user-42"
        assert row["anonymous_id"] == "duid-42"  # duid wins over nuid
        context = json.loads(row["context"])
        assert context["snowplow"]["app_id"] == "shop"
        assert context["snowplow"]["tracker_network_userid"] == "nuid-42"
        assert context["snowplow"]["name_tracker"] == "sp-ns"
        assert context["locale"] == "en-GB"
        assert context["timezone"] == "Europe/Paris"
        assert context["library"] == {"name": "snowplow", "version": "py-1.1.0"}
        assert context["snowplow"]["screen_resolution"] == "1920x1080"
    now = datetime.now(UTC)
    assert (pv["type"], pv["stream"], pv["name"]) == ("page", "pages", "Cart")
    assert json.loads(pv["properties"]) == {
        "url": "https://shop.example/cart?step=2",
        "title": "Cart",
        "referrer": "https://search.example/",
        "path": "/cart",
        "search": "?step=2",
    }
    pv_context = json.loads(pv["context"])
    assert pv_context["page"]["url"] == "https://shop.example/cart?step=2"
    assert pv_context["snowplow"]["contexts"] == [
        {"schema": "iglu:com.acme/plan/jsonschema/1-0-0", "data": {"plan": "pro"}}
    ]
    # dtm -> original_timestamp (the tracker's clock, now-ish); stm -> sent_at (this tracker
    # truncates it to whole seconds).
    assert start - timedelta(seconds=5) <= pv["original_timestamp"] <= now + timedelta(seconds=5)
    assert abs(pv["sent_at"] - pv["original_timestamp"]) < timedelta(seconds=5)

    assert (se["type"], se["stream"], se["event"]) == ("track", "events", "add-to-basket")
    assert json.loads(se["properties"]) == {
        "category": "checkout",
        "label": "sku-1",
        "property": "red",
        "value": 2.5,
    }
    true_ts = datetime(2023, 11, 14, 22, 13, 20, 123000, tzinfo=UTC)  # ttm=1700000000123
    assert se["original_timestamp"] == true_ts
    assert se["timestamp"] == true_ts

    assert (ue["type"], ue["event"]) == ("track", "checkout_started")
    assert json.loads(ue["properties"]) == {"total": 99.5, "items": 3}
    ue_context = json.loads(ue["context"])["snowplow"]
    assert ue_context["event_schema"] == "iglu:com.acme/checkout_started/jsonschema/1-0-0"
    assert [c["schema"] for c in ue_context["contexts"]] == [
        "iglu:com.acme/plan/jsonschema/1-0-0",
        "iglu:com.acme/device/jsonschema/1-0-0",
    ]

    assert (pp["event"], json.loads(pp["properties"])) == (
        "Page Ping",
        {"min_x": 0, "max_x": 100, "min_y": 10, "max_y": 900},
    )


@pytest.mark.parametrize("method", ["post", "get"])
def test_python_tracker_lands_mapped(shared: CollectorProcess, method: str) -> None:
    start = datetime.now(UTC)
    ids = send_with_tracker(shared, method)
    rows = wait_for_ids(shared, set(ids.values()))
    check_tracker_rows(rows, ids, start)
    letters = [d for d in read_rows(shared.data_dir, "dead-letters") if d["message_id"] in ids]
    assert letters == []


def test_pixel_answers_gif_and_dead_letters_bad_events(shared: CollectorProcess) -> None:
    cp = shared
    query = {"e": "pv", "eid": "pixel-ok-1", "url": "https://a.example/", "duid": "d1"}
    ok = httpx.get(f"{cp.url}/i", params=query)
    assert ok.status_code == 200
    assert ok.headers["content-type"] == "image/gif"
    assert ok.content.startswith(b"GIF89a")
    # Unmappable, but a pixel: still a GIF, and still a dead letter naming the source.
    bad = httpx.get(f"{cp.url}/i", params={"e": "zz", "eid": "pixel-bad-1"})
    assert bad.status_code == 200
    assert bad.content.startswith(b"GIF89a")
    malformed = httpx.post(f"{cp.url}{TP2}", content=b"{not json")
    assert malformed.status_code == 400
    assert malformed.json()["code"] == "invalid_json"
    unfit = httpx.post(f"{cp.url}{TP2}", json={"schema": "unfit-marker", "events": []})
    assert unfit.status_code == 200

    def letters() -> dict[str, dict[str, Any]]:
        out = {}
        for d in read_rows(cp.data_dir, "dead-letters"):
            if d["message_id"] == "pixel-bad-1" or "unfit-marker" in d["payload"]:
                out[d["reason_code"]] = d
        return out

    wait_until(lambda: len(letters()) == 2, 60, "2 dead letters")
    found = letters()
    assert found["invalid_type"]["reason"].startswith("snowplow: ")
    assert found["invalid_snowplow"]["reason"].startswith("snowplow: ")
    assert wait_for_ids(cp, {"pixel-ok-1"})["pixel-ok-1"]["anonymous_id"] == "d1"


def test_app_ids_gate_snowplow_when_write_keys_are_on(collector_server: StartCollector) -> None:
    cp = collector_server(
        EVENTKIT_WRITE_KEYS="wk-secret",
        EVENTKIT_SNOWPLOW_APP_IDS="shop,blog",
        EVENTKIT_SNOWPLOW_TYPE_STREAMS='{"page": "sp_pages", "track": "sp_events"}',
        **FAST,
    )
    ids = send_with_tracker(cp, "post", APP_ID="blog")
    rows = wait_for_ids(cp, set(ids.values()))
    refused = httpx.post(
        f"{cp.url}{TP2}", json={"schema": "s", "data": [{"e": "pv", "aid": "other"}]}
    )
    assert refused.status_code == 401
    assert refused.json()["code"] == "unauthorized"
    assert "EVENTKIT_SNOWPLOW_APP_IDS" in refused.json()["message"]
    no_aid = httpx.get(f"{cp.url}/i", params={"e": "pv"})
    assert no_aid.status_code == 401
    assert no_aid.json()["code"] == "unauthorized"
    as_image = httpx.get(f"{cp.url}/i", params={"e": "pv"}, headers={"Accept": "image/*"})
    assert as_image.status_code == 401
    assert as_image.content.startswith(b"GIF89a")
    assert as_image.headers["x-eventkit-error"] == "unauthorized"
    # Segment endpoints still need their write key.
    assert httpx.post(f"{cp.url}/v1/track", json={"userId": "u", "event": "e"}).status_code == 401
    # The per-source stream override: sp_pages / sp_events instead of pages / events.
    streams = {message_id: row["stream"] for message_id, row in rows.items()}
    assert streams[ids["pv"]] == "sp_pages"
    assert {streams[ids[k]] for k in ("se", "ue", "pp")} == {"sp_events"}


def test_cors_echoes_origin_with_credentials(shared: CollectorProcess) -> None:
    cp = shared
    origin = "https://shop.example"
    preflight = httpx.options(
        f"{cp.url}{TP2}",
        headers={
            "Origin": origin,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "content-type",
        },
    )
    assert preflight.status_code == 204
    assert preflight.headers["access-control-allow-origin"] == origin
    assert preflight.headers["access-control-allow-credentials"] == "true"
    assert "content-type" in preflight.headers["access-control-allow-headers"].lower()
    body = {"schema": "s", "data": [{"e": "pv", "duid": "d", "url": "https://shop.example/"}]}
    post = httpx.post(f"{cp.url}{TP2}", json=body, headers={"Origin": origin})
    assert post.status_code == 200
    assert post.headers.get_list("access-control-allow-origin") == [origin]
    assert post.headers["access-control-allow-credentials"] == "true"
    pixel = httpx.get(f"{cp.url}/i", params={"e": "pv"}, headers={"Origin": origin})
    assert pixel.headers.get_list("access-control-allow-origin") == [origin]
    assert pixel.headers["access-control-allow-credentials"] == "true"
    # Segment's endpoints keep the wildcard and no credentials.
    segment = httpx.post(
        f"{cp.url}/v1/track", json={"userId": "u", "event": "e"}, headers={"Origin": origin}
    )
    assert segment.headers.get("access-control-allow-credentials") is None


def test_recorded_javascript_tracker_requests_land(shared: CollectorProcess) -> None:
    fixture = json.loads((FIXTURES / "browser-tracker-4.10.1.json").read_text())
    expected: dict[str, dict[str, Any]] = {}  # eid -> the recorded event
    for request in fixture["requests"]:
        url = f"{shared.url}{request['path']}" + (
            f"?{request['query']}" if request["query"] else ""
        )
        answer = httpx.request(
            request["method"],
            url,
            headers=request["headers"],
            content=request["body"].encode() or None,
        )
        origin = request["headers"]["origin"]
        assert answer.headers.get_list("access-control-allow-origin") == [origin], request
        assert answer.headers["access-control-allow-credentials"] == "true"
        if request["method"] == "OPTIONS":
            assert answer.status_code == 204
            continue
        assert answer.status_code == 200, answer.text
        if request["method"] == "GET":
            assert answer.content.startswith(b"GIF89a")
            events = [dict(httpx.QueryParams(request["query"]))]
        else:
            events = json.loads(request["body"])["data"]
        expected.update({event["eid"]: event for event in events})
    assert len(expected) == 6
    rows = wait_for_ids(shared, set(expected))
    names = {}
    for eid, row in rows.items():
        sent = expected[eid]
        assert row["user_id"] == "user-js-1"
        assert row["anonymous_id"] == sent["duid"]
        assert row["original_timestamp"] == datetime.fromtimestamp(int(sent["dtm"]) / 1000, UTC)
        assert row["sent_at"] == datetime.fromtimestamp(int(sent["stm"]) / 1000, UTC)
        context = json.loads(row["context"])
        assert context["userAgent"].startswith("Mozilla/5.0")  # from the request's header
        assert context["page"]["url"] == sent["url"]
        assert context["snowplow"]["app_id"] == "web-shop"
        assert context["snowplow"]["platform"] == "web"
        schemas = [c["schema"] for c in context["snowplow"]["contexts"]]
        assert "iglu:com.snowplowanalytics.snowplow/web_page/jsonschema/1-0-0" in schemas
        names[eid] = (row["type"], row["stream"], row["event"] or row["name"])
        if sent["e"] == "se":
            assert json.loads(row["properties"]) == {
                "category": "checkout",
                "label": "sku-9",
                "property": "blue",
                "value": 4.5,
            }
        if sent["e"] == "ue":
            assert json.loads(row["properties"]) == {"total": 12.5, "items": 2}
            assert "iglu:com.acme/plan/jsonschema/1-0-0" in schemas
    assert sorted(names.values()) == [
        ("page", "pages", "Cart"),
        ("page", "pages", "Cart"),
        ("track", "events", "add-to-basket"),
        ("track", "events", "add-to-basket"),
        ("track", "events", "checkout_started"),
        ("track", "events", "checkout_started"),
    ]
