"""Every SDK retries what an overloaded collector answers, and its events land exactly once.

A :class:`~tests.compat.fault_proxy.FaultProxy` in front of the real collector answers the first
ingest requests as an overloaded collector does (503, the ``overloaded`` JSON body, Retry-After),
then passes everything through. Each SDK runs with its default retry settings. "Exactly once" is
the warehouse's view (distinct message ids, as the ``events`` view dedupes); the refused requests
never reached the collector, so the files hold no duplicates either, and the test checks that too.
Which statuses each SDK retries and which it drops is in the root README (read from their source).
"""

from __future__ import annotations

import json
import uuid
from collections import Counter
from collections.abc import Callable
from typing import Any

import pytest

from tests.clients import run_python_client
from tests.clients.browser import Browser, Site
from tests.compat.conftest import SNOWPLOW_APP_ID, WRITE_KEY, landed, rows
from tests.compat.fault_proxy import FaultProxy
from tests.compat.sdk_scripts import CALLS
from tests.compat.test_browser_segment import Run, run_page, snippet_page
from tests.compat.test_server_sdks import SDKS, check_rows, prefixed, send
from tests.e2e.conftest import CollectorProcess

#: Refused requests before the proxy lets requests through.
REFUSE = 2


def stored_once(collector: CollectorProcess, where: Callable[[dict[str, Any]], bool]) -> None:
    """No message id is stored twice (in the files, not only after dedupe)."""
    counts = Counter(r["message_id"] for r in rows(collector.data_dir) if where(r))
    assert counts
    assert max(counts.values()) == 1, counts


@pytest.mark.parametrize(("lang", "sdk"), SDKS)
def test_server_sdk_retries_503(
    collector: CollectorProcess, fault_proxy: Callable[..., FaultProxy], lang: str, sdk: str
) -> None:
    proxy = fault_proxy(collector.url, REFUSE)
    prefix = f"retry-{sdk}-{lang}-{uuid.uuid4().hex[:8]}"
    assert send(lang, sdk, proxy.url, prefix) == []
    assert len(proxy.refused) == REFUSE
    check_rows(landed(collector, len(CALLS), prefixed(prefix)), prefix, lang, sdk)
    stored_once(collector, prefixed(prefix))


@pytest.mark.parametrize("strategy", ["standard", "batching"])
def test_analytics_js_retries_503(
    collector: CollectorProcess,
    fault_proxy: Callable[..., FaultProxy],
    browser: Browser,
    site: Site,
    strategy: str,
) -> None:
    """analytics.js retries 503s (with backoff) while the page stays open."""
    proxy = fault_proxy(collector.url, REFUSE)
    config: dict[str, Any] = {"size": 3, "timeout": 300} if strategy == "batching" else {}
    delivery: dict[str, Any] = {"config": config}
    if strategy == "batching":
        delivery["strategy"] = "batching"
    options = {"integrations": {"Segment.io": {"deliveryStrategy": delivery}}}
    url = site.add(f"/retry-{strategy}.html", snippet_page(proxy.url, options))
    stored: dict[str, dict[str, Any]] = {}

    def until_landed(run: Run) -> None:
        stored.update(landed(collector, 3, run.mine))

    run = run_page(browser, url, (site.url, proxy.url), hold=until_landed)
    assert set(stored) == {e["messageId"] for e in run.sent}
    assert len(proxy.refused) == REFUSE
    stored_once(collector, run.mine)


def test_a_drop_status_is_seen_as_a_drop(
    collector: CollectorProcess, fault_proxy: Callable[..., FaultProxy]
) -> None:
    """The control: answered 501 (a status Segment's SDKs drop), the batch is lost and reported.

    This is why the collector answers every transient failure with 503 (or 500), never with a
    status some SDK drops: the same proxy with 503 above loses nothing.
    """
    proxy = fault_proxy(collector.url, 1, status=501)
    errors = send("python", "segment", proxy.url, f"drop-{uuid.uuid4().hex[:8]}")
    assert errors
    assert "501" in errors[0]
    assert proxy.refused
    assert not [p for p in proxy.passed if p.startswith("POST")]


# snowplow-tracker re-buffers a failed batch and retries it from its own timer thread; the script
# polls (with a deadline) until its on_success callback has seen every event delivered (an empty
# buffer is not enough: the retry in flight has taken the events out of it).
SNOWPLOW_SCRIPT = r"""
import json, os, sys, time
from snowplow_tracker import Emitter, Tracker
from snowplow_tracker.events import PageView, StructuredEvent

delivered = []
emitter = Emitter(os.environ["COLLECTOR"], protocol="http", method="post", batch_size=10,
                  on_success=lambda sent: delivered.extend(sent))
tracker = Tracker("sp-retry", emitter, app_id=os.environ["APP_ID"])
ids = [
    tracker.track(PageView(page_url="https://shop.example/cart", page_title="Cart")),
    tracker.track(StructuredEvent(category="checkout", action="add-to-basket")),
]
tracker.flush()
deadline = time.monotonic() + 60
while len(delivered) < len(ids):
    if time.monotonic() > deadline:
        sys.exit("snowplow-tracker still had events after 60 s")
    time.sleep(0.05)
print(json.dumps(ids))
"""


def test_snowplow_python_retries_503(
    collector: CollectorProcess, fault_proxy: Callable[..., FaultProxy]
) -> None:
    proxy = fault_proxy(collector.url, REFUSE)
    env = {"COLLECTOR": proxy.url.removeprefix("http://"), "APP_ID": SNOWPLOW_APP_ID}
    done = run_python_client("snowplow", SNOWPLOW_SCRIPT, env, timeout=90.0)
    ids = set(json.loads(done.stdout.strip().splitlines()[-1]))
    assert len(proxy.refused) == REFUSE
    stored = landed(collector, len(ids), lambda r: r["message_id"] in ids)
    assert {r["type"] for r in stored.values()} == {"page", "track"}
    stored_once(collector, lambda r: r["message_id"] in ids)


POSTHOG_SCRIPT = """
import json, os
from posthog import Posthog

client = Posthog(os.environ["WRITE_KEY"], host=os.environ["HOST"],
                 enable_exception_autocapture=False)
P = os.environ["PREFIX"]
client.capture("Order Completed", distinct_id="ph-py", properties={"total": 1}, uuid=P + "01")
client.capture("$pageview", distinct_id="ph-py", properties={"title": "Cart"}, uuid=P + "02")
client.flush()
client.shutdown()
print(json.dumps([P + "01", P + "02"]))
"""

AMPLITUDE_SCRIPT = """
import json, os, sys, time
from amplitude import Amplitude, BaseEvent, Config

answers = []
config = Config(server_url=os.environ["URL"], flush_interval_millis=200,
                callback=lambda event, code, message=None: answers.append(code))
client = Amplitude(os.environ["WRITE_KEY"], config)
P = os.environ["PREFIX"]
for n in ("1", "2"):
    client.track(BaseEvent(event_type="Song Played", user_id="amp-user", insert_id=P + n))
# A failed batch goes back to the client's storage and is retried from its worker thread;
# shutdown() does not wait for that, so the script waits for the final callbacks (deadline).
deadline = time.monotonic() + 60
while len(answers) < 2 and time.monotonic() < deadline:
    client.flush()
    time.sleep(0.1)
client.shutdown()
assert answers == [200, 200], answers
print(json.dumps([P + "1", P + "2"]))
"""


def test_posthog_python_retries_503(
    collector: CollectorProcess, fault_proxy: Callable[..., FaultProxy]
) -> None:
    proxy = fault_proxy(collector.url, REFUSE)
    prefix = f"00000000-0000-4000-8000-{uuid.uuid4().hex[:10]}"
    env = {"HOST": proxy.url, "WRITE_KEY": WRITE_KEY, "PREFIX": prefix}
    done = run_python_client("posthog", POSTHOG_SCRIPT, env, timeout=90.0)
    ids = set(json.loads(done.stdout.strip().splitlines()[-1]))
    assert len(proxy.refused) == REFUSE
    stored = landed(collector, len(ids), lambda r: r["message_id"] in ids)
    assert {r["type"] for r in stored.values()} == {"page", "track"}
    stored_once(collector, lambda r: r["message_id"] in ids)


def test_amplitude_python_retries_503(
    collector: CollectorProcess, fault_proxy: Callable[..., FaultProxy]
) -> None:
    proxy = fault_proxy(collector.url, REFUSE)
    prefix = f"amp-retry-{uuid.uuid4().hex[:8]}-"
    env = {"URL": proxy.url + "/2/httpapi", "WRITE_KEY": WRITE_KEY, "PREFIX": prefix}
    done = run_python_client("amplitude", AMPLITUDE_SCRIPT, env, timeout=90.0)
    ids = set(json.loads(done.stdout.strip().splitlines()[-1]))
    assert len(proxy.refused) == REFUSE
    stored = landed(collector, len(ids), lambda r: r["message_id"] in ids)
    assert {r["event"] for r in stored.values()} == {"Song Played"}
    stored_once(collector, lambda r: r["message_id"] in ids)
