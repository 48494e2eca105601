"""Segment's analytics.js (analytics-next 1.84.3) from a real page, with nothing from Segment.

The page is served from its own origin; the collector serves the CDN settings document and (with
``EVENTKIT_SEGMENT_BUNDLES_DIR``) the script and its chunks. Each test checks the events in Parquet
against what analytics.js itself says it sent (message ids, anonymous id, timestamps), that no
request went anywhere but the site and the collector, and that none failed (a refused CORS
preflight fails the request).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import pytest

from tests.clients.browser import Browser, PageLog, Site, wait_for
from tests.compat.conftest import WRITE_KEY, landed
from tests.compat.fault_proxy import FaultProxy
from tests.e2e.conftest import CollectorProcess

VERSION = "1.84.3"


# The calls every page makes once analytics.js is ready; each ctx.event is kept for the checks.
CALLS = """
async function calls(analytics) {
  const out = [];
  out.push((await analytics.identify('user-42', {email: 'ada@example.com', plan: 'pro'})).event);
  out.push((await analytics.track('Order Completed', {revenue: 42.5, currency: 'EUR'})).event);
  out.push((await analytics.page('Docs', 'Install', {section: 'browser'})).event);
  return out;
}
"""

# Segment's snippet (5.2), unchanged but for where it loads the script from: `analytics._cdn`.
SNIPPET = """
!function(){var i="analytics",analytics=window[i]=window[i]||[];if(!analytics.initialize)if(
analytics.invoked)window.console&&console.error&&console.error("Segment snippet included twice.");
else{analytics.invoked=!0;analytics.methods=["trackSubmit","trackClick","trackLink","trackForm",
"pageview","identify","reset","group","track","ready","alias","debug","page","screen","once","off",
"on","addSourceMiddleware","addIntegrationMiddleware","setAnonymousId","addDestinationMiddleware",
"register"];analytics.factory=function(e){return function(){if(window[i].initialized)return window[
i][e].apply(window[i],arguments);var n=Array.prototype.slice.call(arguments);if(["track","screen",
"alias","group","page","identify"].indexOf(e)>-1){var c=document.querySelector(
"link[rel='canonical']");n.push({__t:"bpc",c:c&&c.getAttribute("href")||void 0,p:location.pathname,
u:location.href,s:location.search,t:document.title,r:document.referrer})}n.unshift(e);analytics.push(
n);return analytics}};for(var n=0;n<analytics.methods.length;n++){var key=analytics.methods[n];
analytics[key]=analytics.factory(key)}analytics.load=function(key,n){var t=document.createElement(
"script");t.type="text/javascript";t.async=!0;t.setAttribute("data-global-segment-analytics-key",i);
t.src=analytics._cdn+"/analytics.js/v1/"+key+"/analytics.min.js";var r=document.getElementsByTagName(
"script")[0];r.parentNode.insertBefore(t,r);analytics._loadOptions=n};analytics._writeKey="%(key)s";
analytics._cdn="%(cdn)s";analytics.SNIPPET_VERSION="5.2.0";
analytics.load("%(key)s", %(options)s);
}}();
"""


def snippet_page(cdn: str, options: dict[str, Any]) -> str:
    """The site's page: the snippet, then the calls once analytics.js is ready."""
    snippet = SNIPPET % {"key": WRITE_KEY, "cdn": cdn, "options": json.dumps(options)}
    return f"""<!doctype html><html><head><title>Install docs</title>
<script>{snippet}</script>
<script>{CALLS}
window.analytics.ready(() => calls(window.analytics).then(
  (events) => {{ window.sent = events; }}, (err) => {{ window.failed = String(err); }}));
</script></head><body>docs</body></html>"""


def umd_page(cdn: str, options: dict[str, Any]) -> str:
    """The npm package's UMD build loaded by the site itself, pointed at the collector."""
    return f"""<!doctype html><html><head><title>Install docs</title>
<script src="/node_modules/@segment/analytics-next/dist/umd/index.js"></script>
<script>{CALLS}
AnalyticsNext.AnalyticsBrowser.load({{writeKey: '{WRITE_KEY}', cdnURL: '{cdn}'}},
  {json.dumps(options)})
  .then(([analytics]) => calls(analytics))
  .then((events) => {{ window.sent = events; }}, (err) => {{ window.failed = String(err); }});
</script></head><body>docs</body></html>"""


@dataclass
class Run:
    """What one page sent (analytics.js's own ctx.event of each call) and did."""

    sent: list[dict[str, Any]]
    log: PageLog
    user_agent: str

    def mine(self, row: dict[str, Any]) -> bool:
        """A stored row of this page (each page has a fresh browser context: its own anonymousId)."""
        return bool(row["anonymous_id"] == self.sent[0]["anonymousId"])


def run_page(
    browser: Browser,
    url: str,
    origins: tuple[str, ...],
    hold: Callable[[Run], object] | None = None,
) -> Run:
    """Open ``url``, wait for its calls; ``hold(run)`` runs before the page closes."""
    with browser.page() as (page, log):
        page.goto(url)
        wait_for(page, "window.sent || window.failed")
        failed = page.evaluate("window.failed || null")
        assert failed is None, f"{failed}\n{log.errors}"
        run = Run(page.evaluate("window.sent"), log, page.evaluate("navigator.userAgent"))
        if hold is not None:  # e.g. until a retrying SDK's events have landed
            hold(run)
    assert not log.foreign(*origins), f"requests outside the test: {log.foreign(*origins)}"
    return run


def check_events(rows: dict[str, dict[str, Any]], run: Run, page_url: str) -> None:
    """Each event analytics.js sent is stored once with its ids, names, properties and context."""
    sent, ua = run.sent, run.user_agent
    assert set(rows) == {e["messageId"] for e in sent}
    anonymous = {e["anonymousId"] for e in sent}
    assert len(anonymous) == 1
    assert None not in anonymous
    by_type = {r["type"]: r for r in rows.values()}
    assert set(by_type) == {"identify", "track", "page"}
    for event in sent:
        row = rows[event["messageId"]]
        assert row["anonymous_id"] == event["anonymousId"]
        assert row["user_id"] == "user-42"
        assert row["original_timestamp"] == _parse(event["timestamp"])
        # sentAt (or the batch's) corrects the client clock: within seconds of arrival.
        assert abs(row["timestamp"] - row["received_at"]) < timedelta(seconds=30)
        context = json.loads(row["context"])
        assert context["page"]["url"] == page_url
        assert context["page"]["title"] == "Install docs"
        assert context["library"]["name"] == "analytics.js"
        assert context["library"]["version"].endswith(VERSION)
        assert context["userAgent"] == ua
    assert json.loads(by_type["identify"]["traits"]) == {"email": "ada@example.com", "plan": "pro"}
    assert by_type["identify"]["stream"] == "users"
    track = by_type["track"]
    assert (track["stream"], track["event"]) == ("events", "Order Completed")
    assert json.loads(track["properties"]) == {"revenue": 42.5, "currency": "EUR"}
    page = by_type["page"]
    assert (page["stream"], page["name"]) == ("pages", "Install")
    props = json.loads(page["properties"])
    assert props["section"] == "browser"
    assert props["url"] == page_url


def _parse(value: str | datetime) -> datetime:
    """ctx.event.timestamp: a JS Date (playwright hands it over as a datetime) or ISO text."""
    if isinstance(value, datetime):
        return value
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def test_snippet_standard_delivery(
    collector: CollectorProcess,
    fault_proxy: Callable[..., FaultProxy],
    browser: Browser,
    site: Site,
) -> None:
    """The snippet loads analytics.js and its settings from the collector, one request per event."""
    proxy = fault_proxy(collector.url, 0)
    url = site.add("/snippet.html", snippet_page(proxy.url, {}))
    run = run_page(browser, url, (site.url, proxy.url))
    check_events(landed(collector, 3, run.mine), run, url)
    paths = run.log.to(proxy.url)
    assert ("GET", f"/analytics.js/v1/{WRITE_KEY}/analytics.min.js") in paths
    assert ("GET", f"/v1/projects/{WRITE_KEY}/settings") in paths
    assert sorted(p for m, p in paths if m == "POST") == ["/v1/i", "/v1/p", "/v1/t"]
    # Authorization makes each POST a preflighted CORS request; all of them were answered.
    assert {"OPTIONS /v1/i", "OPTIONS /v1/t", "OPTIONS /v1/p"} <= set(proxy.seen)
    assert not [p for _, p in paths if p.endswith("/m")], "telemetry is sampled off"
    assert not run.log.failed, run.log.failed


@pytest.mark.parametrize("keepalive", [False, True], ids=["fetch", "keepalive"])
def test_snippet_batching(
    collector: CollectorProcess,
    fault_proxy: Callable[..., FaultProxy],
    browser: Browser,
    site: Site,
    keepalive: bool,
) -> None:
    """deliveryStrategy batching: one POST /v1/b (text/plain, Authorization: preflighted)."""
    proxy = fault_proxy(collector.url, 0)
    options = {
        "integrations": {
            "Segment.io": {
                "deliveryStrategy": {
                    "strategy": "batching",
                    "config": {"size": 3, "timeout": 500, "keepalive": keepalive},
                }
            }
        }
    }
    url = site.add(f"/batching-{keepalive}.html", snippet_page(proxy.url, options))
    run = run_page(browser, url, (site.url, proxy.url))
    check_events(landed(collector, 3, run.mine), run, url)
    assert [p for m, p in run.log.to(proxy.url) if m == "POST"] == ["/v1/b"]
    assert "OPTIONS /v1/b" in proxy.seen
    assert not run.log.failed, run.log.failed


def test_umd_keepalive_from_site(
    collector: CollectorProcess,
    fault_proxy: Callable[..., FaultProxy],
    browser: Browser,
    site: Site,
) -> None:
    """The site hosts the UMD build itself; cdnURL is the collector; keepalive requests."""
    proxy = fault_proxy(collector.url, 0)
    options = {
        "integrations": {"Segment.io": {"deliveryStrategy": {"config": {"keepalive": True}}}}
    }
    url = site.add("/umd.html", umd_page(proxy.url, options))
    run = run_page(browser, url, (site.url, proxy.url))
    check_events(landed(collector, 3, run.mine), run, url)
    assert not run.log.failed, run.log.failed


def test_chunk_bundle_from_collector(
    collector: CollectorProcess,
    fault_proxy: Callable[..., FaultProxy],
    browser: Browser,
    site: Site,
) -> None:
    """``?ajs_event=`` makes analytics.js load its queryString chunk: served by the collector."""
    proxy = fault_proxy(collector.url, 0)
    url = site.add("/chunk.html", snippet_page(proxy.url, {})) + "?ajs_event=Came+From+Link"
    run = run_page(browser, url, (site.url, proxy.url))
    stored = landed(collector, 4, run.mine)
    paths = [p for _, p in run.log.to(proxy.url)]
    bundles = [p for p in paths if p.startswith("/analytics-next/bundles/")]
    assert bundles, run.log.requests
    assert all(p.endswith(".js") for p in bundles), bundles
    events = {r["event"] for r in stored.values() if r["type"] == "track"}
    assert events == {"Order Completed", "Came From Link"}
    assert not run.log.failed, run.log.failed
