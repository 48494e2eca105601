"""Segment's and RudderStack's server SDKs (Python and Node), unchanged, against the collector.

Each SDK sends identify / track / page / screen / group / alias (``sdk_scripts``) to the real
collector process; the rows in Parquet carry the mapped fields: message ids as given, user ids,
event and page names, properties and traits, the library context, and a ``timestamp`` corrected
by the batch's ``sentAt``.
"""

from __future__ import annotations

import json
import subprocess
import uuid
from datetime import timedelta
from typing import Any

import pytest

from tests.clients import run_node_script, run_python_client
from tests.compat.conftest import WRITE_KEY, landed
from tests.compat.sdk_scripts import CALLS, NODE_SCRIPTS, PYTHON_SCRIPTS
from tests.e2e.conftest import CollectorProcess

SDKS = [
    pytest.param("python", "segment", id="segment-python-2.4.0"),
    pytest.param("python", "rudderstack", id="rudder-python-2.1.9"),
    pytest.param("node", "segment", id="segment-node-3.1.0"),
    pytest.param("node", "rudderstack", id="rudder-node-3.0.13"),
]
#: The ``context.library.name`` each SDK stamps on its events.
LIBRARY = {
    ("python", "segment"): "analytics-python",
    ("python", "rudderstack"): "analytics-python",
    ("node", "segment"): "@segment/analytics-node",
    ("node", "rudderstack"): "analytics-node",
}


def send(lang: str, sdk: str, host: str, prefix: str) -> list[str]:
    """Run the SDK's script against ``host``; the delivery errors it reported."""
    env = {"HOST": host, "WRITE_KEY": WRITE_KEY, "PREFIX": prefix}
    done: subprocess.CompletedProcess[str]
    if lang == "python":
        done = run_python_client(sdk, PYTHON_SCRIPTS[sdk], env, timeout=90.0)
    else:
        done = run_node_script(NODE_SCRIPTS[sdk], env, timeout=90.0)
    errors: list[str] = json.loads(done.stdout.strip().splitlines()[-1])["errors"]
    return errors


def prefixed(prefix: str) -> Any:
    return lambda row: str(row["message_id"]).startswith(prefix + "-")


def traits_of(row: dict[str, Any]) -> Any:
    """The ``traits`` column, or ``context.traits``: rudder-sdk-python puts identify's traits
    there (RudderStack's convention); eventkit stores the event as sent (see the README)."""
    if row["traits"] is not None:
        return json.loads(row["traits"])
    return json.loads(row["context"]).get("traits")


def check_rows(rows: dict[str, dict[str, Any]], prefix: str, lang: str, sdk: str) -> None:
    assert set(rows) == {f"{prefix}-{call}" for call in CALLS}
    user = "u-py" if lang == "python" else "u-node"
    by_type = {r["type"]: r for r in rows.values()}
    assert set(by_type) == set(CALLS)
    for call, row in by_type.items():
        assert row["message_id"] == f"{prefix}-{call}"
        assert row["user_id"] == user
        context = json.loads(row["context"])
        assert context["app"] == {"name": "compat", "version": "1.0"}
        assert context["library"]["name"] == LIBRARY[(lang, sdk)]
        assert abs(row["timestamp"] - row["received_at"]) < timedelta(seconds=60)
        assert row["original_timestamp"] is not None
    assert by_type["identify"]["stream"] == "users"
    assert traits_of(by_type["identify"])["email"].endswith("@example.com")
    track = by_type["track"]
    assert (track["stream"], track["event"]) == ("events", "Order Completed")
    assert json.loads(track["properties"]) == {"revenue": 9.5}
    page = by_type["page"]
    assert (page["stream"], page["name"]) == ("pages", "Install")
    assert json.loads(page["properties"])["path"] == "/docs"
    screen = by_type["screen"]
    assert (screen["stream"], screen["name"]) == ("screens", "Home")
    assert json.loads(screen["properties"])["tab"] == 1
    group = by_type["group"]
    assert group["stream"] == "groups"
    assert group["group_id"] == ("g-py" if lang == "python" else "g-node")
    assert traits_of(group) == {"name": "Acme"}
    alias = by_type["alias"]
    assert alias["stream"] == "aliases"
    assert alias["previous_id"] == ("anon-py" if lang == "python" else "anon-node")


@pytest.mark.parametrize(("lang", "sdk"), SDKS)
def test_server_sdk_lands(collector: CollectorProcess, lang: str, sdk: str) -> None:
    prefix = f"{sdk}-{lang}-{uuid.uuid4().hex[:8]}"
    assert send(lang, sdk, collector.url, prefix) == []
    check_rows(landed(collector, len(CALLS), prefixed(prefix)), prefix, lang, sdk)
