"""The raw-ASGI front's own error path: a fault of the collector is a JSON 500, logged once.

(Everything a client can send is covered by the fuzz and hostile tables; this is the one answer
no client input should reach, forced here by breaking the request path.)
"""

from __future__ import annotations

import json
from collections.abc import MutableMapping
from pathlib import Path
from typing import Any

import pytest
from eventkit_collector.app import Collector
from eventkit_collector.fastpath import create_asgi

from tests.collector.test_col_app import _settings, patch_loader

__all__ = ["patch_loader"]


async def test_an_unexpected_fault_is_a_json_500(
    tmp_path: Path, patch_loader: None, caplog: pytest.LogCaptureFixture, monkeypatch: Any
) -> None:
    front = create_asgi(_settings(tmp_path))

    async def broken(self: Collector, *args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("broken on purpose")

    monkeypatch.setattr(Collector, "ingest_raw", broken)
    sent: list[MutableMapping[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"{}", "more_body": False}

    async def send(message: MutableMapping[str, Any]) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "method": "POST",
        "path": "/v1/track",
        "headers": [(b"content-type", b"application/json")],
        "query_string": b"",
        "client": ("127.0.0.1", 1),
    }
    await front(scope, receive, send)
    assert sent[0]["status"] == 500
    assert (b"content-type", b"application/json") in sent[0]["headers"]
    body = json.loads(sent[1]["body"])
    assert body["code"] == "internal_error"
    assert [r for r in caplog.records if "unexpected error on POST /v1/track" in r.message]
