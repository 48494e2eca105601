"""posthog-js (the npm package's browser bundle) from a real page, pointed at the collector.

Its start-up calls (remote config, flags) are answered by the collector; capture, identify and
pageview land in Parquet with the uuids posthog-js gave them (recorded by its own ``before_send``
hook), the distinct ids, event names, properties and page context.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from tests.clients import NODE_PACKAGES
from tests.clients.browser import Browser, Site, wait_for
from tests.compat.conftest import WRITE_KEY, landed
from tests.compat.fault_proxy import FaultProxy
from tests.e2e.conftest import CollectorProcess

# posthog-js drops events from user agents that look like bots ("HeadlessChrome"), and from
# browsers driven by automation unless told otherwise (opt_out_useragent_filter in the page).
USER_AGENT = (
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/120.0.0.0 Safari/537.36"
)


def posthog_page(host: str, user: str) -> str:
    return f"""<!doctype html><html><head><title>Shop cart</title>
<script src="/node_modules/posthog-js/dist/array.full.js"></script></head><body><script>
window.sent = [];
posthog.init({json.dumps(WRITE_KEY)}, {{
  api_host: {json.dumps(host)},
  autocapture: false, capture_pageview: false, capture_pageleave: false,
  disable_session_recording: true, person_profiles: "identified_only",
  // playwright's navigator.webdriver makes posthog-js take the page for a bot and drop
  // everything; its own advice for end-to-end tests:
  opt_out_useragent_filter: true,
  request_queue_config: {{flush_interval_ms: 200}},
  before_send: (event) => {{ window.sent.push(event); return event; }},
  loaded: (ph) => setTimeout(() => {{
    ph.capture("$pageview");
    ph.identify({json.dumps(user)}, {{plan: "pro"}});
    ph.capture("Order Completed", {{total: 42.5, items: 3}});
    window.called = true;
  }}, 0),
}});
</script></body></html>"""


def run(
    browser: Browser, site: Site, host: str, collector: CollectorProcess
) -> tuple[list[dict[str, Any]], dict[str, dict[str, Any]], list[tuple[str, str]], str]:
    user = f"ph-user-{uuid.uuid4().hex[:8]}"
    url = site.add(f"/posthog-{user}.html", posthog_page(host, user))
    with browser.page(USER_AGENT) as (page, log):
        page.goto(url)
        try:
            wait_for(page, "window.called && window.sent.length >= 3")
        except Exception as exc:
            state = page.evaluate("[!!window.called, (window.sent || []).length]")
            raise AssertionError(f"posthog-js did not send: {state} {log}") from exc
        sent: list[dict[str, Any]] = page.evaluate("window.sent")
        ids = {e["uuid"] for e in sent}
        # the page stays open until posthog-js's queue (and its retries) delivered everything
        stored = landed(collector, len(ids), lambda r: r["message_id"] in ids)
        assert not log.failed, log.failed
        assert not log.foreign(site.url, host), log.foreign(site.url, host)
        paths = log.to(host)
    return sent, stored, paths, url


def check(sent: list[dict[str, Any]], stored: dict[str, dict[str, Any]], url: str) -> None:
    by_event = {e["event"]: e for e in sent}
    assert {"$pageview", "$identify", "Order Completed"} <= set(by_event)
    user = by_event["$identify"]["properties"]["distinct_id"]
    device = by_event["$pageview"]["properties"]["$device_id"]
    for event in sent:
        row = stored[event["uuid"]]
        assert abs(row["timestamp"] - row["received_at"]) < timedelta(seconds=60)
        sent_at = event["timestamp"]
        stamp = sent_at if isinstance(sent_at, datetime) else datetime.fromisoformat(sent_at)
        assert row["original_timestamp"] == stamp
        context = json.loads(row["context"])
        assert context["library"] == {"name": "web", "version": NODE_PACKAGES["posthog-js"]}
    page = stored[by_event["$pageview"]["uuid"]]
    assert (page["type"], page["stream"], page["name"]) == ("page", "pages", "Shop cart")
    assert page["anonymous_id"] == device
    assert json.loads(page["properties"])["$current_url"] == url
    ident = stored[by_event["$identify"]["uuid"]]
    assert (ident["type"], ident["user_id"], ident["anonymous_id"]) == ("identify", user, device)
    assert json.loads(ident["traits"])["plan"] == "pro"  # with posthog-js's $set_once ($initial_*)
    track = stored[by_event["Order Completed"]["uuid"]]
    assert (track["type"], track["event"], track["user_id"]) == ("track", "Order Completed", user)
    props = json.loads(track["properties"])
    assert (props["total"], props["items"]) == (42.5, 3)


def test_posthog_js(
    collector: CollectorProcess,
    fault_proxy: Callable[..., FaultProxy],
    browser: Browser,
    site: Site,
) -> None:
    proxy = fault_proxy(collector.url, 0)
    sent, stored, paths, url = run(browser, site, proxy.url, collector)
    check(sent, stored, url)
    # start-up calls answered by the collector (remote config and flags)
    assert any(p.startswith(f"/array/{WRITE_KEY}/config") for _, p in paths), paths
    # The events' POSTs, as the proxy received them: the browser's log records a request when
    # its response has been handled, which can come after the events landed (seen in CI).
    posts = [s.split(" ", 1)[1] for s in proxy.seen if s.startswith("POST ")]
    assert any(p.startswith(("/e/", "/i/v0/e/", "/batch/")) for p in posts), proxy.seen


def test_posthog_js_retries_503(
    collector: CollectorProcess,
    fault_proxy: Callable[..., FaultProxy],
    browser: Browser,
    site: Site,
) -> None:
    proxy = fault_proxy(collector.url, 2)
    sent, stored, _, url = run(browser, site, proxy.url, collector)
    check(sent, stored, url)
    assert len(proxy.refused) == 2
