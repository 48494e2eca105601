"""``eventkit-loader profile`` and the Profile API served by ``eventkit-loader run``."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import re
import signal
import time
import urllib.error
import urllib.request
from datetime import timedelta
from pathlib import Path
from typing import Any

import msgspec
import pytest
from eventkit_core import IdentifyEvent, TrackEvent, TypedEvent
from eventkit_loader.cli import main
from eventkit_storage.local import LocalEventStore

from tests.loader.ld_support import T0, loader_env, loader_process, run_loader


def _raw(value: Any) -> msgspec.Raw:
    return msgspec.Raw(json.dumps(value).encode())


def person_events() -> list[TypedEvent]:
    """Ann browses anonymously on two devices, then identifies on both; Bob is someone else."""

    def common(i: int) -> dict[str, Any]:
        at = T0 + timedelta(minutes=i)
        return {
            "message_id": f"m{i}",
            "stream": "events",
            "received_at": at,
            "timestamp": at,
            "payload": _raw({"messageId": f"m{i}"}),
        }

    return [
        TrackEvent(**common(1), event="Viewed", anonymous_id="phone", properties=_raw({"sku": 1})),
        TrackEvent(**common(2), event="Viewed", anonymous_id="laptop"),
        IdentifyEvent(
            **common(3),
            user_id="ann",
            anonymous_id="phone",
            traits=_raw({"email": "Ann@Example.com", "plan": "free"}),
        ),
        IdentifyEvent(
            **common(4), user_id="ann", anonymous_id="laptop", traits=_raw({"plan": "pro"})
        ),
        TrackEvent(**common(5), event="Bought", user_id="ann", properties=_raw({"total": 9})),
        IdentifyEvent(**common(6), user_id="bob", traits=_raw({"plan": "free"})),
    ]


def store(data_dir: Path, events: list[TypedEvent]) -> None:
    asyncio.run(LocalEventStore(data_dir).store_batch(events))


def test_profile_finds_a_person_by_any_of_their_ids(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = tmp_path / "eventkit-data"
    store(data, person_events())
    assert main(["once", "--data-dir", str(data)]) == 0
    capsys.readouterr()

    answers = []
    for ident in ("user_id:ann", "anonymous_id:laptop", "email:ann@example.com"):
        assert main(["profile", ident, "--json", "--events", "2", "--data-dir", str(data)]) == 0
        answers.append(json.loads(capsys.readouterr().out))
    assert answers[0] == answers[1] == answers[2]
    ann = answers[0]
    assert ann["user_id"] == "ann"
    assert ann["profile_id"].startswith("use_")
    assert ann["traits"] == {"email": "Ann@Example.com", "plan": "pro"}
    assert ann["identities"] == [
        {"type": "anonymous_id", "value": "phone"},
        {"type": "anonymous_id", "value": "laptop"},
        {"type": "email", "value": "ann@example.com"},
        {"type": "user_id", "value": "ann"},
    ]
    assert [(e["message_id"], e["event"], e["properties"]) for e in ann["events"]] == [
        ("m5", "Bought", {"total": 9}),
        ("m4", None, None),
    ]

    assert main(["profile", "user_id:ann", "--data-dir", str(data)]) == 0
    text = capsys.readouterr().out
    assert "anonymous_id:laptop" in text
    assert '"pro"' in text
    assert "Bought" in text

    assert main(["profile", "user_id:nobody", "--data-dir", str(data)]) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.strip().splitlines() == ["eventkit-loader: no profile has user_id:nobody"]
    assert main(["profile", "ann", "--data-dir", str(data)]) == 1
    assert "TYPE:VALUE" in capsys.readouterr().err


def _get(
    port: int, path: str, token: str | None = "secret", timeout: float = 10
) -> tuple[int, Any]:
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}")
    if token is not None:
        request.add_header(
            "Authorization", "Basic " + base64.b64encode(f"{token}:".encode()).decode()
        )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


@pytest.mark.slow
def test_the_profile_api_answers_over_http_while_the_loader_runs(tmp_path: Path) -> None:
    data = tmp_path / "eventkit-data"
    store(data, person_events())
    env = loader_env(EVENTKIT_PROFILES_TOKEN="secret")
    args = ("run", "--data-dir", str(data), "--interval", "0.2", "--profiles-port", "0")
    with loader_process(*args, "--no-metrics", env=env) as loader:
        line = loader.wait_for_line(lambda text: "Profile API on" in text)
        port = int(re.findall(r":(\d+)/v1/spaces/", line)[0])
        base = "/v1/spaces/sp1/collections/users/profiles"
        deadline = time.monotonic() + 60
        while (answer := _get(port, f"{base}/user_id:ann/traits"))[0] == 404:
            assert time.monotonic() < deadline, "the first pass never resolved ann"
            time.sleep(0.05)
        assert answer[0] == 200, answer

        status, body = _get(port, f"{base}/email:ANN@example.com/traits?limit=1")
        assert (status, body["traits"], body["cursor"]["has_more"]) == (
            200,
            {"email": "Ann@Example.com"},
            True,
        )
        status, body = _get(
            port, f"{base}/user_id:ann/traits?limit=1&next={body['cursor']['next']}"
        )
        assert body["traits"] == {"plan": "pro"}
        assert body["cursor"]["has_more"] is False
        status, body = _get(port, f"{base}/user_id:ann/traits?include=plan")
        assert body["traits"] == {"plan": "pro"}

        status, body = _get(port, f"{base}/anonymous_id:phone/external_ids")
        assert status == 200
        assert [(d["type"], d["id"]) for d in body["data"]] == [
            ("anonymous_id", "phone"),
            ("anonymous_id", "laptop"),
            ("email", "ann@example.com"),
            ("user_id", "ann"),
        ]
        status, body = _get(port, f"{base}/user_id:ann/events?limit=2")
        assert [e["message_id"] for e in body["data"]] == ["m5", "m4"]
        assert body["cursor"]["has_more"] is True
        status, more = _get(
            port, f"{base}/user_id:ann/events?limit=10&next={body['cursor']['next']}"
        )
        assert [e["message_id"] for e in more["data"]] == ["m3", "m2", "m1"]

        status, meta = _get(port, f"{base}/user_id:ann/metadata")
        pid = meta["metadata"]["segment_id"]
        assert status == 200
        assert pid.startswith("use_")
        assert _get(port, f"{base}/{pid}/traits")[1]["traits"]["plan"] == "pro"

        for path, token, code in [
            (f"{base}/user_id:nobody/traits", "secret", (404, "profile_not_found")),
            (f"{base}/user_id:ann/traits", "wrong", (401, "unauthorized")),
            (f"{base}/user_id:ann/traits", None, (401, "unauthorized")),
            (f"{base}/user_id:ann/traits?limit=0", "secret", (400, "invalid_limit")),
            (f"{base}/user_id:ann/events?next=x", "secret", (400, "invalid_cursor")),
            (f"{base}/ann/traits", "secret", (400, "invalid_id")),
            ("/v1/spaces/sp1/other", "secret", (404, "not_found")),
        ]:
            status, body = _get(port, path, token)
            assert (status, body["code"]) == code, path
            assert body["message"]

        # the loader holds the file: `query` from another process waits, then says so
        done = run_loader(
            "query",
            "--data-dir",
            str(data),
            "select 1",
            env=loader_env(EVENTKIT_LOCK_TIMEOUT="0.2"),
        )
        assert done.returncode == 1
        assert "locked" in done.stderr


def test_the_profile_api_needs_a_token() -> None:
    assert main(["run", "--profiles-port", "0", "--data-dir", "/nonexistent"]) == 2


# ------------------------------------------------------------------------ BigQuery (emulator)


def _bq_rows(emulator: Any, dataset: str, sql: str) -> list[tuple[Any, ...]]:
    from tests.emulators import short_retry

    with contextlib.closing(emulator.client()) as client:
        job = client.query(sql.replace("{ds}", f"`{emulator.project}.{dataset}`"))
        return [tuple(r.values()) for r in job.result(timeout=60, retry=short_retry())]


@pytest.mark.slow
@pytest.mark.integration
@pytest.mark.timeout(600)  # about 2 minutes of emulator jobs on a quiet 2-core machine
def test_bigquery_pass_sigkilled_midway_then_rerun_serves_the_same_profiles(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    bigquery_emulator: Any,
    gcs_bucket: str,
    bigquery_dataset: str,
) -> None:
    """A loader on BigQuery is SIGKILLed in the middle of its identity pass's writes (after
    some statements, before the facts); the rerun converges to what an uninterrupted DuckDB run
    gives, and `profile` and the Profile API read it from BigQuery."""
    from eventkit_storage.gcs import GCSEventStore

    data = tmp_path / "eventkit-data"
    store(data, person_events())
    assert main(["once", "--data-dir", str(data)]) == 0
    capsys.readouterr()
    reference = {}
    for ident in ("user_id:ann", "user_id:bob"):
        assert main(["profile", ident, "--json", "--data-dir", str(data)]) == 0
        reference[ident] = json.loads(capsys.readouterr().out)

    gcs = GCSEventStore(gcs_bucket, prefix="pre", client=bigquery_emulator.gcs.client())
    asyncio.run(gcs.store_batch(person_events()))
    args = (
        *("--event-store", "gcs", "--bucket", gcs_bucket, "--prefix", "pre"),
        *("--project", bigquery_emulator.project, "--dataset", bigquery_dataset),
    )
    env = loader_env(
        EVENTKIT_BIGQUERY_API_ENDPOINT=bigquery_emulator.endpoint,
        STORAGE_EMULATOR_HOST=bigquery_emulator.gcs.endpoint,
        NO_GCE_CHECK="True",  # no metadata-server probe (seconds per process)
    )
    with loader_process("once", *args, "--log-level", "DEBUG", env=env) as loader:
        # the chunk's edges and rejections are written; its profiles are being written; its
        # identities and facts (the progress marker) are not
        loader.wait_for_line(
            lambda line: "identity write" in line and ".profiles`" in line, within=180
        )
        loader.signal(signal.SIGKILL)
        assert loader.wait() == -signal.SIGKILL
    facts = "SELECT count(*) FROM {ds}._eventkit_identity_events"
    assert _bq_rows(bigquery_emulator, bigquery_dataset, facts) == [(0,)]
    edges = _bq_rows(
        bigquery_emulator, bigquery_dataset, "SELECT count(*) FROM {ds}.identity_edges"
    )
    assert edges[0][0] > 0

    done = run_loader("once", *args, "--json", env=env, timeout=300)
    assert done.returncode == 0, done.stderr
    assert _bq_rows(bigquery_emulator, bigquery_dataset, facts) == [(6,)]
    for ident in ("anonymous_id:laptop", "user_id:bob"):
        shown = run_loader("profile", ident, "--json", *args, env=env)
        assert shown.returncode == 0, shown.stderr
        expected = reference["user_id:bob" if ident == "user_id:bob" else "user_id:ann"]
        assert json.loads(shown.stdout) == expected
    missing = run_loader("profile", "user_id:nobody", *args, env=env)
    assert missing.returncode == 1
    assert (
        missing.stderr.strip().splitlines()[-1] == "eventkit-loader: no profile has user_id:nobody"
    )

    api_env = {**env, "EVENTKIT_PROFILES_TOKEN": "secret"}
    run_args = ("run", *args, "--interval", "60", "--profiles-port", "0", "--no-metrics")
    with loader_process(*run_args, env=api_env) as served:
        line = served.wait_for_line(lambda text: "Profile API on" in text, within=120)
        port = int(re.findall(r":(\d+)/v1/spaces/", line)[0])
        base = "/v1/spaces/sp1/collections/users/profiles"
        status, body = _get(port, f"{base}/anonymous_id:phone/traits", timeout=120)
        assert (status, body["traits"]) == (200, reference["user_id:ann"]["traits"])
        # (its events come from the same reader as `profile`'s above)
        assert _get(port, f"{base}/user_id:nobody/traits", timeout=120)[0] == 404
