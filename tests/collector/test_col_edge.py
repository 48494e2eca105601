"""The HTTP edge: body contract, limits, decompression, form bodies, write keys, client address."""

from __future__ import annotations

import base64
import gzip
import zlib
from collections.abc import AsyncIterator

import msgspec
import pytest
from eventkit_collector.edge import (
    ClientAddress,
    EdgeError,
    Kind,
    Limits,
    WriteKeys,
    basic_user,
    decompress,
    key_id,
    parse_body,
    read_capped,
    unwrap_form,
)

LIMITS = Limits()


@pytest.mark.parametrize(
    ("body", "detail"),
    [
        (b'{"a": NaN}', "malformed"),
        (b'{"a": Infinity}', "malformed"),
        (b'{"a": 1e999}', "range"),
        (b'{"a": -1e999}', "range"),
        (b'{"a": 123456789012345678901234567890}', "64 bits"),
        (b'{"a": -9223372036854775809}', "64 bits"),
        (b'{"a": "\xff\xfe"}', "UTF-8"),
        (b'\xef\xbb\xbf{"a": 1}', "malformed"),
        (b"[" * 100_000 + b"]" * 100_000, "nested"),
        (b'{"a": 1} trailing', "trailing"),
        (b"", "the request body is empty"),
        (b" \r\n", "the request body is empty"),
        (b'{"a": "\\ud800"}', ""),
    ],
)
def test_invalid_json_is_400(body: bytes, detail: str) -> None:
    with pytest.raises(EdgeError) as info:
        parse_body(Kind.COLLECT, body, LIMITS)
    assert info.value.status == 400
    assert info.value.code == "invalid_json"
    assert detail in info.value.message
    assert "send one JSON value" in info.value.message


@pytest.mark.parametrize(
    "body",
    [
        b'{"a": 18446744073709551615}',
        b'{"a": -9223372036854775808}',
        b'{"a": 1.7e308, "b": "12345678901234567890123"}',
        b"42",
        b'"text"',
        b"null",
        b"[1, 2, 3]",
        b'  {"a": [] }  ',
    ],
)
def test_json_that_fits_in_msgspec_is_accepted(body: bytes) -> None:
    parse_body(Kind.COLLECT, body, LIMITS)


def test_single_event_over_32kb_is_413() -> None:
    body = msgspec.json.encode({"userId": "u", "pad": "x" * 33_000})
    with pytest.raises(EdgeError) as info:
        parse_body(Kind.SINGLE, body, LIMITS)
    assert (info.value.status, info.value.code) == (413, "payload_too_large")


def test_collect_object_over_32kb_is_413_but_array_may_be_larger() -> None:
    big = {"pad": "x" * 20_000}
    with pytest.raises(EdgeError):
        parse_body(Kind.COLLECT, msgspec.json.encode({"pad": "x" * 33_000}), LIMITS)
    parsed = parse_body(Kind.COLLECT, msgspec.json.encode([big, big]), LIMITS)
    assert len(parsed.items) == 2


def test_batch_over_500kb_and_over_2500_events_are_413() -> None:
    items = [{"type": "track", "event": "e", "userId": "u", "p": "x" * 300} for _ in range(2000)]
    with pytest.raises(EdgeError) as info:
        parse_body(Kind.BATCH, msgspec.json.encode({"batch": items}), LIMITS)
    assert info.value.status == 413
    many: list[dict[str, int]] = [{} for _ in range(2501)]
    with pytest.raises(EdgeError) as info:
        parse_body(Kind.BATCH, msgspec.json.encode({"batch": many}), LIMITS)
    assert info.value.status == 413
    assert "2,501 events" in info.value.message
    ok = parse_body(Kind.BATCH, msgspec.json.encode({"batch": many[:2500]}), LIMITS)
    assert len(ok.items) == 2500


def test_batch_keeps_items_raw_and_batch_fields() -> None:
    body = (
        b'{"batch":[{"type":"track","event":"A","userId":"u"},{"type":"identify","userId":"v"}],'
        b'"context":{"ip":"1.2.3.4"},"integrations":{"All":true},'
        b'"sentAt":"2026-01-01T00:00:00Z","writeKey":"k1"}'
    )
    parsed = parse_body(Kind.BATCH, body, LIMITS)
    assert [bytes(i) for i in parsed.items] == [
        b'{"type":"track","event":"A","userId":"u"}',
        b'{"type":"identify","userId":"v"}',
    ]
    assert parsed.batch_context is not None
    assert bytes(parsed.batch_context) == b'{"ip":"1.2.3.4"}'
    assert parsed.batch_integrations is not None
    assert parsed.batch_sent_at == "2026-01-01T00:00:00Z"
    assert parsed.write_key == "k1"
    assert parsed.unfit is None


@pytest.mark.parametrize(
    "body", [b"[1,2]", b'{"nobatch": 1}', b'{"batch": 5}', b'{"batch": {"a": 1}}', b"7"]
)
def test_batch_of_the_wrong_shape_is_accepted_whole_as_unfit(body: bytes) -> None:
    parsed = parse_body(Kind.BATCH, body, LIMITS)
    assert parsed.unfit
    assert [bytes(i) for i in parsed.items] == [body]


def test_single_and_collect_items() -> None:
    parsed = parse_body(Kind.SINGLE, b'{"userId":"u","writeKey":"wk"}', LIMITS)
    assert len(parsed.items) == 1
    assert parsed.write_key == "wk"
    assert len(parse_body(Kind.COLLECT, b'[{"a":1}, 2, "x"]', LIMITS).items) == 3
    assert len(parse_body(Kind.COLLECT, b"3", LIMITS).items) == 1


def test_gzip_and_deflate_are_bounded() -> None:
    data = b'{"a": 1}'
    assert decompress(gzip.compress(data), "gzip", 100) == data
    assert decompress(zlib.compress(data), "deflate", 100) == data
    raw_deflate = zlib.compressobj(wbits=-15)
    assert decompress(raw_deflate.compress(data) + raw_deflate.flush(), "deflate", 100) == data
    bomb = gzip.compress(b" " * 10_000_000)
    with pytest.raises(EdgeError) as info:
        decompress(bomb, "gzip", 512_000)
    assert info.value.status == 413
    with pytest.raises(EdgeError) as info:
        decompress(b"not gzip", "gzip", 100)
    assert (info.value.status, info.value.code) == (400, "invalid_encoding")
    with pytest.raises(EdgeError) as info:
        decompress(gzip.compress(data)[:-6], "gzip", 100)
    assert info.value.code == "invalid_encoding"
    with pytest.raises(EdgeError) as info:
        decompress(data, "br", 100)
    assert info.value.code == "invalid_encoding"
    assert decompress(data, "identity", 100) == data


async def _chunks(*parts: bytes) -> AsyncIterator[bytes]:
    for p in parts:
        yield p


async def test_read_capped_refuses_early() -> None:
    assert await read_capped(_chunks(b"ab", b"cd"), None, 10) == b"abcd"
    with pytest.raises(EdgeError) as info:
        await read_capped(_chunks(b"x"), "1000", 10)
    assert info.value.status == 413
    with pytest.raises(EdgeError) as info:
        await read_capped(_chunks(b"x" * 6, b"x" * 6), None, 10)
    assert info.value.status == 413
    with pytest.raises(EdgeError) as info:
        await read_capped(_chunks(b"x"), "ten", 10)
    assert info.value.status == 400


def test_form_bodies() -> None:
    js = b'{"userId":"u","event":"e"}'
    assert unwrap_form(js) == (js, None)
    from urllib.parse import quote

    assert unwrap_form(b"data=" + quote(js).encode()) == (js, None)
    assert unwrap_form(quote(js).encode()) == (js, None)
    assert unwrap_form(b"writeKey=k&data=" + quote(js).encode()) == (js, "k")
    assert unwrap_form(b"payload=" + quote(js).encode()) == (js, None)
    with pytest.raises(EdgeError) as info:
        unwrap_form(b"a=1&b=2")
    assert info.value.code == "invalid_json"


def test_basic_auth_user() -> None:
    header = "Basic " + base64.b64encode(b"secret-key:").decode()
    assert basic_user(header) == "secret-key"
    assert basic_user("Basic " + base64.b64encode(b"only-user").decode()) == "only-user"
    assert basic_user("Bearer x") is None
    assert basic_user("Basic !!!") is None
    assert basic_user(None) is None


def test_write_keys() -> None:
    keys = WriteKeys(["a", "b"])
    assert keys.enabled
    assert keys.check("b") == key_id("b")
    assert keys.check("c") is None
    assert keys.check(None) is None
    assert not WriteKeys([]).enabled
    assert len(key_id("a")) == 12


def test_client_address() -> None:
    none = ClientAddress([])
    assert none.resolve("10.0.0.1", "1.2.3.4") == "10.0.0.1"
    proxies = ClientAddress(["10.0.0.0/8"])
    assert proxies.resolve("10.0.0.1", "1.2.3.4, 10.0.0.2") == "1.2.3.4"
    assert proxies.resolve("8.8.8.8", "1.2.3.4") == "8.8.8.8"
    assert ClientAddress(["*"]).resolve("10.0.0.1", "5.6.7.8, 1.2.3.4") == "5.6.7.8"


@pytest.mark.parametrize(
    "body",
    [
        b'{"a": [1, 2e999]}',
        b'{"a":-1E+999}',
        b'{"a": 100000000000000000000000000e300}',
        b'{"batch": [{"x": 1.5e400}]}',
        b'{"batch": [{"x": 99999999999999999999}]}',
        b'{"sentAt": 1e999, "batch": []}',
        b"[\n  1e999]",
    ],
)
def test_numbers_out_of_range_anywhere_are_400(body: bytes) -> None:
    for kind in Kind:
        with pytest.raises(EdgeError) as info:
            parse_body(kind, body, LIMITS)
        assert info.value.code == "invalid_json", kind


def test_hex_and_digits_in_strings_are_not_numbers() -> None:
    body = (
        b'{"batch": [{"messageId": "5f0c4e123-04e000-9e+000", "n": "12345678901234567890123",'
        b' "x": 1e300, "y": 1.5e-999}]}'
    )
    parsed = parse_body(Kind.BATCH, body, LIMITS)
    assert len(parsed.items) == 1


@pytest.mark.parametrize(
    "body", [b'{"a": 1', b'{"a": 1}}', b"[1,]", b'{"a": "\\x"}', b"nul", b'{"a":\x01}']
)
def test_syntax_errors_are_400_on_every_kind(body: bytes) -> None:
    for kind in Kind:
        with pytest.raises(EdgeError) as info:
            parse_body(kind, body, LIMITS)
        assert info.value.code == "invalid_json", kind
