"""The app in-process (Litestar test client): endpoints, body forms, auth, CORS, errors, release.

The real ring buffer and in-process queue; the EventLoader is replaced by a recorder that "stores"
at once (the real one is exercised by the end-to-end tests).
"""

from __future__ import annotations

import base64
import gzip
import json
from collections.abc import AsyncIterator, Callable, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import msgspec
import pytest
from eventkit_collector import wiring
from eventkit_collector.app import Collector, create_app
from eventkit_collector.fastpath import FastIngest
from eventkit_collector.settings import Settings
from eventkit_core import DeadLetter, RawEvent, StoredFile, TypedEvent
from litestar.testing import AsyncTestClient

Item = TypedEvent | DeadLetter


class RecordingLoader:
    """Test double for EventLoader: keeps what it is given and reports it stored at once."""

    def __init__(self, on_flushed: Callable[[Sequence[StoredFile]], None] | None) -> None:
        self.items: list[Item] = []
        self.on_flushed = on_flushed

    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        return None

    async def submit(self, items: Sequence[Item]) -> None:
        self.items.extend(items)
        ids = tuple(i.source_id for i in items if i.source_id is not None)
        if self.on_flushed is None:
            return
        self.on_flushed(
            [StoredFile(path="p", uri="mem://p", rows=len(items), bytes=1, source_ids=ids)]
        )

    async def add(self, item: Item | RawEvent) -> None:
        assert not isinstance(item, RawEvent)  # the in-process tests never give raw events
        await self.submit([item])

    async def flush(self) -> None:
        return None

    def health_check(self) -> bool:
        return True

    def events(self) -> list[TypedEvent]:
        return [i for i in self.items if isinstance(i, TypedEvent)]

    def dead(self) -> list[DeadLetter]:
        return [i for i in self.items if isinstance(i, DeadLetter)]


@pytest.fixture
def patch_loader(monkeypatch: pytest.MonkeyPatch) -> None:
    def make(
        settings: Settings,
        event_store: Any,
        error_store: Any,
        adapter: Any,
        on_flushed: Callable[[Sequence[StoredFile]], None] | None,
    ) -> RecordingLoader:
        return RecordingLoader(on_flushed)

    monkeypatch.setattr(wiring, "make_loader", make)


def _settings(tmp_path: Path, **kw: Any) -> Settings:
    return Settings(
        eventkit_data_dir=tmp_path / "data",
        eventkit_metrics_enabled=False,
        eventkit_partitions=2,
        **kw,
    )


@pytest.fixture(params=["litestar", "fastpath"])
async def client(
    request: pytest.FixtureRequest, tmp_path: Path, patch_loader: None
) -> AsyncIterator[tuple[Any, Collector]]:
    """The Litestar app, and the served ASGI app (ingest fast path in front of it)."""
    collector = Collector(_settings(tmp_path))
    app = create_app(collector=collector)
    if request.param == "litestar":
        async with AsyncTestClient(app) as c:
            yield c, collector
        return
    transport = httpx.ASGITransport(app=FastIngest(app, collector))
    await collector.start()
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as c:
            yield c, collector
    finally:
        await collector.stop()


def loader_of(collector: Collector) -> RecordingLoader:
    loader = collector.pipeline.loader
    assert isinstance(loader, RecordingLoader)
    return loader


async def settle(collector: Collector, n: int) -> RecordingLoader:
    """Wait (polling the pipeline, not the clock) until ``n`` items reached the loader."""
    import asyncio

    loader = loader_of(collector)
    for _ in range(2000):
        if len(loader.items) >= n and collector.pipeline.outstanding_entries() == 0:
            return loader
        await asyncio.sleep(0.005)
    raise AssertionError(f"only {len(loader.items)} of {n} items arrived")


TRACK = {"type": "track", "userId": "u1", "event": "Clicked", "properties": {"a": 1}}


@pytest.mark.parametrize(
    ("path", "body", "stream", "etype"),
    [
        ("/v1/identify", {"userId": "u1", "traits": {"plan": "pro"}}, "users", "identify"),
        ("/v1/track", {"userId": "u1", "event": "E"}, "events", "track"),
        ("/v1/page", {"anonymousId": "a1", "name": "Home"}, "pages", "page"),
        ("/v1/screen", {"userId": "u1", "name": "S"}, "screens", "screen"),
        ("/v1/group", {"userId": "u1", "groupId": "g"}, "groups", "group"),
        ("/v1/alias", {"userId": "u1", "previousId": "old"}, "aliases", "alias"),
        ("/v1/i", {"userId": "u1"}, "users", "identify"),
        ("/v1/t", {"userId": "u1", "event": "E"}, "events", "track"),
        ("/v1/p", {"userId": "u1"}, "pages", "page"),
        ("/v1/s", {"userId": "u1"}, "screens", "screen"),
        ("/v1/g", {"userId": "u1", "groupId": "g"}, "groups", "group"),
        ("/v1/a", {"userId": "u1", "previousId": "p"}, "aliases", "alias"),
        ("/collect", {"anything": True}, "default", "custom"),
        ("/collect/webhooks", {"anything": True}, "webhooks", "custom"),
    ],
)
async def test_single_event_endpoints(
    client: tuple[Any, Collector],
    path: str,
    body: dict[str, Any],
    stream: str,
    etype: str,
) -> None:
    c, collector = client
    r = await c.post(path, json=body, headers={"User-Agent": "ua/1"})
    assert r.status_code == 200, r.text
    assert r.json() == {"success": True}
    loader = await settle(collector, 1)
    [event] = loader.events()
    assert (event.stream, event.type) == (stream, etype)
    assert event.message_id  # generated when absent
    assert event.context is not None
    context = msgspec.json.decode(bytes(event.context))
    assert context["userAgent"] == "ua/1"
    assert context["ip"]
    assert collector.pipeline.outstanding_entries() == 0


async def test_batch_routes_items_by_type_and_merges_context(
    client: tuple[Any, Collector],
) -> None:
    c, collector = client
    body = {
        "batch": [
            {"type": "track", "userId": "u", "event": "A", "messageId": "m1"},
            {"type": "identify", "userId": "u", "traits": {"x": 1}},
            {"type": "page", "userId": "u", "context": {"locale": "fr"}},
            {"type": "bogus", "userId": "u"},
            7,
        ],
        "context": {"library": {"name": "sdk"}},
        "sentAt": "2026-01-01T00:00:00Z",
    }
    data = gzip.compress(json.dumps(body).encode())
    for path in ("/v1/batch", "/v1/b", "/beacon/v1/batch"):
        r = await c.post(
            path,
            content=data,
            headers={"Content-Encoding": "gzip", "Content-Type": "text/plain"},
        )
        assert r.status_code == 200, r.text
    loader = await settle(collector, 15)
    events = loader.events()
    assert sorted({(e.stream, e.type) for e in events}) == [
        ("events", "track"),
        ("pages", "page"),
        ("users", "identify"),
    ]
    assert len(events) == 9
    for e in events:
        assert e.context is not None
        assert msgspec.json.decode(bytes(e.context))["library"] == {"name": "sdk"}
    assert {e.message_id for e in events if e.type == "track"} == {"m1"}
    dead = loader.dead()
    assert len(dead) == 6
    assert {d.reason_code for d in dead} == {"invalid_type", "not_an_object"}
    # generated ids are stable per entry and position: three requests, distinct ids
    assert len({e.message_id for e in events if e.type == "identify"}) == 3


async def test_body_forms(client: tuple[Any, Collector]) -> None:
    c, collector = client
    js = json.dumps(TRACK)
    forms = [
        ({"Content-Type": "text/plain"}, js.encode()),
        ({"Content-Type": "application/x-www-form-urlencoded"}, js.encode()),
        ({"Content-Type": "application/x-www-form-urlencoded"}, b"data=" + quote(js).encode()),
        ({"Content-Type": "application/x-www-form-urlencoded"}, quote(js).encode()),
        ({"Content-Encoding": "gzip"}, gzip.compress(js.encode())),
        ({}, js.encode()),
    ]
    for headers, data in forms:
        r = await c.post("/v1/track", content=data, headers=headers)
        assert r.status_code == 200, (headers, r.text)
    loader = await settle(collector, len(forms))
    assert len(loader.events()) == len(forms)


@pytest.mark.parametrize(
    ("path", "data", "headers", "status", "code"),
    [
        ("/v1/track", b'{"a": NaN}', {}, 400, "invalid_json"),
        ("/v1/track", b'{"a": 1e999}', {}, 400, "invalid_json"),
        ("/v1/track", b'{"a": 99999999999999999999999}', {}, 400, "invalid_json"),
        ("/v1/track", b'\xef\xbb\xbf{"a": 1}', {}, 400, "invalid_json"),
        ("/v1/track", b'{"a": "\xff"}', {}, 400, "invalid_json"),
        ("/v1/track", b"[" * 50_000 + b"]" * 50_000, {}, 413, "payload_too_large"),
        ("/v1/batch", b"[" * 50_000 + b"]" * 50_000, {}, 400, "invalid_json"),
        ("/v1/track", b"not gzip", {"Content-Encoding": "gzip"}, 400, "invalid_encoding"),
        ("/collect/bad%20name", b"{}", {}, 400, "invalid_stream"),
        ("/collect/" + "x" * 65, b"{}", {}, 400, "invalid_stream"),
        ("/v1/track", json.dumps({"p": "x" * 40_000}).encode(), {}, 413, "payload_too_large"),
        (
            "/v1/batch",
            json.dumps({"batch": [{"p": "x" * 1000}] * 600}).encode(),
            {},
            413,
            "payload_too_large",
        ),
        (
            "/v1/batch",
            gzip.compress(json.dumps({"batch": [{}] * 2501}).encode()),
            {"Content-Encoding": "gzip"},
            413,
            "payload_too_large",
        ),
        (
            "/v1/batch",
            gzip.compress(b" " * 2_000_000),
            {"Content-Encoding": "gzip"},
            413,
            "payload_too_large",
        ),
    ],
)
async def test_client_errors(
    client: tuple[Any, Collector],
    path: str,
    data: bytes,
    headers: dict[str, str],
    status: int,
    code: str,
) -> None:
    c, collector = client
    r = await c.post(path, content=data, headers=headers)
    assert r.status_code == status, r.text
    body = r.json()
    assert body["code"] == code
    assert isinstance(body["message"], str)
    assert len(body["message"]) > 20
    assert collector.pipeline.accepted_requests == 0


async def test_json_that_does_not_fit_is_accepted_and_dead_lettered(
    client: tuple[Any, Collector],
) -> None:
    c, collector = client
    bodies = [
        ("/collect", b"42"),
        ("/collect/s1", b'[1, {"a": 1}]'),
        ("/v1/track", b'{"userId": "u"}'),  # no event
        ("/v1/identify", b'{"traits": {}}'),  # no userId
        ("/v1/batch", b'{"no": "batch"}'),
        ("/v1/batch", json.dumps({"batch": [{"type": "track", "p": "x" * 33_000}]}).encode()),
    ]
    for path, data in bodies:
        r = await c.post(path, content=data)
        assert r.status_code == 200, (path, r.text)
    loader = await settle(collector, 7)
    assert len(loader.events()) == 1
    codes = sorted(d.reason_code for d in loader.dead())
    assert codes == [
        "event_too_large",
        "invalid_batch",
        "missing_field",
        "missing_field",
        "not_an_object",
        "not_an_object",
    ]


async def test_errors_are_json_and_never_500(
    client: tuple[Any, Collector],
) -> None:
    c, _ = client
    r = await c.get("/nope")
    assert r.status_code == 404
    assert r.json()["code"] == "not_found"
    r = await c.get("/v1/track")
    assert r.status_code == 405
    assert r.json()["code"] == "method_not_allowed"
    r = await c.post("/v1/track", content=b"{}", headers={"Content-Length": "abc"})
    assert r.status_code < 500


async def test_health_ready_schema(client: tuple[Any, Collector]) -> None:
    c, _ = client
    assert (await c.get("/health")).json() == {"status": "ok"}
    ready = await c.get("/ready")
    assert ready.status_code == 200
    assert ready.json()["status"] == "ready"
    schema = (await c.get("/schema/openapi.json")).json()
    for path in ("/v1/batch", "/v1/track", "/collect/{stream}", "/beacon/v1/batch", "/v1/t"):
        assert path in schema["paths"]


async def test_cors_preflight(client: tuple[Any, Collector]) -> None:
    c, _ = client
    r = await c.options(
        "/v1/batch",
        headers={
            "Origin": "https://shop.example",
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "content-type,authorization",
        },
    )
    assert r.status_code in (200, 204)
    assert r.headers["access-control-allow-origin"] in ("*", "https://shop.example")
    assert "POST" in r.headers["access-control-allow-methods"]
    r = await c.post("/v1/track", json=TRACK, headers={"Origin": "https://shop.example"})
    assert r.headers["access-control-allow-origin"] in ("*", "https://shop.example")


async def test_write_keys(tmp_path: Path, patch_loader: None) -> None:
    collector = Collector(_settings(tmp_path, eventkit_write_keys="k1,k2"))
    async with AsyncTestClient(create_app(collector=collector)) as c:
        basic = "Basic " + base64.b64encode(b"k2:").decode()
        wrong = "Basic " + base64.b64encode(b"nope:").decode()
        assert (
            await c.post("/v1/track", json=TRACK, headers={"Authorization": basic})
        ).status_code == 200
        assert (await c.post("/v1/track?writeKey=k1", json=TRACK)).status_code == 200
        assert (await c.post("/v1/track", json={**TRACK, "writeKey": "k1"})).status_code == 200
        body = {"batch": [TRACK], "writeKey": "k2"}
        assert (await c.post("/v1/batch", json=body)).status_code == 200
        r = await c.post("/v1/track", json=TRACK)
        assert r.status_code == 401
        assert r.json()["code"] == "unauthorized"
        # a wrong key in the header is refused before the body is read (even an invalid body)
        r = await c.post("/v1/track", content=b"{not json", headers={"Authorization": wrong})
        assert r.status_code == 401
        assert (await c.post("/v1/track?writeKey=zz", json=TRACK)).status_code == 401
        assert (await c.post("/v1/track", json={**TRACK, "writeKey": "zz"})).status_code == 401
        loader = await settle(collector, 4)
        assert {e.source_id is not None for e in loader.events()} == {True}


async def test_ring_buffer_full_is_503_with_retry_after(tmp_path: Path, patch_loader: None) -> None:
    collector = Collector(_settings(tmp_path, eventkit_ring_max_entries=1))
    async with AsyncTestClient(create_app(collector=collector)) as c:
        # hold releases so the one slot stays taken
        loader = loader_of(collector)
        original = loader.on_flushed
        loader.on_flushed = lambda files: None
        assert (await c.post("/v1/track", json=TRACK)).status_code == 200
        r = await c.post("/v1/track", json=TRACK)
        assert r.status_code == 503
        assert r.json()["code"] == "overloaded"
        assert int(r.headers["retry-after"]) >= 1
        loader.on_flushed = original


async def test_restart_delivers_what_was_left(tmp_path: Path, patch_loader: None) -> None:
    settings = _settings(tmp_path)
    collector = Collector(settings)
    async with AsyncTestClient(create_app(collector=collector)) as c:
        loader_of(collector).on_flushed = lambda files: None  # stored nowhere: never released
        for _ in range(2):
            assert (await c.post("/v1/batch", json={"batch": [TRACK, TRACK]})).status_code == 200
        # a gzipped body is kept compressed in the ring buffer: recovery decompresses it
        gz = gzip.compress(json.dumps({"batch": [TRACK, TRACK]}).encode())
        r = await c.post("/v1/batch", content=gz, headers={"Content-Encoding": "gzip"})
        assert r.status_code == 200
        await settle_items(collector, 6)
        first_ids = sorted(e.message_id for e in loader_of(collector).events())
    again = Collector(settings)
    async with AsyncTestClient(create_app(collector=again)) as c:
        loader = await settle(again, 6)
        assert sorted(e.message_id for e in loader.events()) == first_ids
    third = Collector(settings)
    async with AsyncTestClient(create_app(collector=third)):
        assert third.pipeline.outstanding_entries() == 0
        assert loader_of(third).items == []


async def settle_items(collector: Collector, n: int) -> None:
    import asyncio

    for _ in range(2000):
        if len(loader_of(collector).items) >= n:
            return
        await asyncio.sleep(0.005)
    raise AssertionError("items did not arrive")


async def test_worker_zero_adopts_orphan_shards(tmp_path: Path, patch_loader: None) -> None:
    """A run with fewer workers delivers what a larger run's extra shards left behind."""
    from datetime import UTC, datetime

    from eventkit_collector.edge import Kind, parse_body
    from eventkit_collector.envelope import Envelope, encode_envelope
    from eventkit_ring_buffer import RingBuffer

    settings = _settings(tmp_path)
    body = json.dumps({"batch": [TRACK, TRACK, TRACK]}).encode()
    parse_body(Kind.BATCH, body, Collector(settings).limits)
    env = Envelope(source="batch", stream=None, received_at=datetime.now(UTC), body=body)
    async with RingBuffer(settings.ring_dir / "3.db") as orphan:
        await orphan.append(encode_envelope(env))
    collector = Collector(settings)
    async with AsyncTestClient(create_app(collector=collector)):
        loader = await settle(collector, 3)
        assert len(loader.events()) == 3
    async with RingBuffer(settings.ring_dir / "3.db") as orphan:
        assert await orphan.read_unpublished() == []


async def test_rules_file_dead_letters_with_the_rule(tmp_path: Path, patch_loader: None) -> None:
    rules = tmp_path / "rules.toml"
    rules.write_text(
        '[streams.events]\nrequired = ["properties.plan"]\n'
        'types = { "properties.price" = "number" }\n'
        '[streams.webhooks]\nrequired = ["source"]\n'
    )
    collector = Collector(_settings(tmp_path, eventkit_rules_file=rules))
    async with AsyncTestClient(create_app(collector=collector)) as c:
        ok = {**TRACK, "properties": {"plan": "pro", "price": 3}}
        no_plan = {**TRACK, "properties": {"price": 3}}
        bad_price = {**TRACK, "properties": {"plan": "pro", "price": "3"}}
        for body in (ok, no_plan, bad_price):
            assert (await c.post("/v1/track", json=body)).status_code == 200
        assert (await c.post("/collect/webhooks", json=[{"source": "x"}, {}])).status_code == 200
        assert (await c.post("/v1/identify", json={"userId": "u"})).status_code == 200
        loader = await settle(collector, 6)
    assert sorted(e.stream for e in loader.events()) == ["events", "users", "webhooks"]
    dead = loader.dead()
    assert [d.reason_code for d in dead] == ["rule_failed"] * 3
    reasons = " | ".join(d.reason for d in dead)
    assert "required properties.plan" in reasons
    assert "types properties.price = number" in reasons
    assert "required source" in reasons


async def test_a_stuck_queue_answers_503_not_unbounded_memory(
    tmp_path: Path, patch_loader: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    import asyncio
    import threading

    from eventkit_collector.sinks import InProcessSink

    gate = threading.Event()  # the app may run on another loop (thread) than the test
    original = InProcessSink.deliver

    async def stuck(self: InProcessSink, events: Any, entries: Any) -> None:
        await asyncio.to_thread(gate.wait, 30)
        await original(self, events, entries)

    monkeypatch.setattr(InProcessSink, "deliver", stuck)
    collector = Collector(_settings(tmp_path, eventkit_max_pending_requests=2))
    async with AsyncTestClient(create_app(collector=collector)) as c:
        statuses = [(await c.post("/v1/track", json=TRACK)).status_code for _ in range(4)]
        # the first is taken by the (stuck) publisher, two wait, the fourth is refused
        assert statuses == [200, 200, 200, 503]
        r = await c.post("/v1/track", json=TRACK)
        assert r.json()["code"] == "overloaded"
        assert r.headers["retry-after"] == "1"
        gate.set()
        loader = await settle(collector, 3)
        assert len(loader.events()) == 3
        assert (await c.post("/v1/track", json=TRACK)).status_code == 200


async def test_saturated_front_refuses_before_reading_the_body(
    tmp_path: Path, patch_loader: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Under overload the ingest front answers 503 from the headers alone: no body is read.

    A request that finds the pipeline saturated first waits (up to ``ROOM_WAIT``) for the
    publisher to make room, and is accepted if it does.
    """
    import asyncio
    import threading

    from eventkit_collector import fastpath
    from eventkit_collector.sinks import InProcessSink

    monkeypatch.setattr(fastpath, "ROOM_WAIT", 0.01)

    gate = threading.Event()
    original = InProcessSink.deliver

    async def stuck(self: InProcessSink, events: Any, entries: Any) -> None:
        await asyncio.to_thread(gate.wait, 30)
        await original(self, events, entries)

    monkeypatch.setattr(InProcessSink, "deliver", stuck)
    collector = Collector(_settings(tmp_path, eventkit_max_pending_requests=2))
    front = FastIngest(create_app(collector=collector), collector)
    body = json.dumps(TRACK).encode()

    async def post(path: str = "/v1/track") -> tuple[int, dict[bytes, bytes], bytes, int]:
        reads = 0
        sent: list[dict[str, Any]] = []

        async def receive() -> dict[str, Any]:
            nonlocal reads
            reads += 1
            return {"type": "http.request", "body": body, "more_body": False}

        async def send(message: dict[str, Any]) -> None:
            sent.append(message)

        scope = {
            "type": "http",
            "method": "POST",
            "path": path,
            "query_string": b"",
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"origin", b"https://shop.example"),
            ],
            "client": ("127.0.0.1", 5000),
        }
        await front(scope, receive, send)  # type: ignore[arg-type]
        return sent[0]["status"], dict(sent[0]["headers"]), sent[1]["body"], reads

    await collector.start()
    try:
        # the first is taken by the (stuck) publisher, two wait; then the pipeline is saturated
        for _ in range(3):
            status, _h, _b, reads = await post()
            assert (status, reads) == (200, 1)
        assert collector.pipeline.saturated
        for path in ("/v1/track", "/v1/batch", "/collect/webhooks"):
            status, headers, answer, reads = await post(path)
            assert (status, reads) == (503, 0)  # refused from the headers alone
            assert headers[b"retry-after"] == b"1"
            assert int(headers[b"content-length"]) == len(answer)
            assert json.loads(answer)["code"] == "overloaded"
        # A request that waits for room long enough gets in once the publisher moves on.
        monkeypatch.setattr(fastpath, "ROOM_WAIT", 60.0)
        waiting = asyncio.ensure_future(post())
        for _ in range(2000):
            if collector.pipeline._room_waiters:
                break
            await asyncio.sleep(0.005)
        assert collector.pipeline._room_waiters
        assert not waiting.done()
        gate.set()
        status, _h, _b, reads = await waiting
        assert (status, reads) == (200, 1)
        loader = await settle(collector, 4)
        assert len(loader.events()) == 4
        assert not collector.pipeline.saturated
    finally:
        gate.set()
        await collector.stop()
