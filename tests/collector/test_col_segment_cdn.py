"""The analytics.js CDN endpoints: the settings document and the bundles directory.

The browser tests (``tests/compat/test_browser_segment.py``) load analytics.js through them; these
pin the answers a browser never exercises: how apiHost is derived, unknown write keys, bundles
not configured, and names that try to leave the bundles directory.
"""

from __future__ import annotations

from pathlib import Path

from eventkit_collector.app import Collector, create_app
from eventkit_collector.segment_cdn import api_endpoint, settings_document
from eventkit_collector.settings import Settings
from litestar.testing import AsyncTestClient


def _settings(tmp_path: Path, **kw: object) -> Settings:
    return Settings(eventkit_data_dir=tmp_path / "data", eventkit_metrics_enabled=False, **kw)  # type: ignore[arg-type]


def test_api_endpoint() -> None:
    assert api_endpoint(None, "http", "127.0.0.1:8000") == ("127.0.0.1:8000/v1", "http")
    # Behind a TLS proxy the public URL wins over the request's scheme.
    public = "https://collect.example.com/edge/"
    assert api_endpoint(public, "http", "10.0.0.5") == ("collect.example.com/edge/v1", "https")
    doc = settings_document("wk", "h/v1", "https")
    assert doc["integrations"] == {
        "Segment.io": {
            "apiKey": "wk",
            "apiHost": "h/v1",
            "protocol": "https",
            "unbundledIntegrations": [],
            "addBundledMetadata": True,
            "maybeBundledConfigIds": {},
        }
    }
    assert doc["metrics"] == {"sampleRate": 0}


async def test_settings_document_and_write_keys(tmp_path: Path) -> None:
    collector = Collector(_settings(tmp_path, eventkit_write_keys="k1"))
    async with AsyncTestClient(create_app(collector=collector)) as c:
        r = await c.get("/v1/projects/k1/settings", headers={"Origin": "https://shop.example"})
        assert r.status_code == 200
        assert r.headers["access-control-allow-origin"] in ("*", "https://shop.example")
        seg = r.json()["integrations"]["Segment.io"]
        assert (seg["apiHost"], seg["protocol"]) == ("testserver.local/v1", "http")
        r = await c.get("/v1/projects/nope/settings")
        assert r.status_code == 404
        assert r.json()["code"] == "unknown_write_key"


async def test_bundles(tmp_path: Path) -> None:
    bundles = tmp_path / "umd"
    bundles.mkdir()
    (bundles / "standalone.js").write_text("/* analytics.js */")
    (bundles / "407.bundle.abc.js").write_text("/* chunk */")
    (tmp_path / "secret.js").write_text("no")
    collector = Collector(_settings(tmp_path, eventkit_segment_bundles_dir=bundles))
    async with AsyncTestClient(create_app(collector=collector)) as c:
        r = await c.get("/analytics.js/v1/any-key/analytics.min.js")
        assert r.status_code == 200
        assert r.text == "/* analytics.js */"
        assert r.headers["content-type"].startswith("application/javascript")
        r = await c.get("/analytics-next/bundles/407.bundle.abc.js")
        assert r.status_code == 200
        assert "immutable" in r.headers["cache-control"]
        for bad in ("..%2Fsecret.js", "%2E%2E", "missing.js", ".hidden"):
            r = await c.get(f"/analytics-next/bundles/{bad}")
            assert r.status_code == 404, bad
            assert r.json()["code"] == "not_found"


async def test_bundles_not_configured(tmp_path: Path) -> None:
    async with AsyncTestClient(create_app(collector=Collector(_settings(tmp_path)))) as c:
        r = await c.get("/analytics.js/v1/k/analytics.min.js")
        assert r.status_code == 404
        assert "EVENTKIT_SEGMENT_BUNDLES_DIR" in r.json()["message"]
