"""Hostile input against a real collector process: the raw-socket client, the server and the table.

Shared by ``tests/collector/test_col_hostile.py`` (asserts the answers) and
``benchmarks/bench_hostile.py`` (measures their latency). Every :class:`Case` is raw bytes sent
on a new connection, with the status, the JSON error ``code`` and what must be stored:
``nothing``, ``accepted`` (an event in ``events/``) or ``dead_letter`` (in ``dead-letters/``).
Cases that can carry a marker carry ``hostile-<name>`` (as the messageId, or in the payload), so
the storage check finds each case's rows, and none of a refused case's.
"""

from __future__ import annotations

import base64
import contextlib
import gzip
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final, Literal

import pyarrow.parquet as pq

KEY: Final = "hostile-key"
Stored = Literal["nothing", "accepted", "dead_letter"]

#: The test collectors' connection timeouts: short, so the timeout cases stay under a second.
HEADER_TIMEOUT: Final = 0.5
BODY_TIMEOUT: Final = 0.5


# --- the raw client ----------------------------------------------------------------------


@dataclass
class Reply:
    status: int | None
    headers: dict[str, str]
    body: bytes
    seconds: float

    def json(self) -> object:
        return json.loads(self.body)


def _parse(raw: bytes) -> tuple[int | None, dict[str, str], bytes]:
    if raw.startswith(b"HTTP/1.1 100 "):  # the interim answer to Expect: 100-continue
        raw = raw.partition(b"\r\n\r\n")[2]
    head, sep, rest = raw.partition(b"\r\n\r\n")
    if not sep:
        return None, {}, raw
    lines = head.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ", 2)
    status = int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else None
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    length = headers.get("content-length")
    body = rest[: int(length)] if length and length.isdigit() else rest
    return status, headers, body


def _complete(raw: bytes) -> bool:
    status, headers, body = _parse(raw)
    if status is None:
        return False
    length = headers.get("content-length")
    return length is not None and length.isdigit() and len(body) >= int(length)


def exchange(
    port: int,
    data: bytes | list[bytes],
    *,
    timeout: float = 10.0,
    pause: float = 0.0,
    host: str = "127.0.0.1",
) -> Reply:
    """Send ``data`` (pieces ``pause`` seconds apart) on a new connection; read one response.

    The sender runs in its own thread so the response is read even when the server answers
    before the whole request is sent (and then stops reading it).
    """
    pieces = [data] if isinstance(data, bytes) else data
    start = time.perf_counter()
    sock = socket.create_connection((host, port), timeout=timeout)

    def send() -> None:
        with contextlib.suppress(OSError):
            for i, piece in enumerate(pieces):
                if i and pause:
                    time.sleep(pause)  # the trickle itself (not a wait for a condition)
                sock.sendall(piece)

    sender = threading.Thread(target=send, daemon=True)
    sender.start()
    raw = b""
    deadline = start + timeout
    try:
        while time.perf_counter() < deadline and not _complete(raw):
            sock.settimeout(max(0.01, deadline - time.perf_counter()))
            try:
                chunk = sock.recv(65536)
            except TimeoutError:
                break
            except OSError:  # reset after the answer: keep what was read
                break
            if not chunk:
                break
            raw += chunk
    finally:
        seconds = time.perf_counter() - start
        sock.close()
        sender.join(timeout=1)
    status, headers, body = _parse(raw)
    return Reply(status, headers, body, seconds)


# --- building requests ---------------------------------------------------------------------

_AUTO: Final = object()


def basic(key: str) -> str:
    return "Basic " + base64.b64encode(f"{key}:".encode()).decode()


def request(
    path: str = "/v1/track",
    body: bytes = b"",
    *,
    method: str = "POST",
    ctype: str | None = "application/json",
    key: str | None = KEY,
    length: object = _AUTO,
    headers: list[tuple[str, str]] | None = None,
    raw_headers: bytes = b"",
) -> bytes:
    """One HTTP/1.1 request as bytes (``Connection: close``; the write key as Basic auth)."""
    lines = [f"{method} {path} HTTP/1.1", "Host: 127.0.0.1", "Connection: close"]
    if ctype is not None:
        lines.append(f"Content-Type: {ctype}")
    if key is not None:
        lines.append(f"Authorization: {basic(key)}")
    if length is _AUTO:
        if method == "POST":
            lines.append(f"Content-Length: {len(body)}")
    elif length is not None:
        lines.append(f"Content-Length: {length}")
    lines += [f"{k}: {v}" for k, v in headers or []]
    head = "\r\n".join(lines).encode("latin-1") + b"\r\n" + raw_headers + b"\r\n"
    return head + body


def marker(name: str) -> str:
    return f"hostile-{name}"


def event(name: str, **extra: object) -> dict[str, object]:
    return {
        "type": "track",
        "event": "Hostile",
        "userId": "u-1",
        "messageId": marker(name),
        **extra,
    }


def js(value: object) -> bytes:
    return json.dumps(value).encode()


def chunked(body: bytes, size: int = 7) -> bytes:
    out = b"".join(
        b"%x\r\n" % len(body[i : i + size]) + body[i : i + size] + b"\r\n"
        for i in range(0, len(body), size)
    )
    return out + b"0\r\n\r\n"


def gz(data: bytes) -> bytes:
    return gzip.compress(data, mtime=0)


def deflated(data: bytes) -> bytes:
    return zlib.compress(data, 9)


# --- the table -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Case:
    name: str
    #: The request bytes, or its pieces (sent ``pause`` seconds apart).
    data: bytes | list[bytes]
    status: int
    #: The JSON error code (``None`` for 200 ``{"success": true}``).
    code: str | None
    stored: Stored
    pause: float = 0.0
    #: What the case is about, for the report.
    note: str = ""
    #: The marker (``hostile-<name>``) is in the request, so storage can be checked for it.
    marked: bool = True
    checks: tuple[str, ...] = field(default_factory=tuple)


def _c(
    name: str,
    data: bytes | list[bytes],
    status: int,
    code: str | None,
    stored: Stored = "nothing",
    **kw: object,
) -> Case:
    return Case(name, data, status, code, stored, **kw)  # type: ignore[arg-type]


def _bomb(n: int) -> bytes:
    return b'{"batch": [' + b'{"type": "track", "userId": "u", "event": "x"},' * n + b"{}]}"


def cases() -> list[Case]:
    """The hostile table (about 85 cases). Built on call: some bodies are megabytes."""
    ok = js(event("ok"))
    t: list[Case] = []
    add = t.append

    # -- requests the HTTP layer refuses (before any ASGI code) ----------------------------
    bad = "invalid_request"
    add(_c("cl_not_a_number", request(body=js(event("cl_not_a_number")), length="abc"), 400, bad))
    add(_c("cl_negative", request(body=js(event("cl_negative")), length="-1"), 400, bad))
    add(
        _c(
            "cl_twice_different",
            request(
                body=js(event("cl_twice_different")),
                headers=[("Content-Length", "3")],
            ),
            400,
            bad,
        )
    )
    add(_c("cl_and_chunked", request(body=chunked(ok), headers=[("Transfer-Encoding", "chunked")]), 400, bad, marked=False))  # fmt: skip
    add(_c("non_ascii_request_line", "POST /v1/tráck HTTP/1.1\r\nHost: x\r\n\r\n".encode(), 400, bad, marked=False))  # fmt: skip
    add(_c("garbage_request_line", b"HELLO THERE\r\n\r\n", 400, bad, marked=False))
    add(_c("unknown_method", request(method="BREW", body=ok), 400, bad, marked=False))
    add(_c("lowercase_method", request(method="post", body=ok), 400, bad, marked=False))
    add(_c("bad_http_version", b"POST /v1/track HTTP/7.1\r\nHost: x\r\n\r\n", 400, bad, marked=False))  # fmt: skip
    add(_c("bad_chunk_size", request(body=b"zz\r\n{}\r\n0\r\n\r\n", length=None, headers=[("Transfer-Encoding", "chunked")]), 400, bad, marked=False))  # fmt: skip
    add(_c("chunk_longer_than_said", request(body=b"2\r\n{}xx\r\n0\r\n\r\n", length=None, headers=[("Transfer-Encoding", "chunked")]), 400, bad, marked=False))  # fmt: skip
    add(_c("nul_in_header_value", request(body=ok, raw_headers=b"X-Bad: a\x00b\r\n"), 400, bad, marked=False))  # fmt: skip
    add(_c("header_without_colon", request(body=ok, raw_headers=b"NoColonHere\r\n"), 400, bad, marked=False))  # fmt: skip
    add(_c("space_before_colon", request(body=ok, raw_headers=b"X-Bad : 1\r\n"), 400, bad, marked=False))  # fmt: skip

    # -- header limits -------------------------------------------------------------------------
    big = "headers_too_large"
    add(_c("user_agent_64kb", request(body=js(event("user_agent_64kb")), headers=[("User-Agent", "a" * 65536)]), 431, big))  # fmt: skip
    add(_c("header_1mb", request(body=ok, headers=[("X-Big", "b" * (1 << 20))]), 431, big, marked=False))  # fmt: skip
    add(_c("headers_1000", request(body=js(event("headers_1000")), headers=[(f"X-H{i}", "1") for i in range(1000)]), 431, big))  # fmt: skip
    add(_c("cookies_20kb", request(body=js(event("cookies_20kb")), headers=[("Cookie", "c=" + "x" * 20000)]), 431, big))  # fmt: skip
    add(_c("url_20kb", request(path="/v1/track?x=" + "u" * 20000, body=js(event("url_20kb"))), 414, "uri_too_long"))  # fmt: skip
    add(
        _c(
            "user_agent_8kb_clipped",
            request(body=js(event("user_agent_8kb_clipped")), headers=[("User-Agent", "m" * 8000)]),
            200,
            None,
            "accepted",
            checks=("user_agent_clipped",),
        )
    )
    add(_c("request_id_8kb", request(body=js(event("request_id_8kb")), headers=[("X-Request-Id", "r" * 8000)]), 200, None, "accepted"))  # fmt: skip
    add(_c("forwarded_for_8kb", request(body=js(event("forwarded_for_8kb")), headers=[("X-Forwarded-For", "1.2.3.4, " * 900)]), 200, None, "accepted"))  # fmt: skip

    # -- timeouts and lying Content-Length -------------------------------------------------
    add(
        _c(
            "headers_never_finish",
            [b"POST /v1/track HTTP/1.1\r\n", b"Host: x\r\n", b"X-Slow: 1\r\n"],
            408,
            "request_timeout",
            pause=0.05,
            marked=False,
        )
    )
    add(_c("cl_longer_than_body", request(body=js(event("cl_longer_than_body")), length=5000), 408, "request_timeout"))  # fmt: skip
    short = js(event("cl_shorter_than_body"))
    add(_c("cl_shorter_than_body", request(body=short, length=len(short) // 2), 400, "invalid_json"))  # fmt: skip
    add(_c("connect_say_nothing", b"", 0, None, marked=False, note="closed after the header timeout, no answer"))  # fmt: skip

    # -- bodies ----------------------------------------------------------------------------------
    inv = "invalid_json"
    add(_c("empty_body", request(body=b""), 400, inv, marked=False))
    add(_c("whitespace_body", request(body=b" \r\n\t "), 400, inv, marked=False))
    add(_c("not_json", request(body=b"hostile-not_json, not json"), 400, inv))
    add(_c("truncated_json", request(body=js(event("truncated_json"))[:-3]), 400, inv))
    add(_c("trailing_garbage", request(body=js(event("trailing_garbage")) + b" }{"), 400, inv))
    add(_c("invalid_utf8", request(body=js(event("invalid_utf8"))[:-1] + b', "b": "\xff\xfe"}'), 400, inv))  # fmt: skip
    add(_c("overlong_utf8", request(body=js(event("overlong_utf8"))[:-1] + b', "b": "\xc0\xaf"}'), 400, inv))  # fmt: skip
    add(_c("lone_surrogate_escape", request(body=js(event("lone_surrogate_escape"))[:-1] + b', "b": "\\ud800"}'), 400, inv))  # fmt: skip
    add(_c("lone_surrogate_bytes", request(body=js(event("lone_surrogate_bytes"))[:-1] + b', "b": "\xed\xa0\x80"}'), 400, inv))  # fmt: skip
    add(_c("nan", request(body=js(event("nan"))[:-1] + b', "v": NaN}'), 400, inv))
    add(_c("infinity", request(body=js(event("infinity"))[:-1] + b', "v": -Infinity}'), 400, inv))
    add(_c("number_1e999", request(body=js(event("number_1e999"))[:-1] + b', "v": 1e999}'), 400, inv))  # fmt: skip
    add(_c("integer_2_pow_70", request(body=js(event("integer_2_pow_70", v=2**70))), 400, inv))
    add(_c("integer_minus_2_pow_64", request(body=js(event("integer_minus_2_pow_64", v=-(2**64)))), 400, inv))  # fmt: skip
    add(_c("integer_400_digits", request(path="/collect/hostile", body=b'{"m": "hostile-integer_400_digits", "v": ' + b"9" * 400 + b"}"), 400, inv))  # fmt: skip
    add(_c("bom", request(body=b"\xef\xbb\xbf" + js(event("bom"))), 400, inv))
    deep = b"[" * 10_000 + b'"hostile-depth_10000_arrays"' + b"]" * 10_000
    add(_c("depth_10000_arrays", request(path="/collect/hostile", body=deep), 400, inv))
    # (in an array: a single value over 32 KB is refused for its size first)
    deep_obj = (
        b'[{"a":' + b'{"a":' * 9_999 + b'"hostile-depth_10000_objects"' + b"}" * 10_000 + b"]"
    )
    add(_c("depth_10000_objects", request(path="/collect/hostile", body=deep_obj), 400, inv))
    add(_c("depth_100_accepted", request(path="/collect/hostile", body=js(event("depth_100_accepted", p=json.loads("[" * 100 + "]" * 100)))), 200, None, "accepted"))  # fmt: skip
    add(_c("bare_string_dead_letter", request(path="/collect/hostile", body=b'"hostile-bare_string_dead_letter"'), 200, None, "dead_letter"))  # fmt: skip
    add(_c("track_without_user", request(body=js({"type": "track", "event": "x", "messageId": marker("track_without_user")})), 200, None, "dead_letter"))  # fmt: skip
    add(_c("batch_without_batch", request(path="/v1/batch", body=js({"m": marker("batch_without_batch")})), 200, None, "dead_letter"))  # fmt: skip
    add(_c("batch_not_array", request(path="/v1/batch", body=js({"batch": {"m": marker("batch_not_array")}})), 200, None, "dead_letter"))  # fmt: skip
    add(_c("batch_item_over_32kb", request(path="/v1/batch", body=js({"batch": [event("batch_item_over_32kb", pad="p" * 40_000)]})), 200, None, "dead_letter"))  # fmt: skip
    add(_c("json_null", request(path="/collect/hostile", body=b"null"), 200, None, "dead_letter", marked=False))  # fmt: skip

    # -- sizes and counts ------------------------------------------------------------------------
    tl = "payload_too_large"
    add(_c("event_over_32kb", request(body=js(event("event_over_32kb", pad="p" * 40_000))), 413, tl))  # fmt: skip
    add(_c("batch_over_500kb", request(path="/v1/batch", body=js({"batch": [event("batch_over_500kb", pad="p" * 20_000) for _ in range(30)]})), 413, tl))  # fmt: skip
    add(_c("batch_2501_events", request(path="/v1/batch", body=js({"batch": [event("batch_2501_events")] + [{}] * 2500})), 413, tl))  # fmt: skip
    add(_c("declared_1gb", request(body=b"", length=1 << 30), 413, tl, marked=False))
    add(_c("chunked_over_limit", request(body=chunked(b"[" + b'"hostile-chunked_over_limit",' * 40_000 + b"1]", 65536), length=None, headers=[("Transfer-Encoding", "chunked")], path="/collect/hostile"), 413, tl))  # fmt: skip
    add(_c("gzip_bomb_10mb", request(path="/v1/batch", body=gz(b" " * (10 << 20)), headers=[("Content-Encoding", "gzip")]), 413, tl, marked=False))  # fmt: skip
    add(_c("deflate_bomb_10mb", request(path="/v1/batch", body=deflated(b" " * (10 << 20)), headers=[("Content-Encoding", "deflate")]), 413, tl, marked=False))  # fmt: skip
    add(_c("gzip_2501_events", request(path="/v1/batch", body=gz(_bomb(2500)), headers=[("Content-Encoding", "gzip")]), 413, tl, marked=False))  # fmt: skip
    add(_c("gzip_bomb_many_members", request(path="/v1/batch", body=gz(b" " * 300_000) * 4, headers=[("Content-Encoding", "gzip")]), 413, tl, marked=False))  # fmt: skip

    # -- encodings ---------------------------------------------------------------------------
    enc = "invalid_encoding"
    add(_c("gzip_ok", request(body=gz(js(event("gzip_ok"))), headers=[("Content-Encoding", "gzip")]), 200, None, "accepted"))  # fmt: skip
    add(_c("deflate_ok", request(body=deflated(js(event("deflate_ok"))), headers=[("Content-Encoding", "deflate")]), 200, None, "accepted"))  # fmt: skip
    add(_c("gzip_truncated", request(body=gz(js(event("gzip_truncated")))[:-10], headers=[("Content-Encoding", "gzip")]), 400, enc))  # fmt: skip
    add(_c("gzip_garbage", request(body=b"\x1f\x8bnot really gzip at all", headers=[("Content-Encoding", "gzip")]), 400, enc, marked=False))  # fmt: skip
    add(_c("gzip_trailing_bytes", request(body=gz(js(event("gzip_trailing_bytes"))) + b"tail", headers=[("Content-Encoding", "gzip")]), 400, enc))  # fmt: skip
    add(_c("gzip_not_compressed", request(body=js(event("gzip_not_compressed")), headers=[("Content-Encoding", "gzip")]), 400, enc))  # fmt: skip
    add(_c("encoding_br", request(body=js(event("encoding_br")), headers=[("Content-Encoding", "br")]), 400, enc))  # fmt: skip

    # -- content types ------------------------------------------------------------------------
    um = "unsupported_media_type"
    add(_c("ctype_xml", request(body=js(event("ctype_xml")), ctype="application/xml"), 415, um))
    add(_c("ctype_multipart", request(body=js(event("ctype_multipart")), ctype="multipart/form-data; boundary=x"), 415, um))  # fmt: skip
    add(_c("ctype_html", request(body=js(event("ctype_html")), ctype="text/html"), 415, um))
    add(_c("ctype_binary_garbage", request(body=js(event("ctype_binary_garbage")), ctype="\xff\xfe/\x80"), 415, um))  # fmt: skip
    add(_c("ctype_missing", request(body=js(event("ctype_missing")), ctype=None), 200, None, "accepted"))  # fmt: skip
    add(_c("ctype_text_plain", request(body=js(event("ctype_text_plain")), ctype="text/plain;charset=UTF-8"), 200, None, "accepted"))  # fmt: skip
    add(_c("ctype_vendor_json", request(body=js(event("ctype_vendor_json")), ctype="application/vnd.eventkit+json"), 200, None, "accepted"))  # fmt: skip
    form = b"data=" + js(event("ctype_form")).replace(b" ", b"%20").replace(b'"', b"%22")
    add(_c("ctype_form", request(body=form, ctype="application/x-www-form-urlencoded"), 200, None, "accepted"))  # fmt: skip
    add(_c("chunked_ok", request(body=chunked(js(event("chunked_ok"))), length=None, headers=[("Transfer-Encoding", "chunked")]), 200, None, "accepted"))  # fmt: skip
    add(_c("expect_100_continue", request(body=js(event("expect_100_continue")), headers=[("Expect", "100-continue")]), 200, None, "accepted"))  # fmt: skip

    # -- streams and paths --------------------------------------------------------------------
    ist = "invalid_stream"
    body = js(event("stream"))
    add(_c("stream_dotdot", request(path="/collect/..", body=body), 400, ist, marked=False))
    add(_c("stream_encoded_dotdot", request(path="/collect/%2e%2e", body=body), 400, ist, marked=False))  # fmt: skip
    add(_c("stream_traversal", request(path="/collect/..%2F..%2Fetc%2Fpasswd", body=body), 404, "not_found", marked=False))  # fmt: skip
    add(_c("stream_traversal_backslash", request(path="/collect/..%5C..%5Cx", body=body), 400, ist, marked=False))  # fmt: skip
    add(_c("stream_65_chars", request(path="/collect/" + "s" * 65, body=body), 400, ist, marked=False))  # fmt: skip
    add(_c("stream_space", request(path="/collect/a%20b", body=body), 400, ist, marked=False))
    add(_c("stream_nul", request(path="/collect/a%00b", body=body), 400, ist, marked=False))
    add(_c("stream_unicode", request(path="/collect/%C3%A9v%C3%A9nements", body=body), 400, ist, marked=False))  # fmt: skip
    add(_c("stream_ok", request(path="/collect/hostile_ok-1", body=js(event("stream_ok"))), 200, None, "accepted"))  # fmt: skip
    add(_c("get_on_ingest", request(method="GET", body=b""), 405, "method_not_allowed", marked=False))  # fmt: skip
    add(_c("unknown_path", request(path="/v2/nothing", body=ok), 404, "not_found", marked=False))

    # -- write keys (the collector under test has them on) ------------------------------------
    ua = "unauthorized"
    add(_c("key_missing", request(body=js(event("key_missing")), key=None), 401, ua))
    add(_c("key_wrong_header", request(body=js(event("key_wrong_header")), key="nope"), 401, ua))
    add(_c("key_wrong_query", request(path="/v1/track?writeKey=nope", body=js(event("key_wrong_query")), key=None), 401, ua))  # fmt: skip
    add(_c("key_wrong_body", request(body=js(event("key_wrong_body", writeKey="nope")), key=None), 401, ua))  # fmt: skip
    add(_c("key_bearer", request(body=js(event("key_bearer")), key=None, headers=[("Authorization", "Bearer " + KEY)]), 401, ua))  # fmt: skip
    add(_c("key_basic_garbage", request(body=js(event("key_basic_garbage")), key=None, headers=[("Authorization", "Basic !!!")]), 401, ua))  # fmt: skip
    add(_c("key_right_header", request(body=js(event("key_right_header"))), 200, None, "accepted"))  # fmt: skip
    add(_c("key_right_query", request(path=f"/v1/track?writeKey={KEY}", body=js(event("key_right_query")), key=None), 200, None, "accepted"))  # fmt: skip
    add(_c("key_right_body", request(body=js(event("key_right_body", writeKey=KEY)), key=None), 200, None, "accepted"))  # fmt: skip
    return t


# --- the collector process ---------------------------------------------------------------------


def free_port(run: int = 1) -> int:
    """A free port, and the ``run - 1`` after it free too (worker n's metrics: port + n)."""
    while True:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port: int = s.getsockname()[1]
        if port + run > 65535:
            continue
        try:
            for n in range(1, run):
                with socket.socket() as s:
                    s.bind(("127.0.0.1", port + n))
        except OSError:
            continue
        return port


@dataclass
class Server:
    proc: subprocess.Popen[bytes]
    port: int
    metrics_port: int
    data_dir: Path
    log_path: Path

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 60.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        return self.proc.returncode

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def metrics(self) -> str:
        reply = exchange(
            self.metrics_port, b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        )
        return reply.body.decode()


def wait_until(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def start_server(work: Path, *, workers: int = 1, **env: str) -> Server:
    """``eventkit-collector serve`` in ``work`` (its cwd) with data in ``work/data``."""
    data = work / "data"
    port, metrics_port = free_port(), free_port(workers)
    environ = {k: v for k, v in os.environ.items() if not k.startswith("EVENTKIT_")}
    environ.update(
        {
            "PYTHONUNBUFFERED": "1",
            "EVENTKIT_LOG_LEVEL": "warning",
            "EVENTKIT_WRITE_KEYS": KEY,
            "EVENTKIT_FLUSH_MAX_AGE": "0.3",
            "EVENTKIT_HEADER_TIMEOUT": str(HEADER_TIMEOUT),
            "EVENTKIT_BODY_TIMEOUT": str(BODY_TIMEOUT),
            **env,
        }
    )
    args = [
        sys.executable,
        "-m",
        "eventkit_collector.cli",
        "serve",
        "--port",
        str(port),
        "--data-dir",
        str(data),
        "--metrics-port",
        str(metrics_port),
        "--workers",
        str(workers),
    ]
    log_path = work / "collector.log"
    with log_path.open("wb") as log_file:
        proc = subprocess.Popen(
            args, env=environ, cwd=work, stdout=log_file, stderr=subprocess.STDOUT
        )
    server = Server(proc, port, metrics_port, data, log_path)

    def ready() -> bool:
        if proc.poll() is not None:
            raise AssertionError(f"collector exited with {proc.returncode}:\n{server.log()}")
        for n in range(workers):
            with contextlib.suppress(OSError):
                reply = exchange(
                    metrics_port + n,
                    b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
                    timeout=1,
                )
                if reply.status != 200:
                    return False
                continue
            return False
        with contextlib.suppress(OSError):
            get = b"GET /ready HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
            return exchange(port, get, timeout=1).status == 200
        return False

    wait_until(ready, 90, "the collector to become ready")
    return server


@contextlib.contextmanager
def running(work: Path, **kw: str) -> Iterator[Server]:
    server = start_server(work, **kw)  # type: ignore[arg-type]
    try:
        yield server
    finally:
        server.stop()


# --- what was stored -------------------------------------------------------------------------


def stored_text(data_dir: Path) -> dict[str, str]:
    """``events`` / ``dead-letters`` -> every row of every Parquet file there, as text."""
    out: dict[str, str] = {}
    for kind in ("events", "dead-letters"):
        parts: list[str] = []
        base = data_dir / kind
        for f in sorted(base.rglob("*.parquet")) if base.exists() else []:
            with contextlib.suppress(OSError):
                parts.append(repr(pq.read_table(f).to_pylist()))
        out[kind] = "\n".join(parts)
    return out


def stored_rows(data_dir: Path, kind: str = "events") -> list[dict[str, object]]:
    rows: list[dict[str, object]] = []
    base = data_dir / kind
    for f in sorted(base.rglob("*.parquet")) if base.exists() else []:
        rows.extend(pq.read_table(f).to_pylist())
    return rows


def metric_series(text: str) -> set[str]:
    """Every sample line's name and labels (the series), without its value."""
    return {line.rsplit(" ", 1)[0] for line in text.splitlines() if line and line[0] != "#"}


def metric_value(text: str, name: str) -> float | None:
    for line in text.splitlines():
        if line.startswith((name + " ", name + "{")):
            return float(line.rsplit(" ", 1)[1])
    return None
