"""The Snowplow JavaScript tracker (@snowplow/browser-tracker's UMD build) from a real page.

Page view, structured and self-describing events, POSTed (JSON, credentialed CORS with its
preflight) and as GET pixels, land in Parquet with the event ids the tracker gave them (read
through its own plugin hook ``afterTrack``), the user and domain user ids, names, properties,
page context and timestamps.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from tests.clients import NODE_PACKAGES
from tests.clients.browser import Browser, Site, wait_for
from tests.compat.conftest import SNOWPLOW_APP_ID, landed, rows
from tests.compat.fault_proxy import FaultProxy
from tests.e2e.conftest import CollectorProcess

TRACKER = "/node_modules/@snowplow/browser-tracker/dist/index.umd.min.js"


def snowplow_page(collector: str, method: str, user: str) -> str:
    options = {"appId": SNOWPLOW_APP_ID, "eventMethod": method, "bufferSize": 1}
    return f"""<!doctype html><html><head><title>Cart</title><script src="{TRACKER}"></script>
</head><body><script>
var sp = window.snowplowBrowserTracking;
window.sent = [];
sp.newTracker("sp", {json.dumps(collector)}, {json.dumps(options)});
sp.addPlugin({{plugin: {{afterTrack: function (payload) {{ window.sent.push(payload); }}}}}});
sp.setUserId({json.dumps(user)});
sp.trackPageView();
sp.trackStructEvent({{category: "checkout", action: "add-to-basket", label: "sku-9",
                     property: "blue", value: 4.5}});
sp.trackSelfDescribingEvent({{
  event: {{schema: "iglu:com.acme/checkout_started/jsonschema/1-0-0",
          data: {{total: 12.5, items: 2}}}}
}});
</script></body></html>"""


def flush_until_landed(page: Any, collector: CollectorProcess, ids: set[str]) -> None:
    """The tracker retries a failed request only on its next flush (the next event, a page
    load, or ``flushBuffer()``): the page flushes, as an app's next event would, until all landed."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if len({r["message_id"] for r in rows(collector.data_dir)} & ids) == len(ids):
            return
        page.evaluate("window.snowplowBrowserTracking.flushBuffer()")
        page.wait_for_timeout(250)  # the poll's interval


def run(
    browser: Browser,
    site: Site,
    host: str,
    collector: CollectorProcess,
    method: str,
    refused: bool = False,
) -> tuple[list[dict[str, Any]], dict[str, dict[str, Any]], str]:
    user = f"sp-user-{uuid.uuid4().hex[:8]}"
    url = site.add(f"/snowplow-{user}.html", snowplow_page(host, method, user))
    with browser.page() as (page, log):
        page.goto(url)
        wait_for(page, "window.sent.length >= 3")
        sent: list[dict[str, Any]] = page.evaluate("window.sent")
        ids = {e["eid"] for e in sent}
        if refused:
            flush_until_landed(page, collector, ids)
        # open until the tracker (and its retries) delivered everything
        stored = landed(collector, len(ids), lambda r: r["message_id"] in ids)
        assert not log.failed, log.failed
        assert not log.foreign(site.url, host), log.foreign(site.url, host)
    return sent, stored, url


def check(sent: list[dict[str, Any]], stored: dict[str, dict[str, Any]], url: str) -> None:
    by_kind = {e["e"]: e for e in sent}
    assert set(by_kind) == {"pv", "se", "ue"}
    for event in sent:
        row = stored[event["eid"]]
        assert row["user_id"] == event["uid"]
        assert row["anonymous_id"] == event["duid"]
        assert row["original_timestamp"] == datetime.fromtimestamp(int(event["dtm"]) / 1000, UTC)
        assert abs(row["timestamp"] - row["received_at"]) < timedelta(seconds=60)
        context = json.loads(row["context"])
        assert context["page"]["url"] == url
        version = NODE_PACKAGES["@snowplow/browser-tracker"]
        assert context["library"] == {"name": "snowplow", "version": f"js-{version}"}
    page = stored[by_kind["pv"]["eid"]]
    assert (page["type"], page["stream"], page["name"]) == ("page", "pages", "Cart")
    se = stored[by_kind["se"]["eid"]]
    assert (se["type"], se["event"]) == ("track", "add-to-basket")
    props = json.loads(se["properties"])
    assert (props["category"], props["label"], props["value"]) == ("checkout", "sku-9", 4.5)
    ue = stored[by_kind["ue"]["eid"]]
    assert (ue["type"], ue["event"]) == ("track", "checkout_started")
    assert json.loads(ue["properties"]) == {"total": 12.5, "items": 2}


@pytest.mark.parametrize("method", ["post", "get"])
def test_snowplow_js(
    collector: CollectorProcess,
    fault_proxy: Callable[..., FaultProxy],
    browser: Browser,
    site: Site,
    method: str,
) -> None:
    proxy = fault_proxy(collector.url, 0)
    sent, stored, url = run(browser, site, proxy.url, collector, method)
    check(sent, stored, url)
    if method == "post":  # JSON with credentials: preflighted
        assert "OPTIONS /com.snowplowanalytics.snowplow/tp2" in proxy.seen


def test_snowplow_js_retries_503(
    collector: CollectorProcess,
    fault_proxy: Callable[..., FaultProxy],
    browser: Browser,
    site: Site,
) -> None:
    proxy = fault_proxy(collector.url, 2)
    sent, stored, url = run(browser, site, proxy.url, collector, "post", refused=True)
    check(sent, stored, url)
    assert len(proxy.refused) == 2
