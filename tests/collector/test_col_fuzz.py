"""Property tests of the HTTP edge: whatever a client sends ends in a documented answer.

Both fronts are driven in-process through raw ASGI calls (so headers, Content-Length lies,
chunking and disconnects are exactly what the test says): the Litestar app, and the raw-ASGI
fast path in front of it; each with write keys off and on. The pipeline is the real one with the
recording loader of ``test_col_app``.
"""

from __future__ import annotations

import asyncio
import base64
import gzip
import json
import math
import os
import zlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final
from urllib.parse import quote

import msgspec
import pytest
from eventkit_collector.app import Collector, create_app
from eventkit_collector.fastpath import FastIngest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from tests.collector.test_col_app import _settings, patch_loader

__all__ = ["patch_loader"]  # the fixture, used by name below

KEY: Final = "k1"
FUZZ_EXAMPLES: Final = int(os.environ.get("EVENTKIT_FUZZ_EXAMPLES", "0"))
CODES: Final = {
    "invalid_json",
    "invalid_stream",
    "invalid_encoding",
    "invalid_request",
    "unauthorized",
    "not_found",
    "method_not_allowed",
    "payload_too_large",
    "unsupported_media_type",
    "overloaded",
}
#: Content types read as JSON (anything else is 415); no Content-Type at all is too.
JSON_TYPES: Final = (b"application/json", b"text/plain", b"application/x-www-form-urlencoded")
SINGLE_PATHS: Final = [
    f"/v1/{p}"
    for p in (
        "identify track page screen group alias i t p s g a".split()  # noqa: SIM905
    )
]
BATCH_PATHS: Final = ["/v1/batch", "/v1/b", "/beacon/v1/batch"]
TRACK: Final = {"type": "track", "userId": "u1", "event": "Clicked"}

ASGI = Callable[..., Any]


@dataclass
class Reply:
    status: int
    headers: dict[bytes, bytes]
    body: bytes


@dataclass
class Req:
    method: str = "POST"
    path: str = "/v1/track"
    raw_path: bytes | None = None
    query: bytes = b""
    headers: list[tuple[bytes, bytes]] = field(default_factory=list)
    chunks: list[bytes] = field(default_factory=list)
    disconnect: bool = False


async def call(app: ASGI, req: Req) -> Reply | None:
    """One HTTP request through an ASGI app; ``None`` when the app sent no response."""
    queue: list[dict[str, Any]] = []
    chunks = req.chunks or [b""]
    for i, chunk in enumerate(chunks):
        queue.append({"type": "http.request", "body": chunk, "more_body": i < len(chunks) - 1})
    if req.disconnect:
        queue[-1]["more_body"] = True
        queue.append({"type": "http.disconnect"})
    done = asyncio.Event()

    async def receive() -> dict[str, Any]:
        if queue:
            return queue.pop(0)
        await done.wait()
        return {"type": "http.disconnect"}

    sent: list[dict[str, Any]] = []

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": "1.1",
        "method": req.method,
        "scheme": "http",
        "path": req.path,
        "raw_path": req.raw_path if req.raw_path is not None else quote(req.path).encode(),
        "root_path": "",
        "query_string": req.query,
        "headers": [(b"host", b"testserver"), *req.headers],
        "client": ("127.0.0.1", 5000),
        "server": ("testserver", 80),
        "state": {},
        "extensions": {},
    }
    try:
        await app(scope, receive, send)
    finally:
        done.set()
    start = next((m for m in sent if m["type"] == "http.response.start"), None)
    if start is None:
        return None
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return Reply(start["status"], dict(start.get("headers", [])), body)


Fronts = dict[str, tuple[ASGI, Collector]]


@pytest.fixture
async def fronts(tmp_path: Path, patch_loader: None) -> AsyncIterator[Fronts]:
    out: Fronts = {}
    collectors = []
    for auth in ("open", "keyed"):
        kw: dict[str, Any] = {"eventkit_cors_origins": ["https://ok.example"]}
        if auth == "keyed":
            kw["eventkit_write_keys"] = [KEY]
        collector = Collector(_settings(tmp_path / auth, **kw))
        await collector.start()
        collectors.append(collector)
        app = create_app(collector=collector)
        out[f"{auth}-litestar"] = (app, collector)
        out[f"{auth}-fastpath"] = (FastIngest(app, collector), collector)
    try:
        yield out
    finally:
        for collector in collectors:
            await collector.stop()


# --- the oracle ------------------------------------------------------------------------------


def is_contract_json(data: bytes) -> bool:
    """What the contract accepts: msgspec decodes it, valid UTF-8, no BOM, 64-bit integers."""
    try:
        data.decode("utf-8")
        value = msgspec.json.decode(data)
    except (UnicodeDecodeError, msgspec.DecodeError, RecursionError):
        return False
    stack = [value]
    while stack:
        v = stack.pop()
        if isinstance(v, dict):
            stack.extend(v.values())
        elif isinstance(v, list):
            stack.extend(v)
        elif (type(v) is int and not -(2**63) <= v <= 2**64 - 1) or (
            isinstance(v, float) and not math.isfinite(v)
        ):
            return False
    return True


def check_reply(reply: Reply | None) -> dict[str, Any]:
    assert reply is not None, "no response"
    status = reply.status
    assert status < 500 or (status == 503 and b"retry-after" in reply.headers), reply
    assert reply.headers.get(b"content-type", b"").startswith(b"application/json"), reply
    body = json.loads(reply.body)
    if status == 200:
        assert body == {"success": True}, reply
    else:
        assert isinstance(body, dict), reply
        assert set(body) == {"code", "message"}, reply
        assert body["code"] in CODES, reply
        assert isinstance(body["message"], str), reply
        assert body["message"], reply
    return body  # type: ignore[no-any-return]


# --- strategies --------------------------------------------------------------------------------

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats()
    | st.text(max_size=20)
    | st.sampled_from(["track", "identify", "page", "batch", "writeKey", KEY]),
    lambda children: (
        st.lists(children, max_size=5)
        | st.dictionaries(
            st.sampled_from(["type", "userId", "event", "batch", "writeKey", "context"])
            | st.text(max_size=8),
            children,
            max_size=5,
        )
    ),
    max_leaves=25,
)

DEEP: Final = b"[" * 100_000 + b"]" * 100_000
SPECIAL: Final = [
    DEEP,
    b"[" * 5_000 + b"]" * 5_000,
    b'{"a":' + b"[" * 5_000 + b"]" * 5_000 + b"}",
    b'{"batch":[' + b"[" * 5_000 + b"]" * 5_000 + b"]}",
    b'{"batch":' + b"[" * 5_000 + b"]" * 5_000 + b"}",
    b'{"a": NaN}',
    b'{"a": Infinity}',
    b'{"a": -Infinity}',
    b'{"a": 1e999}',
    b'{"a": 1E+400}',
    b'{"a": -12345678901234567890123}',
    b'{"a": 18446744073709551616}',
    b'{"a": -9223372036854775809}',
    b'{"a": 18446744073709551615}',
    b'\xef\xbb\xbf{"a": 1}',
    b'{"a": "\xff\xfe"}',
    b'{"a": "\xed\xa0\x80"}',
    b'{"a": "\\ud800"}',
    b'{"a": 1}garbage',
    b'{"a": 1} {"b": 2}',
    b"",
    b"   ",
    b"null",
    b"42",
    b'"text"',
    b"[1, 2, {}]",
    json.dumps({"p": "x" * 40_000}).encode(),
    json.dumps([{"p": "x" * 40_000}]).encode(),
    json.dumps({"batch": [{"type": "track", "p": "x" * 40_000}]}).encode(),
    json.dumps({"batch": [{}] * 2501}).encode(),
    json.dumps({"batch": [1, "x", None, [], {"type": 5}]}).encode(),
    json.dumps({"batch": {"type": "track"}}).encode(),
    json.dumps({"batch": [TRACK], "writeKey": KEY}).encode(),
    json.dumps({**TRACK, "writeKey": KEY}).encode(),
    json.dumps({**TRACK, "writeKey": 5}).encode(),
    json.dumps({**TRACK, "writeKey": "k\u00e9\u2603"}).encode(),
    json.dumps({"batch": [TRACK], "sentAt": 1e308, "context": 5}).encode(),
    b'{"sentAt": 1e999, "batch": []}',
]


@st.composite
def bodies(draw: st.DrawFn) -> bytes:
    which = draw(st.sampled_from(["bytes", "json", "event", "batch", "special"]))
    if which == "bytes":
        return draw(st.binary(max_size=200))
    if which == "special":
        return draw(st.sampled_from(SPECIAL))
    if which == "json":
        value = draw(json_values)
    elif which == "event":
        value = draw(st.fixed_dictionaries({"type": json_values}, optional={"userId": json_values}))
        value.update(TRACK)
        if draw(st.booleans()):
            value["writeKey"] = draw(st.sampled_from([KEY, "nope", 5, None, "k1\u00e9"]))
    else:
        items = draw(st.lists(st.one_of(st.just(TRACK), json_values), max_size=6))
        value = {"batch": items}
        if draw(st.booleans()):
            value["writeKey"] = draw(st.sampled_from([KEY, "nope", 5]))
    text = json.dumps(value, allow_nan=True, ensure_ascii=draw(st.booleans()))
    return text.encode("utf-8", "surrogatepass")


@st.composite
def encoded(draw: st.DrawFn, body: bytes) -> tuple[list[tuple[bytes, bytes]], bytes]:
    """(Content-Encoding headers, wire bytes)."""
    how = draw(
        st.sampled_from(
            [
                "none",
                "identity",
                "gzip",
                "GZIP",
                "x-gzip",
                "gzip-garbage",
                "gzip-truncated",
                "gzip-two-members",
                "gzip-trailing-garbage",
                "deflate",
                "deflate-raw",
                "br",
                "gzip, gzip",
                "dup-headers",
                "empty",
                "non-ascii",
            ]
        )
    )
    if how == "none":
        return [], body
    if how == "identity":
        return [(b"content-encoding", b"identity")], body
    if how in ("gzip", "GZIP", "x-gzip"):
        return [(b"content-encoding", how.encode())], gzip.compress(body)
    if how == "gzip-garbage":
        return [(b"content-encoding", b"gzip")], body
    if how == "gzip-truncated":
        gz = gzip.compress(body)
        cut = draw(st.integers(0, max(0, len(gz) - 1)))
        return [(b"content-encoding", b"gzip")], gz[:cut]
    if how == "gzip-two-members":
        half = len(body) // 2
        return [(b"content-encoding", b"gzip")], gzip.compress(body[:half]) + gzip.compress(
            body[half:]
        )
    if how == "gzip-trailing-garbage":
        return [(b"content-encoding", b"gzip")], gzip.compress(body) + b"garbage"
    if how == "deflate":
        return [(b"content-encoding", b"deflate")], zlib.compress(body)
    if how == "deflate-raw":
        c = zlib.compressobj(wbits=-zlib.MAX_WBITS)
        return [(b"content-encoding", b"deflate")], c.compress(body) + c.flush()
    if how == "br":
        return [(b"content-encoding", b"br")], body
    if how == "gzip, gzip":
        return [(b"content-encoding", b"gzip, gzip")], gzip.compress(gzip.compress(body))
    if how == "dup-headers":
        gz = gzip.compress(body)
        return [(b"content-encoding", b"gzip"), (b"content-encoding", b"gzip")], gz
    if how == "empty":
        return [(b"content-encoding", b"")], body
    return [(b"content-encoding", "gzíp".encode("latin-1"))], body


STREAMS: Final = st.one_of(
    st.sampled_from(
        ["ok", "web_hooks-1", "", "..", ".", "a%2Fb", "a/b", "A" * 64, "A" * 65, "x" * 10_000]
    ),
    st.text(max_size=70).filter(lambda s: "/" not in s and "?" not in s),
)

CONTENT_TYPES: Final = st.sampled_from(
    [
        None,
        b"application/json",
        b"application/json; charset=utf-8",
        b"text/plain",
        b"text/plain;charset=UTF-8",
        b"application/x-www-form-urlencoded",
        b"Application/X-WWW-Form-Urlencoded",
        b"multipart/form-data; boundary=x",
        b"\xff\xfegarbage",
        b"",
    ]
)


def basic(raw: bytes) -> bytes:
    return b"Basic " + base64.b64encode(raw)


AUTHS: Final = st.sampled_from(
    [
        None,
        basic(KEY.encode() + b":"),
        basic(KEY.encode()),  # no colon
        basic(b"nope:"),
        basic(b":" + KEY.encode()),
        basic("k1\u00e9:".encode()),
        basic(b"\xff\xfe:"),
        b"Basic !!!notbase64",
        b"Basic",
        b"Basic ",
        "Basic k\u00e9y".encode("latin-1"),
        b"Bearer " + KEY.encode(),
        b"basic " + base64.b64encode(KEY.encode() + b":"),
    ]
)

QUERIES: Final = st.sampled_from(
    [
        b"",
        b"writeKey=" + KEY.encode(),
        b"writeKey=nope",
        b"writeKey=",
        b"writeKey=%ff%fe",
        b"writeKey=k%C3%A9",
        b"writeKey",
        b"writeKey=k1&writeKey=nope",
        b"\xff\xfe=writeKey",
        b"a=%zz&writeKey=k1",
    ]
)


@st.composite
def requests(draw: st.DrawFn) -> Req:
    group = draw(st.sampled_from(["single", "batch", "collect", "stream"]))
    if group == "single":
        path = draw(st.sampled_from(SINGLE_PATHS))
    elif group == "batch":
        path = draw(st.sampled_from(BATCH_PATHS))
    elif group == "collect":
        path = "/collect"
    else:
        path = "/collect/" + draw(STREAMS)
    body = draw(bodies())
    ctype = draw(CONTENT_TYPES)
    if ctype is not None and b"form" in ctype.lower() and draw(st.booleans()):
        form = draw(
            st.sampled_from(
                [
                    b"data=" + quote(body).encode(),
                    quote(body).encode(),
                    quote(body).encode() + b"=",
                    b"writeKey=k1&data=" + quote(body).encode(),
                    b"a=1&b=2",
                    b"data=%ff%fe",
                    b"%ff=",
                ]
            )
        )
        body = form
    headers, wire = draw(encoded(body))
    if ctype is not None:
        headers.append((b"content-type", ctype))
    auth = draw(AUTHS)
    if auth is not None:
        headers.append((b"authorization", auth))
    length = draw(
        st.sampled_from(["right", "none", "less", "more", "nan", "negative", "huge", "space"])
    )
    lengths = {
        "right": str(len(wire)).encode(),
        "less": str(max(0, len(wire) - 3)).encode(),
        "more": str(len(wire) + 100).encode(),
        "nan": b"abc",
        "negative": b"-1",
        "huge": b"9" * 5000,
        "space": b" " + str(len(wire)).encode() + b" ",
    }
    if length in lengths:
        headers.append((b"content-length", lengths[length]))
    if draw(st.booleans()):
        headers.append((b"user-agent", draw(st.text(max_size=20)).encode("utf-8", "replace")))
    if draw(st.booleans()):
        headers.append((b"origin", draw(st.sampled_from([b"https://ok.example", b"https://x"]))))
    n = draw(st.integers(1, 3))
    step = max(1, len(wire) // n)
    chunks = [wire[i : i + step] for i in range(0, len(wire), step)] or [b""]
    return Req(path=path, query=draw(QUERIES), headers=headers, chunks=chunks)


def _encoding(req: Req) -> list[bytes]:
    return [v for k, v in req.headers if k == b"content-encoding"]


def _inflated(req: Req) -> bytes | None:
    """The body after Content-Encoding, by the test's own reading; None when not decodable."""
    wire = b"".join(req.chunks)
    enc = _encoding(req)
    if not enc or enc[-1].strip().lower() in (b"", b"identity"):
        return wire
    e = enc[-1].strip().lower()
    try:
        if e in (b"gzip", b"x-gzip"):
            return gzip.decompress(wire)
        if e == b"deflate":
            try:
                return zlib.decompress(wire)
            except zlib.error:
                return zlib.decompress(wire, -zlib.MAX_WBITS)
    except (OSError, EOFError, zlib.error):
        return None
    return None


VALID: Final = Req(
    path="/v1/track",
    headers=[(b"content-type", b"application/json"), (b"authorization", basic(b"k1:"))],
    chunks=[json.dumps(TRACK).encode()],
)


GZIP: Final = [(b"content-encoding", b"gzip")]
DEFLATE: Final = [(b"content-encoding", b"deflate")]


async def alive(app: ASGI) -> None:
    reply = await call(app, VALID)
    assert reply is not None
    assert reply.status in (200, 503), reply


@settings(
    # EVENTKIT_FUZZ_EXAMPLES=5000 for a longer, randomised hunt; the default run is deterministic.
    max_examples=FUZZ_EXAMPLES or 250,
    deadline=None,
    derandomize=not FUZZ_EXAMPLES,
    database=None,
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
        HealthCheck.large_base_example,
    ],
)
@given(req=requests(), front=st.sampled_from(["litestar", "fastpath"]), keyed=st.booleans())
# Regressions: a second gzip member, or bytes after the compressed stream, were ignored (200).
@example(
    req=Req(path="/v1/batch", headers=GZIP, chunks=[gzip.compress(b"{}") + gzip.compress(b"[]")]),
    front="fastpath",
    keyed=False,
)
@example(
    req=Req(path="/collect", headers=GZIP, chunks=[gzip.compress(b"{}") + b"garbage"]),
    front="litestar",
    keyed=False,
)
@example(
    req=Req(path="/collect", headers=DEFLATE, chunks=[zlib.compress(b"{}") + b"[]"]),
    front="fastpath",
    keyed=False,
)
async def test_any_request_gets_a_documented_answer(
    fronts: Fronts, req: Req, front: str, keyed: bool
) -> None:
    app, collector = fronts[f"{'keyed' if keyed else 'open'}-{front}"]
    reply = await call(app, req)
    assert reply is not None
    check_reply(reply)
    if reply.status == 200:
        ctype = next((v for k, v in req.headers if k == b"content-type"), b"").lower()
        assert not ctype or ctype.startswith(JSON_TYPES), f"200 for Content-Type {ctype!r}"
        data = _inflated(req)
        assert data is not None, f"200 for a body that does not decompress: {req}"
        form = b"x-www-form-urlencoded" in ctype
        if not form or data.lstrip()[:1] in (b"{", b"["):
            assert is_contract_json(data), f"200 for a body that is not JSON: {req}"
            if req.path in SINGLE_PATHS:
                assert len(data) <= collector.limits.max_event_bytes
        if keyed:
            wire = b"".join(req.chunks)
            sent = (
                any(k == b"authorization" for k, _ in req.headers)
                or b"writeKey" in req.query
                or b"writeKey" in (data or wire)
            )
            assert sent, f"200 without a write key: {req}"
    await alive(app)


async def test_client_disconnect_mid_body(fronts: Fronts) -> None:
    for name, (app, collector) in fronts.items():
        before = collector.pipeline.accepted_requests
        req = Req(
            path="/v1/batch",
            headers=[(b"authorization", basic(b"k1:"))],
            chunks=[b'{"batch": [{"type": "track", '],
            disconnect=True,
        )
        reply = await call(app, req)
        # Nobody is listening: no answer is fine, any answer must be a client error, not a 500.
        if reply is not None:
            assert 400 <= reply.status < 500, (name, reply)
            check_reply(reply)
        assert collector.pipeline.accepted_requests == before, name
        await alive(app)


async def test_expect_100_continue(fronts: Fronts) -> None:
    for app, _ in fronts.values():
        req = Req(
            path="/v1/track",
            headers=[
                (b"expect", b"100-continue"),
                (b"authorization", basic(b"k1:")),
                (b"content-type", b"application/json"),
            ],
            chunks=[json.dumps(TRACK).encode()],
        )
        reply = await call(app, req)
        assert reply is not None
        assert reply.status == 200
        check_reply(reply)


@pytest.mark.parametrize("method", ["GET", "HEAD", "PUT", "DELETE", "PATCH"])
async def test_other_methods_on_ingest_paths_are_405_json(fronts: Fronts, method: str) -> None:
    for app, _ in fronts.values():
        for path in ["/v1/track", "/v1/t", "/v1/batch", "/collect", "/collect/ok"]:
            reply = await call(app, Req(method=method, path=path))
            assert reply is not None
            assert reply.status == 405, (method, path, reply)
            assert b"allow" in reply.headers
            if method != "HEAD":
                body = check_reply(reply)
                assert body["code"] == "method_not_allowed"


async def test_preflight_from_an_origin_not_allowed(fronts: Fronts) -> None:
    for app, _ in fronts.values():
        headers = [
            (b"access-control-request-method", b"POST"),
            (b"access-control-request-headers", b"content-type"),
        ]
        ok = await call(
            app,
            Req(
                method="OPTIONS",
                path="/v1/batch",
                headers=[(b"origin", b"https://ok.example"), *headers],
            ),
        )
        assert ok is not None
        assert ok.status in (200, 204)
        assert ok.headers[b"access-control-allow-origin"] == b"https://ok.example"
        bad = await call(
            app,
            Req(method="OPTIONS", path="/v1/batch", headers=[(b"origin", b"https://x"), *headers]),
        )
        assert bad is not None
        assert b"access-control-allow-origin" not in bad.headers
        assert bad.status < 500
        if bad.status >= 400:
            check_reply(bad)
        # a POST from that origin is served, without the CORS grant
        reply = await call(app, Req(path="/v1/track", headers=[(b"origin", b"https://x")]))
        assert reply is not None
        assert b"access-control-allow-origin" not in reply.headers


# --- regressions found by the property test (plain examples) -----------------------------------


async def test_non_utf8_query_on_a_framework_path_is_a_json_404(fronts: Fronts) -> None:
    for app, _ in fronts.values():
        reply = await call(app, Req(path="/nope", query=b"\xff\xfe=1"))
        assert reply is not None
        assert reply.status == 404, reply
        assert check_reply(reply)["code"] == "not_found"


@pytest.mark.parametrize(
    ("ctype", "data", "status"),
    [
        # an invalid UTF-8 escape became U+FFFD and the body was accepted
        (b"application/x-www-form-urlencoded", b"data=%7B%22a%22%3A%22%FF%22%7D", 400),
        # media types are case-insensitive: this was read as JSON and refused
        (b"Application/X-WWW-Form-Urlencoded", b"data=" + quote(json.dumps(TRACK)).encode(), 200),
    ],
)
async def test_form_bodies(fronts: Fronts, ctype: bytes, data: bytes, status: int) -> None:
    for name, (app, _) in fronts.items():
        headers = [(b"content-type", ctype), (b"authorization", basic(b"k1:"))]
        reply = await call(app, Req(path="/v1/track", headers=headers, chunks=[data]))
        assert reply is not None
        assert reply.status == status, (name, reply)
        check_reply(reply)


def test_a_stored_multi_member_gzip_body_reads_back_whole() -> None:
    from datetime import UTC, datetime

    from eventkit_collector.edge import Limits
    from eventkit_collector.envelope import Envelope, reparse

    one, two = b'{"batch": [{"type": "track"},', b' {"type": "page"}]}'
    env = Envelope(
        source="batch",
        stream=None,
        received_at=datetime.now(UTC),
        body=gzip.compress(one) + gzip.compress(two),
        gzip=True,
    )
    assert env.json() == one + two
    assert len(reparse(env, Limits()).items) == 2
