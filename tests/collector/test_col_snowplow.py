"""Snowplow's endpoints in-process, through both fronts (Litestar and the raw-ASGI ingest front):
tp2 bodies, the ``GET /i`` pixel, app-id auth, credentialed CORS, streams, dead letters, recovery.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import msgspec
import pytest
from eventkit_collector.app import PIXEL_GIF, Collector, create_app
from eventkit_collector.edge import Limits, snowplow_pixel_body
from eventkit_collector.envelope import Envelope, reparse, to_raw_events
from eventkit_collector.fastpath import FastIngest
from eventkit_collector.settings import Settings
from eventkit_core import ConfigurationError
from litestar.testing import AsyncTestClient
from pydantic import ValidationError

from tests.collector.test_col_app import _settings, patch_loader, settle

TP2 = "/com.snowplowanalytics.snowplow/tp2"
ORIGIN = "https://shop.example"
__all__ = ["patch_loader"]  # the fixture, imported for these tests


def tp2(*events: Any) -> dict[str, Any]:
    schema = "iglu:com.snowplowanalytics.snowplow/payload_data/jsonschema/1-0-4"
    return {"schema": schema, "data": list(events)}


class Client:
    """An HTTP client of the app (``get``, ``post``, ``options``) and its collector."""

    def __init__(self, http: Any, collector: Collector) -> None:
        self.http = http
        self.collector = collector

    async def get(self, url: str, **kw: Any) -> httpx.Response:
        response: httpx.Response = await self.http.get(url, **kw)
        return response

    async def post(self, url: str, **kw: Any) -> httpx.Response:
        response: httpx.Response = await self.http.post(url, **kw)
        return response

    async def options(self, url: str, **kw: Any) -> httpx.Response:
        response: httpx.Response = await self.http.options(url, **kw)
        return response


@contextlib.asynccontextmanager
async def serve(tmp_path: Path, front: str, **settings: Any) -> AsyncIterator[Client]:
    """A client of the Litestar app (``front="litestar"``) or of the served ASGI app."""
    collector = Collector(_settings(tmp_path, **settings))
    app = create_app(collector=collector)
    if front == "litestar":
        async with AsyncTestClient(app) as c:
            yield Client(c, collector)
        return
    await collector.start()
    try:
        transport = httpx.ASGITransport(app=FastIngest(app, collector))
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as h:
            yield Client(h, collector)
    finally:
        await collector.stop()


FRONTS = pytest.mark.parametrize("front", ["litestar", "fastpath"])


@FRONTS
async def test_tp2_events_by_type(tmp_path: Path, patch_loader: None, front: str) -> None:
    async with serve(tmp_path, front) as c:
        body = tp2(
            {"e": "pv", "eid": "p1", "duid": "d", "url": "https://a.example/"},
            {"e": "se", "eid": "s1", "se_ac": "add", "uid": "u"},
            {"e": "zz", "eid": "z1"},
            "not an object",
        )
        r = await c.post(TP2, json=body, headers={"User-Agent": "UA/9"})
        assert r.status_code == 200
        assert r.json() == {"success": True}
        loader = await settle(c.collector, 4)
        events = {e.message_id: e for e in loader.events()}
        assert (events["p1"].type, events["p1"].stream) == ("page", "pages")
        assert (events["s1"].type, events["s1"].stream, events["s1"].event) == (
            "track",
            "events",
            "add",
        )
        assert json.loads(bytes(events["s1"].context))["userAgent"] == "UA/9"  # type: ignore[arg-type]
        dead = {d.reason_code: d for d in loader.dead()}
        assert dead["invalid_type"].message_id == "z1"
        assert dead["invalid_type"].stream == "default"
        assert dead["invalid_type"].source == "snowplow"
        assert dead["not_an_object"].reason.startswith("snowplow: ")


@FRONTS
async def test_bad_tp2_bodies(tmp_path: Path, patch_loader: None, front: str) -> None:
    async with serve(tmp_path, front) as c:
        r = await c.post(TP2, content=b'{"data": [')
        assert r.status_code == 400
        assert set(r.json()) == {"code", "message"}
        assert r.json()["code"] == "invalid_json"
        for body in ({"schema": "s"}, {"data": {"e": "pv"}}, [1, 2]):
            assert (await c.post(TP2, json=body)).status_code == 200
        loader = await settle(c.collector, 3)
        assert [d.reason_code for d in loader.dead()] == ["invalid_snowplow"] * 3
        assert {d.source for d in loader.dead()} == {"invalid_snowplow"}
        assert loader.events() == []


async def test_pixel(tmp_path: Path, patch_loader: None) -> None:
    async with serve(tmp_path, "fastpath") as c:
        r = await c.get("/i", params={"e": "pv", "eid": "g1", "page": "Home", "duid": "d"})
        assert r.status_code == 200
        assert r.headers["content-type"] == "image/gif"
        assert r.content == PIXEL_GIF
        assert "no-store" in r.headers["cache-control"]
        assert (await c.get("/i", params={"e": "nope", "eid": "g2"})).content == PIXEL_GIF
        bad_utf8 = await c.get("/i?e=pv&page=%FF")
        assert bad_utf8.status_code == 400
        assert bad_utf8.json()["code"] == "invalid_request"
        as_image = await c.get("/i?e=pv&page=%FF", headers={"Accept": "image/webp,image/*"})
        assert as_image.status_code == 400
        assert as_image.content == PIXEL_GIF
        assert as_image.headers["x-eventkit-error"] == "invalid_request"
        # A POST to the pixel's path is not the pixel.
        assert (await c.post("/i", json={})).status_code == 405
        loader = await settle(c.collector, 2)
        page = next(e for e in loader.events() if e.message_id == "g1")
        assert (page.type, page.name, page.anonymous_id) == ("page", "Home", "d")
        assert [d.message_id for d in loader.dead()] == ["g2"]


@FRONTS
async def test_app_ids_when_write_keys_are_on(
    tmp_path: Path, patch_loader: None, front: str
) -> None:
    settings = {"eventkit_write_keys": "k1", "eventkit_snowplow_app_ids": "shop, blog"}
    async with serve(tmp_path, front, **settings) as c:
        ok = tp2({"e": "pv", "aid": "shop"}, {"e": "pv", "aid": "blog"})
        assert (await c.post(TP2, json=ok)).status_code == 200
        mixed = tp2({"e": "pv", "aid": "shop"}, {"e": "pv", "aid": "evil"})
        r = await c.post(TP2, json=mixed)
        assert r.status_code == 401
        assert r.json()["code"] == "unauthorized"
        assert "'evil'" in r.json()["message"]
        assert (await c.post(TP2, json=tp2({"e": "pv"}))).status_code == 401
        assert (await c.post(TP2, json={"no": "data"})).status_code == 401
        assert (await c.get("/i", params={"e": "pv", "aid": "blog"})).status_code == 200
        assert (await c.get("/i", params={"e": "pv", "aid": "x"})).status_code == 401
        # A write key does not open the Snowplow endpoints; app ids do not open Segment's.
        r = await c.post(f"{TP2}?writeKey=k1", json=tp2({"e": "pv"}))
        assert r.status_code == 401
        assert (await c.post("/v1/track", json={"userId": "u", "event": "e"})).status_code == 401
        loader = await settle(c.collector, 3)
        assert len(loader.events()) == 3


async def test_app_ids_unused_while_write_keys_are_off(tmp_path: Path, patch_loader: None) -> None:
    async with serve(tmp_path, "fastpath", eventkit_snowplow_app_ids="shop") as c:
        assert (await c.post(TP2, json=tp2({"e": "pv", "aid": "any"}))).status_code == 200


@FRONTS
async def test_cors_with_credentials(tmp_path: Path, patch_loader: None, front: str) -> None:
    async with serve(tmp_path, front, eventkit_cors_origins="https://shop.example") as c:
        pre = await c.options(
            TP2,
            headers={
                "Origin": ORIGIN,
                "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": "content-type",
            },
        )
        assert pre.status_code == 204
        assert pre.headers.get_list("access-control-allow-origin") == [ORIGIN]
        assert pre.headers["access-control-allow-credentials"] == "true"
        assert "POST" in pre.headers["access-control-allow-methods"]
        for r in (
            await c.post(TP2, json=tp2({"e": "pv"}), headers={"Origin": ORIGIN}),
            await c.get("/i", params={"e": "pv"}, headers={"Origin": ORIGIN}),
        ):
            assert r.status_code == 200
            assert r.headers.get_list("access-control-allow-origin") == [ORIGIN]
            assert r.headers["access-control-allow-credentials"] == "true"
            assert "Origin" in r.headers["vary"]
        # An origin not allowed gets no CORS grant at all.
        other = await c.post(TP2, json=tp2({"e": "pv"}), headers={"Origin": "https://evil.example"})
        assert "access-control-allow-origin" not in other.headers
        assert "access-control-allow-credentials" not in other.headers
        # Segment's endpoints are unchanged: no credentials.
        seg = await c.post(
            "/v1/track", json={"userId": "u", "event": "e"}, headers={"Origin": ORIGIN}
        )
        assert "access-control-allow-credentials" not in seg.headers


@FRONTS
async def test_wildcard_origins_are_echoed_never_star(
    tmp_path: Path, patch_loader: None, front: str
) -> None:
    async with serve(tmp_path, front) as c:  # EVENTKIT_CORS_ORIGINS defaults to *
        pre = await c.options(
            "/i", headers={"Origin": ORIGIN, "Access-Control-Request-Method": "GET"}
        )
        assert pre.headers.get_list("access-control-allow-origin") == [ORIGIN]
        assert pre.headers["access-control-allow-credentials"] == "true"
        r = await c.post(TP2, json=tp2({"e": "pv"}), headers={"Origin": ORIGIN})
        assert r.headers.get_list("access-control-allow-origin") == [ORIGIN]
        seg = await c.post(
            "/v1/track", json={"userId": "u", "event": "e"}, headers={"Origin": ORIGIN}
        )
        assert seg.headers["access-control-allow-origin"] == "*"


async def test_stream_override(tmp_path: Path, patch_loader: None) -> None:
    streams = '{"page": "sp_pages", "track": "sp_events"}'
    async with serve(tmp_path, "fastpath", eventkit_snowplow_type_streams=streams) as c:
        body = tp2({"e": "pv", "eid": "a"}, {"e": "ue", "eid": "b", "ue_pr": '{"schema": "x"}'})
        assert (await c.post(TP2, json=body)).status_code == 200
        assert (await c.post("/v1/page", json={"userId": "u", "messageId": "c"})).status_code == 200
        loader = await settle(c.collector, 3)
        assert {e.message_id: e.stream for e in loader.events()} == {
            "a": "sp_pages",
            "b": "sp_events",
            "c": "pages",  # Segment keeps EVENTKIT_TYPE_STREAMS
        }


def test_settings() -> None:
    s = Settings.model_validate(
        {
            "eventkit_snowplow_app_ids": "a, b",
            "eventkit_type_streams": '{"track": "tracks"}',
            "eventkit_snowplow_type_streams": '{"page": "sp"}',
        }
    )
    assert s.eventkit_snowplow_app_ids == ["a", "b"]
    assert s.snowplow_type_streams["page"] == "sp"
    assert s.snowplow_type_streams["track"] == "tracks"
    assert Settings().eventkit_snowplow_app_ids == []
    with pytest.raises((ConfigurationError, ValidationError)):
        Settings.model_validate({"eventkit_snowplow_type_streams": '{"page": "../x"}'})


def test_recovery_splits_a_stored_pixel_the_same_way() -> None:
    body = snowplow_pixel_body(b"e=se&se_ac=a&eid=x1&uid=u&uid=ignored&e=pv")
    assert json.loads(body)["data"] == [{"e": "se", "se_ac": "a", "eid": "x1", "uid": "u"}]
    env = Envelope(source="snowplow", stream=None, received_at=_now(), body=body)
    stored = msgspec.msgpack.decode(msgspec.msgpack.encode(env), type=Envelope)
    raws = to_raw_events(
        7,
        stored,
        reparse(stored, Limits()),
        namespace="n",
        type_streams={"track": "events"},
        source_streams={"snowplow": {"track": "sp"}},
    )
    assert [(r.stream, r.message_id, r.key, r.source) for r in raws] == [
        ("sp", "x1", "u", "snowplow")
    ]
    unfit = Envelope(source="snowplow", stream=None, received_at=_now(), body=b'{"a": 1}')
    raws = to_raw_events(1, unfit, reparse(unfit, Limits()), namespace="n", type_streams={})
    assert [r.source for r in raws] == ["invalid_snowplow"]


def _now() -> Any:
    from datetime import UTC, datetime

    return datetime.now(UTC)
