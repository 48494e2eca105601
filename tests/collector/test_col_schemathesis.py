"""schemathesis against the collector's OpenAPI document (``/schema/openapi.json``).

A real collector process (write keys off, so positive cases reach the ingest path); every
operation gets positive and negative cases, a bounded number each. Whatever is generated, the
answer is never a 5xx (but 503 with Retry-After), and every error is the JSON body
``{"code", "message"}``.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, Final

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis.generation.modes import GenerationMode

from tests.collector.hostile_support import start_server

#: Per operation and mode: 19 operations x 2 modes, a few tens of seconds in all.
MAX_EXAMPLES: Final = 8


@pytest.fixture(scope="module")
def collector_schema(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    work = tmp_path_factory.mktemp("schemathesis")
    server = start_server(work, EVENTKIT_WRITE_KEYS="")
    try:
        loaded = schemathesis.openapi.from_url(
            f"http://127.0.0.1:{server.port}/schema/openapi.json"
        )
        yield loaded
    finally:
        server.stop()


def check(response: Any) -> None:
    headers = {k.lower(): ", ".join(v) for k, v in response.headers.items()}
    status = response.status_code
    assert status < 500 or (status == 503 and "retry-after" in headers), (
        status,
        response.text[:300],
    )
    if status >= 400:
        assert headers.get("content-type", "").startswith("application/json"), status
        body = response.json()
        # eventkit's {"code", "message"}; PostHog's and Amplitude's endpoints answer in their
        # API's own error shape, which keeps both fields (see eventkit_collector.vendors)
        assert {"code", "message"} <= set(body), body
        assert body["message"], body


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
def test_no_server_errors_and_json_errors(collector_schema: Any, mode: GenerationMode) -> None:
    # (schemathesis' own pytest loader does not run on this pytest; its strategies do)
    operations = [result.ok() for result in collector_schema.get_all_operations()]
    assert len(operations) >= 10, [op.label for op in operations]
    seen: dict[str, int] = {}
    for operation in operations:
        label = operation.label

        @given(case=operation.as_strategy(generation_mode=mode))
        @settings(
            max_examples=MAX_EXAMPLES,
            deadline=None,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        def run(case: Any) -> None:
            check(case.call(timeout=10))
            seen[case.operation.label] = seen.get(case.operation.label, 0) + 1

        try:
            run()
        except Unsatisfiable:
            # nothing can be made wrong in a request without body or parameters (GET /health,
            # posthog-js's POST /flags start-up call)
            assert mode is GenerationMode.NEGATIVE, label
            assert not len(operation.body), f"no negative case for {label}"
            continue
        assert seen.get(label), f"no case ran for {label}"
    posts = {op.label for op in operations if op.label.startswith("POST") and len(op.body)}
    assert posts <= set(seen), posts - set(seen)
