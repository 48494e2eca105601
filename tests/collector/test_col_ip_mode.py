"""EVENTKIT_IP_MODE / EVENTKIT_STREAM_IP_MODE: ``context.ip`` stored whole, truncated or not at all.

The in-process tests run the real collector (ring buffer, queue, EventLoader, local Parquet
stores, ``EVENTKIT_PARQUET_PAYLOAD=full``) behind the served ASGI front, send the same events
from every source (Segment single and batch, PostHog, Amplitude, Snowplow tp2 and pixel, a dead
letter), each carrying the client address (X-Forwarded-For from a trusted proxy) and an address
set by the client in the event, then read every Parquet file back: the columns, and the bytes.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import msgspec
import pyarrow.parquet as pq
import pytest
from eventkit_collector.anonymise import (
    IpAnonymiser,
    IpPolicy,
    parse_stream_modes,
    truncate_ip,
)
from eventkit_collector.app import Collector, create_app
from eventkit_collector.fastpath import FastIngest
from eventkit_collector.settings import Settings
from eventkit_collector.wiring import check_ip_mode_with_publish
from eventkit_core import ConfigurationError, RawEvent
from pydantic import ValidationError

#: The request's address (X-Forwarded-For) and the ones clients put in their events.
PEER = "198.51.100.77"
CLIENT_V4 = "203.0.113.219"
CLIENT_V6 = "2001:db8:85a3:8d3:1319:8a2e:370:7348"
FULL_IPS = (PEER, CLIENT_V4, CLIENT_V6)
TRUNCATED = {PEER: "198.51.100.0", CLIENT_V4: "203.0.113.0", CLIENT_V6: "2001:db8:85a3::"}


# --- units ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("ip", "expected"),
    [
        ("203.0.113.219", "203.0.113.0"),
        ("10.0.0.0", "10.0.0.0"),
        (" 192.0.2.255 ", "192.0.2.0"),
        (CLIENT_V6, "2001:db8:85a3::"),
        ("2001:db8:85a3:ffff::1", "2001:db8:85a3::"),
        ("::1", "::"),
        ("::ffff:203.0.113.219", "::ffff:203.0.113.0"),
        ("fe80::1%eth0", "fe80::"),
        ("$remote", None),
        ("203.0.113.219:443", None),
        ("", None),
    ],
)
def test_truncate_ip(ip: str, expected: str | None) -> None:
    assert truncate_ip(ip) == expected


def test_stream_modes_parse_pairs_and_json() -> None:
    assert parse_stream_modes("web:truncate, server:DROP") == {"web": "truncate", "server": "drop"}
    assert parse_stream_modes('{"web": "full"}') == {"web": "full"}
    assert parse_stream_modes("") == {}
    for bad, match in [
        ("web", "not stream:mode"),
        ("web:hide", "use one of full, truncate, drop"),
        ("../x:drop", "invalid"),
        ("{nope", "not JSON"),
    ]:
        with pytest.raises(ConfigurationError, match=match):
            parse_stream_modes(bad)


def test_settings_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EVENTKIT_IP_MODE", "truncate")
    monkeypatch.setenv("EVENTKIT_STREAM_IP_MODE", "events:drop,pages:full")
    s = Settings()
    assert (s.eventkit_ip_mode, s.eventkit_stream_ip_mode) == (
        "truncate",
        {"events": "drop", "pages": "full"},
    )
    monkeypatch.setenv("EVENTKIT_IP_MODE", "hash")
    with pytest.raises(ValidationError, match="eventkit_ip_mode"):
        Settings()


def test_the_default_keeps_ips_and_costs_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("EVENTKIT_IP_MODE", raising=False)
    monkeypatch.delenv("EVENTKIT_STREAM_IP_MODE", raising=False)
    s = Settings()
    policy = IpPolicy(s.eventkit_ip_mode, s.eventkit_stream_ip_mode)
    assert not policy.enabled
    assert policy.ring_ip(PEER) == PEER


def test_the_ring_keeps_the_least_private_mode() -> None:
    assert IpPolicy("drop").ring_ip(PEER) is None
    assert IpPolicy("drop", {"web": "truncate"}).ring_ip(PEER) == "198.51.100.0"
    assert IpPolicy("truncate", {"web": "drop"}).ring_ip(PEER) == "198.51.100.0"
    assert IpPolicy("drop", {"web": "full"}).ring_ip(PEER) == PEER


def test_an_event_without_ip_fields_is_not_rewritten() -> None:
    item = msgspec.Raw(b'{"type":"track","event":"x","properties":{"zip":"1"}}')
    raw = RawEvent(payload=item, stream="events", ip=PEER)
    IpAnonymiser(IpPolicy("truncate")).apply([raw])
    assert raw.payload is item
    assert raw.ip == "198.51.100.0"


def test_an_escaped_key_is_found() -> None:
    item = msgspec.Raw(b'{"context":{"\\u0069p":"203.0.113.219"}}')
    raw = RawEvent(payload=item, stream="events")
    IpAnonymiser(IpPolicy("drop")).apply([raw])
    assert json.loads(bytes(raw.payload)) == {"context": {}}


def test_a_batch_context_is_rewritten_once_per_mode() -> None:
    ctx = msgspec.Raw(b'{"ip":"203.0.113.219","locale":"de"}')
    raws = [RawEvent(payload={"type": "track"}, stream=s, batch_context=ctx) for s in "aab"]
    IpAnonymiser(IpPolicy("truncate", {"b": "drop"})).apply(raws)
    assert raws[0].batch_context is raws[1].batch_context
    assert json.loads(bytes(raws[0].batch_context)) == {"ip": "203.0.113.0", "locale": "de"}
    assert json.loads(bytes(raws[2].batch_context)) == {"locale": "de"}


# --- every source, through the real collector, into Parquet -------------------------------------

WRITE_KEY = "ip-mode-key"
SNOWPLOW_SCHEMA = "iglu:com.snowplowanalytics.snowplow/payload_data/jsonschema/1-0-4"


def requests() -> Iterator[tuple[str, str, dict[str, Any] | bytes]]:
    """(method, path, JSON body or query) of one request per source; ids say which."""
    ctx4 = {"ip": CLIENT_V4, "locale": "de-DE"}
    yield "POST", "/v1/track", {"event": "Seg Single", "userId": "u1", "messageId": "seg-1"}
    yield (
        "POST",
        "/v1/identify",
        {"userId": "u1", "messageId": "seg-2", "context": {"ip": CLIENT_V6}},
    )
    yield (
        "POST",
        "/v1/batch",
        {
            "context": ctx4,
            "batch": [
                {"type": "track", "event": "Seg Batch", "userId": "u1", "messageId": "seg-3"},
                {"type": "page", "name": "Home", "userId": "u1", "messageId": "seg-4"},
                # not an event: a dead letter, with the request's address in its ip column
                7,
            ],
        },
    )
    yield (
        "POST",
        "/capture/",
        {
            "api_key": WRITE_KEY,
            "event": "PH Clicked",
            "distinct_id": "u2",
            "uuid": "11111111-1111-4111-8111-111111111111",
            "properties": {"$ip": CLIENT_V4, "a": 1},
        },
    )
    yield (
        "POST",
        "/2/httpapi",
        {
            "api_key": WRITE_KEY,
            "events": [
                {"event_type": "Amp Played", "user_id": "u3", "insert_id": "amp-1", "ip": CLIENT_V6}
            ],
        },
    )
    yield (
        "POST",
        "/com.snowplowanalytics.snowplow/tp2",
        {
            "schema": SNOWPLOW_SCHEMA,
            "data": [
                {"e": "pv", "eid": "sp-1", "aid": "web", "ip": CLIENT_V4, "url": "https://x/"}
            ],
        },
    )
    yield "GET", "/i", b"e=pv&eid=sp-2&aid=web&url=https%3A%2F%2Fx%2F&ip=" + CLIENT_V4.encode()


async def run_collector(data: Path, **settings: Any) -> None:
    s = Settings(
        eventkit_data_dir=data,
        eventkit_metrics_enabled=False,
        eventkit_partitions=2,
        eventkit_parquet_payload="full",
        eventkit_trusted_proxies=["*"],
        eventkit_write_keys=[WRITE_KEY],
        eventkit_snowplow_app_ids=["web"],
        eventkit_flush_max_age=0.2,
        **settings,
    )
    collector = Collector(s)
    transport = httpx.ASGITransport(app=FastIngest(create_app(collector=collector), collector))
    headers = {
        "X-Forwarded-For": PEER,
        "Authorization": httpx.BasicAuth(WRITE_KEY, "")._auth_header,
    }
    await collector.start()
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
            for method, path, body in requests():
                if method == "GET":
                    assert isinstance(body, bytes)
                    r = await c.get(f"{path}?{body.decode()}", headers=headers)
                else:
                    r = await c.post(path, content=json.dumps(body), headers=headers)
                assert r.status_code == 200, (path, r.text)
    finally:
        await collector.stop()  # drains: every event is in a file afterwards


def parquet_files(data: Path) -> list[Path]:
    return sorted(data.rglob("*.parquet"))


def table_rows(data: Path, kind: str) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for f in parquet_files(data / kind):
        out.extend(pq.read_table(f).to_pylist())
    return out


def contexts(data: Path) -> dict[str, Any]:
    """message_id -> the stored context's ip (``"-"`` when the context has no ip)."""
    return {
        r["message_id"]: json.loads(r["context"] or "{}").get("ip", "-")
        for r in table_rows(data, "events")
    }


#: message_id -> the address its context holds in ``full`` mode (the client's wins).
FULL_CONTEXTS = {
    "seg-1": PEER,
    "seg-2": CLIENT_V6,
    "seg-3": CLIENT_V4,
    "seg-4": CLIENT_V4,
    "11111111-1111-4111-8111-111111111111": PEER,  # PostHog's $ip stays in properties
    "amp-1": CLIENT_V6,
    "sp-1": CLIENT_V4,
    "sp-2": CLIENT_V4,
}


def everything_decoded(data: Path) -> str:
    """Every value of every stored row, as text (what a query could ever see)."""
    rows = table_rows(data, "events") + table_rows(data, "dead-letters")
    return json.dumps(rows, default=str)


def raw_bytes(data: Path) -> bytes:
    return b"".join(f.read_bytes() for f in parquet_files(data))


async def test_full_keeps_every_address(tmp_path: Path) -> None:
    """The control: in the default mode the addresses are there, so the searches below can fail."""
    await run_collector(tmp_path, eventkit_ip_mode="full")
    assert contexts(tmp_path) == FULL_CONTEXTS
    text = everything_decoded(tmp_path)
    assert all(ip in text for ip in FULL_IPS)
    (dead,) = table_rows(tmp_path, "dead-letters")
    assert dead["ip"] == PEER


async def test_truncate_stores_only_networks(tmp_path: Path) -> None:
    await run_collector(tmp_path, eventkit_ip_mode="truncate")
    assert contexts(tmp_path) == {k: TRUNCATED[v] for k, v in FULL_CONTEXTS.items()}
    (ph,) = [r for r in table_rows(tmp_path, "events") if r["event"] == "PH Clicked"]
    assert json.loads(ph["properties"])["$ip"] == "203.0.113.0"
    (dead,) = table_rows(tmp_path, "dead-letters")
    assert dead["ip"] == "198.51.100.0"
    text, data = everything_decoded(tmp_path), raw_bytes(tmp_path)
    for ip in FULL_IPS:
        assert ip not in text
        assert ip.encode() not in data
    assert all(t in text for t in TRUNCATED.values())


async def test_drop_stores_no_address(tmp_path: Path) -> None:
    await run_collector(tmp_path, eventkit_ip_mode="drop")
    assert set(contexts(tmp_path).values()) == {"-"}
    (dead,) = table_rows(tmp_path, "dead-letters")
    assert dead["ip"] is None
    text, data = everything_decoded(tmp_path), raw_bytes(tmp_path)
    for ip in [*FULL_IPS, *TRUNCATED.values()]:
        assert ip not in text
        assert ip.encode() not in data
    # The ring buffer entry held no address either (every stream drops it).
    ring = b"".join(f.read_bytes() for f in (tmp_path / "ring").glob("*"))
    assert PEER.encode() not in ring


async def test_per_stream_overrides(tmp_path: Path) -> None:
    """``EVENTKIT_STREAM_IP_MODE``: ``events`` (tracks) truncated, ``users`` dropped, rest whole."""
    await run_collector(
        tmp_path, eventkit_ip_mode="full", eventkit_stream_ip_mode="events:truncate,users:drop"
    )
    got = contexts(tmp_path)
    streams = {r["message_id"]: r["stream"] for r in table_rows(tmp_path, "events")}
    for mid, ip in FULL_CONTEXTS.items():
        expected = {"events": TRUNCATED[ip], "users": "-"}.get(streams[mid], ip)
        assert got[mid] == expected, (mid, streams[mid])
    assert streams["seg-2"] == "users"
    assert streams["seg-4"] == "pages"


def test_publish_acknowledgement_refuses_an_ip_mode() -> None:
    """ACK_MODE=publish skips the anonymising sink: it must refuse, not store whole IPs."""
    check_ip_mode_with_publish(IpPolicy("full"))  # nothing to apply: fine
    for policy in (IpPolicy("truncate"), IpPolicy("full", {"web": "drop"})):
        with pytest.raises(ConfigurationError, match="EVENTKIT_ACK_MODE=commit"):
            check_ip_mode_with_publish(policy)
