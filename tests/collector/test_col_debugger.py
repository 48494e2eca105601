"""The live debugger (``/debugger``) in headless Chromium, against real collector processes.

The page is opened first; events and dead letters are then posted over HTTP and the test waits
(polling the DOM, with deadlines) until they show, then drives the filters. With two workers it
waits until rows from both workers are on the page. A screenshot of the page is saved in the
test's tmp directory (its path is printed). The access rules and the tap's bounds are checked
in-process too.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import msgspec
import pytest
from eventkit_collector import debugger as dbg
from eventkit_collector.debugger import Debugger, DebugTap, SharedRing
from eventkit_core import TypedEvent
from playwright.sync_api import Page

from tests.clients.browser import Browser
from tests.collector.hostile_support import KEY, Server, start_server

TOKEN = "debugger-secret"
#: Defaults, not the hostile suite's half-second timeouts: a page's stream is long-lived.
TIMEOUTS = {"EVENTKIT_HEADER_TIMEOUT": "10", "EVENTKIT_BODY_TIMEOUT": "30"}


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    b = Browser()
    try:
        yield b
    finally:
        b.close()


def post(server: Server, path: str, body: dict[str, Any], key: str | None = None) -> None:
    """One request on a new connection (with workers, the kernel spreads connections)."""
    auth = (key, "") if key else None
    reply = httpx.post(f"http://127.0.0.1:{server.port}{path}", json=body, auth=auth, timeout=10)
    assert reply.status_code == 200, reply.text


def poll(page: Page, script: str, timeout: float, what: str, send: Any = None) -> Any:
    """Evaluate ``script`` until truthy (calling ``send`` between tries); fail at the deadline."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if send is not None:
            send()
        found = page.evaluate(script)
        if found:
            return found
        page.wait_for_timeout(200)  # lets the page's event loop run between two looks
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def visible(page: Page, selector: str) -> list[dict[str, str]]:
    rows: list[dict[str, str]] = page.evaluate(
        """(sel) => [...document.querySelectorAll(sel)]
            .filter((tr) => !tr.hidden && !tr.closest("section").hidden)
            .map((tr) => ({...tr.dataset, kind: tr.classList.contains("event") ? "event" : "dead",
                           text: tr.textContent}))""",
        selector,
    )
    return rows


def open_debugger(page: Page, url: str) -> None:
    page.goto(url)
    poll(page, "document.body.dataset.state === 'open'", 60, "the page's stream to open")


def wait_recording(page: Page, server: Server, key: str | None = None) -> None:
    """Taps start recording within a second of the page connecting: post probes until one shows."""
    body = {"userId": "probe", "event": "Probe"}
    poll(
        page,
        "document.querySelector('tr.item[data-user^=\"probe\"]') !== null",
        60,
        "a probe event on the page",
        send=lambda: post(server, "/v1/track", body, key),
    )


def test_debugger_streams_filters_and_dead_letters(tmp_path: Path, browser: Browser) -> None:
    server = start_server(tmp_path, EVENTKIT_WRITE_KEYS="", **TIMEOUTS)  # type: ignore[arg-type]
    try:
        with browser.page() as (page, log):
            open_debugger(page, f"http://127.0.0.1:{server.port}/debugger")
            wait_recording(page, server)
            post(
                server, "/v1/track", {"userId": "alice", "event": "Bought", "properties": {"n": 1}}
            )
            post(server, "/v1/identify", {"userId": "bob", "traits": {"plan": "pro"}})
            post(server, "/v1/page", {"anonymousId": "anon-carol", "name": "Home"})
            post(server, "/v1/track", {"userId": "dave"})  # no event name: a dead letter
            poll(
                page,
                """["alice", "bob", "anon-carol", "dave"].every((u) =>
                    document.querySelector(`tr.item[data-user*="${u}"]`) !== null)""",
                30,
                "the four new items on the page",
            )
            streams = page.evaluate(
                "[...document.querySelectorAll('section.stream')].map((s) => s.dataset.stream)"
            )
            assert {"events", "users", "pages"} <= set(streams), streams

            # The dead letter, with its reason, in its stream's dead-letter table.
            dead = page.locator("section[data-stream='events'] tr.dead_letter")
            assert dead.count() == 1
            reason = dead.locator("td.reason").inner_text()
            assert "missing_field" in reason, reason
            assert "event is required" in reason, reason
            assert dead.get_attribute("data-user") == "dave "

            # Stream filter: only users' rows remain, other sections hide.
            page.select_option("#f-stream", "users")
            rows = visible(page, "tr.item")
            assert rows, "no row left for stream users"
            assert {r["stream"] for r in rows} == {"users"}, rows
            assert any("bob" in r["user"] for r in rows)
            assert page.locator("section[data-stream='events']").is_hidden()

            # Type filter: track only (events and the dead letter), across streams.
            page.select_option("#f-stream", "")
            page.select_option("#f-type", "track")
            rows = visible(page, "tr.item")
            assert {r["type"] for r in rows} == {"track"}, rows
            assert {r["kind"] for r in rows} == {"event", "dead"}, rows

            # User filter (user or anonymous id, substring), with the type filter cleared.
            page.select_option("#f-type", "")
            page.fill("#f-user", "carol")
            rows = visible(page, "tr.item")
            assert len(rows) == 1, rows
            assert rows[0]["stream"] == "pages"
            assert rows[0]["type"] == "page"
            assert "Home" in rows[0]["text"]
            page.fill("#f-user", "")
            assert len(visible(page, "tr.item")) >= 5

            shot = tmp_path / "debugger.png"
            page.screenshot(path=str(shot), full_page=True)
            print(f"debugger screenshot: {shot}")
            assert shot.stat().st_size > 1000
            assert not log.errors, log.errors
            assert not log.foreign(f"http://127.0.0.1:{server.port}"), log.requests
    finally:
        assert server.stop() == 0, server.log()


def test_debugger_two_workers_and_token(tmp_path: Path, browser: Browser) -> None:
    server = start_server(
        tmp_path, workers=2, EVENTKIT_DEBUGGER_TOKEN=TOKEN, **TIMEOUTS
    )  # write keys on (the hostile suite's key)
    base = f"http://127.0.0.1:{server.port}"
    try:
        for path in ("/debugger", "/debugger/events", f"/debugger?token={KEY}"):
            reply = httpx.get(base + path, timeout=10)
            assert reply.status_code == 401, (path, reply.text)
            assert reply.headers["content-type"].startswith("application/json")
            body = reply.json()
            assert body["code"] == "unauthorized", body
            assert "EVENTKIT_DEBUGGER_TOKEN" in body["message"], body
        with browser.page() as (page, log):
            open_debugger(page, f"{base}/debugger?token={TOKEN}")
            wait_recording(page, server, KEY)
            counter = iter(range(10_000))

            def send() -> None:
                for _ in range(4):
                    n = next(counter)
                    post(server, "/v1/track", {"userId": f"w-{n}", "event": "Spread"}, KEY)

            workers = poll(
                page,
                """(() => { const w = new Set([...document.querySelectorAll('tr.item')]
                      .map((tr) => tr.dataset.worker));
                    return w.has('0') && w.has('1') ? [...w].sort() : null; })()""",
                90,
                "events from both workers on the page",
                send=send,
            )
            assert workers == ["0", "1"], workers
            shot = tmp_path / "debugger-workers.png"
            page.screenshot(path=str(shot), full_page=True)
            print(f"debugger screenshot (2 workers): {shot}")
            assert not log.errors, log.errors
    finally:
        assert server.stop() == 0, server.log()


# -- in-process: access rules, the tap's bounds ---------------------------------------------


def _debugger(tmp_path: Path, **kw: Any) -> Debugger:
    args: dict[str, Any] = {"enabled": True, "token": None, "keys_enabled": False}
    args.update(kw)
    return Debugger(tmp_path / "ring", worker=lambda: 0, **args)


def _status(d: Debugger, headers: dict[str, str] | None = None, query: bytes = b"") -> int:
    refused = d.check(headers or {}, query)
    return 200 if refused is None else int(refused.status_code or 200)


def test_access_rules(tmp_path: Path) -> None:
    assert _status(_debugger(tmp_path)) == 200  # no keys, no token: open (local use)
    keys_only = _debugger(tmp_path, keys_enabled=True)
    refused = keys_only.check({}, b"")
    assert refused is not None
    assert refused.status_code == 401
    body = msgspec.json.decode(refused.content)
    assert body["code"] == "unauthorized"
    assert "EVENTKIT_DEBUGGER_TOKEN" in body["message"]
    assert _status(keys_only, query=b"token=anything") == 401
    token = _debugger(tmp_path, keys_enabled=True, token=TOKEN)
    assert _status(token) == 401
    assert _status(token, query=b"token=wrong") == 401
    assert _status(token, query=f"token={TOKEN}".encode()) == 200
    assert _status(token, {"authorization": f"Bearer {TOKEN}"}) == 200
    assert _status(_debugger(tmp_path, token=TOKEN)) == 401  # a token set is always required
    assert _status(_debugger(tmp_path, enabled=False)) == 404


def _event(n: int) -> TypedEvent:
    now = datetime.now(UTC)
    return TypedEvent(
        message_id=f"m{n}",
        stream="events",
        received_at=now,
        timestamp=now,
        payload=msgspec.Raw(b"{}"),
        type="track",
        user_id=f"u{n}",
    )


def test_tap_records_nothing_unwatched_and_stays_bounded(tmp_path: Path) -> None:
    ring = SharedRing(tmp_path / "debugger.db", capacity=50)
    marker = tmp_path / "debugger.watch"
    tap = DebugTap(ring, marker, lambda: 1)
    tap([_event(1)])
    assert tap.drain() == []  # nobody watches: nothing kept
    marker.touch()
    tap._next_check = 0.0  # look at the marker now, not within CHECK_INTERVAL
    tap([_event(n) for n in range(dbg.MAX_PER_BATCH + 10)])
    records = tap.drain()
    assert len(records) == dbg.MAX_PER_BATCH + 1  # the rest counted in one "skipped" record
    assert msgspec.json.decode(records[-1]) == {"kind": "skipped", "count": 10, "worker": 1}
    for _ in range(dbg.MAX_PENDING // dbg.MAX_PER_BATCH + 2):
        tap([_event(n) for n in range(dbg.MAX_PER_BATCH)])
    assert len(tap.drain()) == dbg.MAX_PENDING + 1  # memory bounded; the overflow counted
    ring.append(records)
    kept = ring.after(0, limit=1000)
    assert len(kept) == 50  # the shared file keeps the last `capacity` records
    assert msgspec.json.decode(kept[-1][1])["kind"] == "skipped"
    assert [i for i, _ in ring.after(kept[-2][0])] == [kept[-1][0]]
    ring.close()
