"""PostHog's and Amplitude's endpoints in-process (both fronts): encodings, answers, errors, keys.

The real clients and posthog-js's recorded requests are in tests/e2e/test_e2e_sdk_*.py; here each
encoding and each error is one small request.
"""

# ruff: noqa: F811  (the shared fixtures are imported from test_col_app)
from __future__ import annotations

import base64
import gzip
import json
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from eventkit_collector.app import Collector, create_app
from eventkit_collector.settings import Settings
from eventkit_core import ConfigurationError
from litestar.testing import AsyncTestClient

from tests.collector.test_col_app import (  # noqa: F401  (fixtures)
    _settings,
    client,
    loader_of,
    patch_loader,
    settle,
)

EVENT = {
    "event": "Clicked",
    "distinct_id": "u1",
    "uuid": "11111111-1111-4111-8111-111111111111",
    "properties": {"a": 1},
}
JS_EVENT = {
    "event": "$pageview",
    "uuid": "22222222-2222-4222-8222-222222222222",
    "timestamp": "2024-05-06T07:08:09.000Z",
    "properties": {"distinct_id": "d1", "$device_id": "d1", "token": "phc_k", "title": "Home"},
}
AMP = {"event_type": "Played", "user_id": "u1", "device_id": "dev-1", "insert_id": "i-1"}


def _b64_form(value: Any) -> bytes:
    return b"data=" + quote(base64.b64encode(json.dumps(value).encode()).decode()).encode()


FORM = {"Content-Type": "application/x-www-form-urlencoded"}
PLAIN = {"Content-Type": "text/plain"}


@pytest.mark.parametrize(
    ("path", "body", "headers", "n"),
    [
        ("/capture/", json.dumps({**EVENT, "api_key": "phc_k"}).encode(), {}, 1),
        ("/batch/", json.dumps({"api_key": "phc_k", "batch": [EVENT, JS_EVENT]}).encode(), {}, 2),
        ("/batch", json.dumps({"api_key": "phc_k", "batch": [EVENT, JS_EVENT]}).encode(), {}, 2),
        ("/i/v0/e/", json.dumps([EVENT, JS_EVENT]).encode(), {}, 2),
        ("/e/?compression=gzip-js&ver=1", gzip.compress(json.dumps([JS_EVENT]).encode()), PLAIN, 1),
        ("/e/", gzip.compress(json.dumps([JS_EVENT]).encode()), PLAIN, 1),  # magic bytes only
        ("/e/?compression=base64", _b64_form([EVENT, JS_EVENT]), FORM, 2),
        ("/e", b"data=" + quote(json.dumps([EVENT])).encode(), FORM, 1),
        (
            "/batch/",
            gzip.compress(json.dumps({"api_key": "k", "batch": [EVENT]}).encode()),
            {"Content-Encoding": "gzip"},
            1,
        ),
    ],
)
async def test_posthog_encodings(
    client: tuple[Any, Collector], path: str, body: bytes, headers: dict[str, str], n: int
) -> None:
    c, collector = client
    r = await c.post(path, content=body, headers=headers)
    assert r.status_code == 200, r.text
    assert r.json() == {"status": 1}
    loader = await settle(collector, n)
    assert not loader.dead(), [d.reason for d in loader.dead()]
    by_id = {e.message_id: e for e in loader.events()}
    assert len(by_id) == n
    if EVENT["uuid"] in by_id:
        e = by_id[EVENT["uuid"]]
        assert (e.type, e.stream, e.event, e.user_id) == ("track", "events", "Clicked", "u1")
    if JS_EVENT["uuid"] in by_id:
        e = by_id[JS_EVENT["uuid"]]
        assert (e.type, e.stream, e.anonymous_id, e.user_id) == ("page", "pages", "d1", None)


async def test_amplitude_endpoints_answer_its_success_body(client: tuple[Any, Collector]) -> None:
    c, collector = client
    for path in ("/2/httpapi", "/batch", "/batch/"):
        body = {"api_key": "k", "events": [{**AMP, "insert_id": path}]}
        r = await c.post(path, json=body)
        assert r.status_code == 200, r.text
        answer = r.json()
        assert answer["code"] == 200
        assert answer["events_ingested"] == 1
        assert answer["payload_size_bytes"] == len(r.request.content)
        assert isinstance(answer["server_upload_time"], int)
    loader = await settle(collector, 3)
    assert {e.message_id for e in loader.events()} == {"/2/httpapi", "/batch", "/batch/"}
    assert {(e.type, e.stream, e.user_id, e.anonymous_id) for e in loader.events()} == {
        ("track", "events", "u1", "dev-1")
    }


async def test_misfits_are_dead_letters_naming_the_source(client: tuple[Any, Collector]) -> None:
    c, collector = client
    r = await c.post("/batch/", json={"api_key": "k", "batch": [{"distinct_id": "u"}, 5]})
    assert r.status_code == 200
    r = await c.post("/2/httpapi", json={"api_key": "k", "events": [{"event_type": "x"}]})
    assert r.status_code == 200
    assert r.json()["events_ingested"] == 1
    r = await c.post("/2/httpapi", json={"api_key": "k"})  # no events: the body is the misfit
    assert r.status_code == 200
    loader = await settle(collector, 4)
    reasons = sorted(d.reason for d in loader.dead())
    assert len(reasons) == 4
    assert [r.split(" event:")[0] for r in reasons] == [
        "Amplitude",
        "Amplitude",
        "PostHog",
        "PostHog",
    ]
    assert {d.reason_code for d in loader.dead()} == {"missing_field", "not_an_object"}


async def test_errors_in_each_apis_shape(client: tuple[Any, Collector]) -> None:
    c, _ = client
    r = await c.post("/e/", content=b'[{"event": ')
    assert r.status_code == 400
    body = r.json()
    assert body["code"] == "invalid_json"  # eventkit's code and message...
    assert body["message"] == body["detail"]  # ...and PostHog's detail (posthog-python reads it)
    # /batch when the body does not say whose it is: both SDKs find their field
    r = await c.post("/batch/", content=b'{"api_key": "k", "batch": [')
    assert r.status_code == 400
    assert r.json()["code"] == 400
    assert r.json()["detail"] == r.json()["message"]
    r = await c.post("/2/httpapi", content=b"{nope")
    assert r.status_code == 400
    assert r.json()["code"] == 400  # Amplitude's SDK reads a numeric code
    assert r.json()["error"] == "invalid_json"
    r = await c.post("/e/?compression=base64", content=b"data=%%%", headers=FORM)
    assert r.status_code == 400
    r = await c.post("/e/?compression=gzip-js", content=b"not gzip", headers=PLAIN)
    assert r.status_code == 400
    assert r.json()["code"] == "invalid_encoding"
    many = {"api_key": "k", "batch": [EVENT] * 2501}
    r = await c.post("/batch/", json=many)
    assert r.status_code == 413
    assert r.json()["code"] == "payload_too_large"
    r = await c.post("/2/httpapi", json={"api_key": "k", "events": [AMP] * 2501})
    assert (r.status_code, r.json()["code"]) == (413, 413)


async def test_posthog_startup_endpoints(client: tuple[Any, Collector]) -> None:
    c, _ = client
    r = await c.post("/flags/?v=2&config=true", json={"token": "phc_k", "distinct_id": "d"})
    assert r.status_code == 200
    assert r.json()["flags"] == {}
    assert r.json()["featureFlags"] == {}
    assert r.json()["errorsWhileComputingFlags"] is False
    r = await c.get("/array/phc_k/config")
    assert r.status_code == 200
    assert r.json()["token"] == "phc_k"
    assert r.json()["hasFeatureFlags"] is False
    r = await c.get("/array/phc_k/config.js")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("application/javascript")
    assert r.text.startswith("(function(){window._POSTHOG_REMOTE_CONFIG")
    assert '"phc_k"' in r.text
    paths = (await c.get("/schema/openapi.json")).json()["paths"]
    assert {"/capture", "/e", "/i/v0/e", "/2/httpapi", "/batch", "/flags"} <= set(paths)
    assert "status" in paths["/e"]["post"]["description"]


async def test_vendor_write_keys(tmp_path: Path, patch_loader: None) -> None:
    collector = Collector(_settings(tmp_path, eventkit_write_keys="phc_k,amp_k"))
    async with AsyncTestClient(create_app(collector=collector)) as c:
        ok = [
            await c.post("/batch/", json={"api_key": "phc_k", "batch": [EVENT]}),
            await c.post("/capture/", json={**EVENT, "token": "phc_k"}),
            await c.post("/e/", json=[JS_EVENT]),  # properties.token, as posthog-js sends it
            await c.post("/e/?token=phc_k", json=[EVENT]),
            await c.post("/2/httpapi", json={"api_key": "amp_k", "events": [AMP]}),
        ]
        assert [r.status_code for r in ok] == [200] * 5
        refused = [
            await c.post("/batch/", json={"api_key": "nope", "batch": [EVENT]}),
            await c.post("/e/", json=[EVENT]),
            await c.post("/e/?api_key=nope", json=[JS_EVENT]),
            await c.post("/2/httpapi", json={"api_key": "nope", "events": [AMP]}),
        ]
        assert [r.status_code for r in refused] == [401] * 4
        assert refused[0].json()["type"] == "authentication_error"
        assert refused[3].json()["code"] == 401
        await settle(collector, 5)


async def test_cors_on_vendor_endpoints(client: tuple[Any, Collector]) -> None:
    c, _ = client
    r = await c.options(
        "/e/",
        headers={"Origin": "https://shop.example", "Access-Control-Request-Method": "POST"},
    )
    assert r.status_code in (200, 204)
    r = await c.post("/e/", json=[JS_EVENT], headers={"Origin": "https://shop.example"})
    assert r.status_code == 200
    assert r.headers["access-control-allow-origin"] in ("*", "https://shop.example")


async def test_vendor_envelopes_recover_after_restart(tmp_path: Path, patch_loader: None) -> None:
    settings = _settings(tmp_path)
    collector = Collector(settings)
    async with AsyncTestClient(create_app(collector=collector)) as c:
        loader_of(collector).on_flushed = lambda files: None  # never released
        gz = gzip.compress(json.dumps([JS_EVENT]).encode())
        assert (await c.post("/e/", content=gz, headers=PLAIN)).status_code == 200
        assert (
            await c.post("/2/httpapi", json={"api_key": "k", "events": [AMP]})
        ).status_code == 200
        await settle_items(collector, 2)
    again = Collector(settings)
    async with AsyncTestClient(create_app(collector=again)):
        loader = await settle(again, 2)
        assert {(e.message_id, e.stream) for e in loader.events()} == {
            (JS_EVENT["uuid"], "pages"),
            ("i-1", "events"),
        }


async def settle_items(collector: Collector, n: int) -> None:
    import asyncio

    loader = loader_of(collector)
    for _ in range(2000):
        if len(loader.items) >= n:
            return
        await asyncio.sleep(0.005)
    raise AssertionError(f"only {len(loader.items)} of {n} items arrived")


def test_source_streams_setting(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    s = Settings(
        eventkit_data_dir=tmp_path,
        eventkit_source_streams={"posthog": {"track": "ph"}, "amplitude": "amp"},
    )
    tables = s.source_type_streams()
    assert tables["posthog"]["track"] == "ph"
    assert tables["posthog"]["identify"] == "users"
    assert set(tables["amplitude"].values()) == {"amp"}
    with pytest.raises((ConfigurationError, ValueError), match="snowplough"):
        Settings(eventkit_data_dir=tmp_path, eventkit_source_streams={"snowplough": "x"})
    with pytest.raises((ConfigurationError, ValueError)):
        Settings(eventkit_data_dir=tmp_path, eventkit_source_streams={"posthog": "../x"})
    monkeypatch.setenv("EVENTKIT_SOURCE_STREAMS", '{"amplitude": {"identify": "amp_users"}}')
    assert Settings(eventkit_data_dir=tmp_path).source_type_streams()["amplitude"]["identify"] == (
        "amp_users"
    )


def test_decode_posthog_transport_encodings() -> None:
    from eventkit_collector.vendors import decode_posthog

    body = json.dumps([JS_EVENT]).encode()
    gz = gzip.compress(body)
    cap = 1 << 20
    assert decode_posthog(body, {}, {}, cap) == (body, False)
    # posthog-js's gzip: kept compressed in the ring buffer (the wire bytes are one gzip stream)
    assert decode_posthog(gz, {"content-type": "text/plain"}, {}, cap) == (body, True)
    assert decode_posthog(gz, {"content-encoding": "gzip"}, {"compression": "gzip-js"}, cap) == (
        body,
        True,
    )
    # gzip inside gzip: decoded twice, stored as the JSON
    double = gzip.compress(gz)
    assert decode_posthog(double, {"content-encoding": "gzip"}, {}, cap) == (body, False)
    b64 = base64.b64encode(body)
    form = {"content-type": "application/x-www-form-urlencoded"}
    assert decode_posthog(b"data=" + b64, form, {"compression": "base64"}, cap)[0] == body
    assert decode_posthog(b64, {}, {"compression": "base64"}, cap)[0] == body
    plus = base64.b64encode(b'{"a":"\xfb\xef"}')  # has a "+": sent unescaped, read as a space
    assert b"+" in plus
    assert decode_posthog(b"data=" + plus, form, {}, cap)[0] == b'{"a":"\xfb\xef"}'
