"""End to end: the real ``eventkit-collector`` process, every endpoint and body form, Parquet out.

Local mode needs nothing else; GCS and Pub/Sub modes run against the emulators (``integration``).
"""

from __future__ import annotations

import base64
import contextlib
import gzip
import json
import sys
import threading
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pyarrow.parquet as pq
import pytest

from tests.e2e.conftest import CollectorProcess, StartCollector, wait_until

SEED_METRICS = (
    "eventkit_api_requests_total",
    "eventkit_api_request_duration_seconds",
    "eventkit_events_received_total",
    "eventkit_events_processed_total",
    "eventkit_events_failed_total",
    "eventkit_storage_bytes_written_total",
    "eventkit_storage_files_written_total",
    "eventkit_queue_enqueued_total",
    "eventkit_queue_dequeued_total",
    "eventkit_queue_processed_total",
    "eventkit_queue_depth",
    "eventkit_ringbuffer_written_total",
    "eventkit_ringbuffer_published_total",
    "eventkit_ringbuffer_marked_published_total",
    "eventkit_ringbuffer_size",
    "eventkit_ringbuffer_unpublished",
    "eventkit_info",
    "eventkit_uptime_seconds",
    "eventkit_component_health",
)


def read_rows(root: Path, kind: str = "events") -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for f in sorted((root / kind).rglob("*.parquet")) if (root / kind).exists() else []:
        rows.extend(pq.read_table(f).to_pylist())
    return rows


def count_rows(root: Path, kind: str = "events") -> int:
    base = root / kind
    if not base.exists():
        return 0
    return sum(pq.read_metadata(f).num_rows for f in base.rglob("*.parquet"))


def ev(kind: str, **fields: Any) -> dict[str, Any]:
    base: dict[str, Any] = {"type": kind, "userId": "user-1", "messageId": str(uuid.uuid4())}
    extras: dict[str, dict[str, Any]] = {
        "track": {"event": "Signed Up", "properties": {"plan": "pro"}},
        "identify": {"traits": {"email": "a@example.com"}},
        "page": {"name": "Home"},
        "screen": {"name": "Main"},
        "group": {"groupId": "g-1"},
        "alias": {"previousId": "anon-1"},
    }
    extra = extras.get(kind, {})
    return {**base, **extra, **fields}


class Sent:
    """What was sent and accepted: expected rows per stream and dead letters."""

    def __init__(self) -> None:
        self.events: Counter[str] = Counter()
        self.dead = 0
        self.message_ids: set[str] = set()


STREAM_OF = {
    "identify": "users",
    "track": "events",
    "page": "pages",
    "screen": "screens",
    "group": "groups",
    "alias": "aliases",
}


def send_everything(url: str, sent: Sent, auth: tuple[str, str] | None = None) -> None:
    """Every endpoint and every body form; asserts 200 each time."""
    with httpx.Client(base_url=url, timeout=30, auth=auth) as c:

        def post(path: str, content: bytes, headers: dict[str, str] | None = None) -> None:
            r = c.post(path, content=content, headers=headers or {})
            assert r.status_code == 200, (path, r.status_code, r.text)
            assert r.json() == {"success": True}

        for call, stream in STREAM_OF.items():
            for path in (f"/v1/{call}", f"/v1/{call[0]}"):
                e = ev(call)
                post(path, json.dumps(e).encode(), {"Content-Type": "application/json"})
                sent.events[stream] += 1
                sent.message_ids.add(e["messageId"])
        # body forms on /v1/track
        forms: list[tuple[dict[str, str], Any]] = [
            ({"Content-Type": "text/plain"}, lambda b: b),
            ({"Content-Type": "application/x-www-form-urlencoded"}, lambda b: b),
            (
                {"Content-Type": "application/x-www-form-urlencoded"},
                lambda b: b"data=" + quote(b).encode(),
            ),
            ({"Content-Type": "application/x-www-form-urlencoded"}, lambda b: quote(b).encode()),
            ({"Content-Type": "application/json", "Content-Encoding": "gzip"}, gzip.compress),
            ({"Content-Type": "text/plain", "Content-Encoding": "gzip"}, gzip.compress),
        ]
        for headers, wrap in forms:
            e = ev("track")
            post("/v1/track", wrap(json.dumps(e).encode()), headers)
            sent.events["events"] += 1
        # batches: /v1/batch, /v1/b, /beacon/v1/batch (text/plain, writeKey in the query)
        for path in ("/v1/batch", "/v1/b", "/beacon/v1/batch?writeKey=wk-1"):
            items = [ev(k) for k in STREAM_OF] + [ev("nonsense"), 5]
            body = {
                "batch": items,
                "context": {"library": {"name": "e2e"}},
                "sentAt": "2026-01-01T00:00:00Z",
            }
            post(
                path,
                gzip.compress(json.dumps(body).encode()),
                {"Content-Type": "text/plain", "Content-Encoding": "gzip"},
            )
            for k in STREAM_OF:
                sent.events[STREAM_OF[k]] += 1
            sent.dead += 2
        # /collect and /collect/{stream}
        post("/collect", json.dumps({"any": "thing"}).encode())
        sent.events["default"] += 1
        post("/collect/webhooks", json.dumps([{"hook": 1}, {"hook": 2}, "not an object"]).encode())
        sent.events["webhooks"] += 2
        sent.dead += 1
        # validation failures: accepted, dead-lettered
        post("/v1/track", json.dumps({"userId": "u"}).encode())  # no event name
        post("/v1/identify", json.dumps({"traits": {}}).encode())  # no userId
        sent.dead += 2


def check_errors(url: str) -> None:
    with httpx.Client(base_url=url, timeout=30) as c:
        cases = [
            ("/v1/track", b'{"a": NaN}', {}, 400, "invalid_json"),
            ("/v1/track", b'{"a": 1e999}', {}, 400, "invalid_json"),
            ("/collect/bad.name", b"{}", {}, 400, "invalid_stream"),
            ("/v1/track", json.dumps({"p": "x" * 40_000}).encode(), {}, 413, "payload_too_large"),
            (
                "/v1/batch",
                gzip.compress(b" " * 3_000_000),
                {"Content-Encoding": "gzip"},
                413,
                "payload_too_large",
            ),
        ]
        for path, data, headers, status, code in cases:
            r = c.post(path, content=data, headers=headers)
            assert r.status_code == status, (path, r.text)
            assert r.json()["code"] == code
        r = c.options(
            "/v1/batch",
            headers={"Origin": "https://app.example", "Access-Control-Request-Method": "POST"},
        )
        assert r.status_code in (200, 204)
        assert "access-control-allow-origin" in r.headers
        assert c.get("/schema/openapi.json").status_code == 200


def check_stored(root: Path, sent: Sent) -> None:
    rows = read_rows(root)
    got = Counter(r["stream"] for r in rows)
    assert got == sent.events
    assert sent.message_ids <= {r["message_id"] for r in rows}
    assert all(r["message_id"] for r in rows)
    for r in rows:
        if r["stream"] in STREAM_OF.values():
            context = json.loads(r["context"])
            assert context.get("ip") == "127.0.0.1"
            assert context.get("userAgent", "").startswith("python-httpx")
    dead = read_rows(root, "dead-letters")
    assert len(dead) == sent.dead
    assert {d["reason_code"] for d in dead} >= {"invalid_type", "not_an_object", "missing_field"}


def scrape(cp: CollectorProcess) -> str:
    return httpx.get(f"{cp.metrics_url}/metrics", timeout=10).text


def exposed_names(text: str) -> set[str]:
    names: set[str] = set()
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        name = line.split("{", 1)[0].split(" ", 1)[0]
        names.add(name)
        for suffix in ("_bucket", "_count", "_sum"):
            if name.endswith(suffix):
                names.add(name[: -len(suffix)])
    return names


@pytest.mark.slow
@pytest.mark.parametrize("front", ["true", "false"], ids=["asgi-front", "litestar-only"])
def test_local_every_endpoint_lands_in_parquet(
    collector_server: StartCollector, tmp_path: Path, front: str
) -> None:
    cp = collector_server(EVENTKIT_FLUSH_MAX_AGE="0.5", EVENTKIT_INGEST_FRONT=front)
    sent = Sent()
    send_everything(cp.url, sent)
    check_errors(cp.url)
    expected = sum(sent.events.values())
    wait_until(lambda: count_rows(cp.data_dir) >= expected, 60, "events in Parquet")
    wait_until(lambda: count_rows(cp.data_dir, "dead-letters") >= sent.dead, 60, "dead letters")
    # /metrics shows every seed metric name after traffic
    names = exposed_names(scrape(cp))
    missing = [n for n in SEED_METRICS if n not in names]
    assert not missing, missing
    assert httpx.get(f"{cp.metrics_url}/health").status_code == 200
    assert cp.stop() == 0
    check_stored(cp.data_dir, sent)
    assert "Traceback" not in cp.log()


@pytest.mark.slow
def test_sigterm_flushes_and_kill9_loses_nothing(
    collector_server: StartCollector, tmp_path: Path
) -> None:
    data = tmp_path / "data"
    # Nothing is flushed by age during the test: only SIGTERM (or a restart) writes files.
    cp = collector_server(data, EVENTKIT_FLUSH_MAX_AGE="600")
    batch = {"batch": [ev("track") for _ in range(50)]}
    with httpx.Client(base_url=cp.url) as c:
        for _ in range(4):
            assert c.post("/v1/batch", json=batch).status_code == 200
    cp.kill()
    assert count_rows(data) == 0
    # restart: the ring buffer delivers what was acknowledged; SIGTERM flushes it
    cp2 = collector_server(data, EVENTKIT_FLUSH_MAX_AGE="600")
    with httpx.Client(base_url=cp2.url) as c:
        assert c.post("/v1/batch", json=batch).status_code == 200
    assert cp2.stop() == 0
    assert count_rows(data) == 250
    assert len({r["message_id"] for r in read_rows(data)}) == 50  # the same 50 ids, resent
    # a third start finds nothing left
    cp3 = collector_server(data, EVENTKIT_FLUSH_MAX_AGE="600")
    assert cp3.stop() == 0
    assert count_rows(data) == 250


@pytest.mark.slow
def test_two_workers_share_the_port(collector_server: StartCollector, tmp_path: Path) -> None:
    cp = collector_server(workers=2, EVENTKIT_FLUSH_MAX_AGE="0.5")
    with httpx.Client(base_url=cp.url) as c:
        for _ in range(40):
            batch = {"batch": [ev("identify") for _ in range(10)]}
            # a fresh connection each time so that both workers get some
            r = c.post("/v1/batch", json=batch, headers={"Connection": "close"})
            assert r.status_code == 200
    assert cp.stop() == 0
    assert count_rows(cp.data_dir) == 400
    assert sorted(p.name for p in (cp.data_dir / "ring").glob("*.db")) == ["0.db", "1.db"]


def test_write_keys_turn_auth_on(collector_server: StartCollector) -> None:
    cp = collector_server(EVENTKIT_WRITE_KEYS="secret-1,secret-2", EVENTKIT_FLUSH_MAX_AGE="0.5")
    with httpx.Client(base_url=cp.url) as c:
        r = c.post("/v1/track", json=ev("track"))
        assert r.status_code == 401
        assert r.json()["code"] == "unauthorized"
        basic = "Basic " + base64.b64encode(b"secret-2:").decode()
        assert (
            c.post("/v1/track", json=ev("track"), headers={"Authorization": basic}).status_code
            == 200
        )
        assert (
            c.post("/v1/batch", json={"batch": [ev("page")], "writeKey": "secret-1"}).status_code
            == 200
        )
    assert cp.stop() == 0
    assert count_rows(cp.data_dir) == 2


@pytest.mark.integration
@pytest.mark.slow
def test_gcs_mode(collector_server: StartCollector, gcs_emulator: Any, gcs_bucket: str) -> None:
    cp = collector_server(
        EVENTKIT_EVENT_STORE="gcs",
        GCP_GCS_BUCKET=gcs_bucket,
        GCP_PROJECT_ID=gcs_emulator.project,
        EVENTKIT_GCS_PREFIX="pipeline",
        EVENTKIT_FLUSH_MAX_AGE="0.5",
    )
    sent = Sent()
    send_everything(cp.url, sent)
    assert cp.stop() == 0
    root = Path(gcs_emulator.root) / gcs_bucket / "pipeline"
    check_stored(root, sent)
    assert not (cp.data_dir / "events").exists()


@pytest.mark.integration
@pytest.mark.slow
def test_pubsub_mode_dual_path(
    collector_server: StartCollector, pubsub_emulator: Any, tmp_path: Path
) -> None:
    import asyncio
    import threading

    from eventkit_core import RawEvent
    from eventkit_queues import (
        EventCoordinatorManager,
        EventSubscriptionCoordinator,
        ensure_subscription,
        ensure_topic,
    )

    topic = pubsub_emulator.new_name("events")
    project = pubsub_emulator.project
    ensure_topic(project, topic)
    realtime_sub = pubsub_emulator.new_name("realtime")
    ensure_subscription(project, topic, realtime_sub)
    cp = collector_server(
        EVENTKIT_QUEUE_MODE="pubsub",
        GCP_PROJECT_ID=project,
        EVENTKIT_PUBSUB_TOPIC=topic,
        EVENTKIT_PUBSUB_SUBSCRIPTION=pubsub_emulator.new_name("archive"),
        EVENTKIT_FLUSH_MAX_AGE="0.5",
    )
    # Path 1, real time, in this process: the seed's realtime coordinator.
    seen: list[RawEvent] = []
    loop = asyncio.new_event_loop()
    manager_box: list[EventCoordinatorManager] = []

    async def process_immediately(event: RawEvent) -> None:
        seen.append(event)

    async def start() -> None:
        manager = EventCoordinatorManager(
            [
                EventSubscriptionCoordinator(
                    project_id=project, subscription=realtime_sub, handler=process_immediately
                )
            ]
        )
        await manager.start_all()
        manager_box.append(manager)

    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    asyncio.run_coroutine_threadsafe(start(), loop).result(60)
    try:
        sent = Sent()
        send_everything(cp.url, sent)
        total = sum(sent.events.values()) + sent.dead
        # Path 2, archive: the collector's coordinator with handler=EventLoader.add -> Parquet
        wait_until(lambda: count_rows(cp.data_dir) >= sum(sent.events.values()), 90, "archive")
        wait_until(lambda: len(seen) >= total, 90, "realtime events")
        metrics = scrape(cp)
        names = exposed_names(metrics)
        for name in (
            "eventkit_events_received_total",
            "eventkit_events_processed_total",
            "eventkit_events_failed_total",
            "eventkit_ringbuffer_published_total",
            "eventkit_storage_files_written_total",
        ):
            assert name in names, name
        assert 'component="pubsub"' in metrics
        assert cp.stop() == 0
        rows = read_rows(cp.data_dir)
        # Pub/Sub may redeliver: duplicates are allowed in files, removed by message_id later
        assert (
            Counter(r["stream"] for r in {r["message_id"]: r for r in rows}.values()) == sent.events
        )
        assert sent.message_ids <= {e.message_id or "" for e in seen} | {
            json.loads(bytes(e.payload)).get("messageId", "") for e in seen if _is_obj(e.payload)
        }
        dead = read_rows(cp.data_dir, "dead-letters")
        assert len({(d["message_id"], d["reason_code"]) for d in dead}) == sent.dead
    finally:
        asyncio.run_coroutine_threadsafe(manager_box[0].stop_all(), loop).result(60)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)


def _is_obj(payload: Any) -> bool:
    try:
        return isinstance(json.loads(bytes(payload)), dict)
    except ValueError:
        return False


def unreleased(data_dir: Path) -> int:
    """Ring-buffer entries not yet released, over every shard (read with plain sqlite3)."""
    import sqlite3

    total = 0
    for db in sorted((data_dir / "ring").glob("*.db")):
        with contextlib.closing(sqlite3.connect(db)) as conn:
            total += int(conn.execute("SELECT count(*) FROM entries").fetchone()[0])
    return total


class Load:
    """Bounded load to 127.0.0.1 from a few threads, over many streams, until told to stop.

    Each request is a ``/collect/<stream>`` array or a ``/v1/batch`` of mixed types (one entry
    spanning several streams); every event has a unique messageId, kept when the answer is 200.
    """

    def __init__(self, url: str, streams: int = 40, threads: int = 4, limit: int = 600) -> None:
        self.url = url
        self.streams = streams
        self.limit = limit
        self.acked: set[str] = set()
        self.answers: Counter[int] = Counter()
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._threads = [
            threading.Thread(target=self._run, args=(n,), daemon=True) for n in range(threads)
        ]

    def __enter__(self) -> Load:
        for t in self._threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(60)

    def requests(self) -> int:
        with self._lock:
            return sum(self.answers.values())

    def _body(self, n: int, i: int) -> tuple[str, list[str], bytes]:
        ids = [f"t{n}-r{i}-e{k}" for k in range(4)]
        if i % 2:
            items = [{"n": k, "messageId": mid} for k, mid in enumerate(ids)]
            return f"/collect/s{(n * 7 + i) % self.streams}", ids, json.dumps(items).encode()
        kinds = ("track", "identify", "page", "group")
        batch = [ev(kind, messageId=mid) for kind, mid in zip(kinds, ids, strict=True)]
        return "/v1/batch", ids, json.dumps({"batch": batch}).encode()

    def _run(self, n: int) -> None:
        with httpx.Client(base_url=self.url, timeout=30) as c:
            for i in range(self.limit):
                if self._stop.is_set():
                    return
                path, ids, body = self._body(n, i)
                try:
                    status = c.post(path, content=body).status_code
                except httpx.HTTPError:
                    return  # the server stopped listening
                with self._lock:
                    self.answers[status] += 1
                    if status == 200:
                        self.acked.update(ids)


@pytest.mark.slow
def test_sigterm_under_load_across_many_streams_releases_every_entry(
    collector_server: StartCollector, tmp_path: Path
) -> None:
    """Issue 15: after a drain every file written releases its entries; a restart recovers none."""
    data = tmp_path / "data"
    # Files are written only by the drain (no age flush), over ~45 streams at once.
    cp = collector_server(data, EVENTKIT_FLUSH_MAX_AGE="600")
    with Load(cp.url) as load:
        wait_until(lambda: load.requests() >= 300, 120, "300 answered requests")
        started = time.monotonic()
        assert cp.stop() == 0
        stop_seconds = time.monotonic() - started
    assert load.answers[200] >= 300
    assert set(load.answers) <= {200, 503}, load.answers
    assert unreleased(data) == 0, cp.log()[-3000:]
    stored = {r["message_id"] for r in read_rows(data)}
    assert load.acked <= stored
    assert "Traceback" not in cp.log()
    assert stop_seconds < 30, stop_seconds
    # the next start has nothing to recover and writes nothing again
    rows = count_rows(data)
    cp2 = collector_server(data, EVENTKIT_FLUSH_MAX_AGE="600")
    assert cp2.stop() == 0
    assert "recovering" not in cp2.log()
    assert count_rows(data) == rows


def readme_blocks(title: str) -> list[str]:
    """The fenced code blocks of one ``##`` section of the collector's README."""
    readme = Path(__file__).parents[2] / "apps" / "collector" / "README.md"
    section = readme.read_text().split(f"## {title}\n", 1)[1].split("\n## ", 1)[0]
    return section.split("```")[1::2]


def shell_commands(block: str) -> tuple[list[str], list[str]]:
    """(commands, expected output lines) of a README shell block (``\\`` continues a line)."""
    commands: list[str] = []
    expected: list[str] = []
    current = ""
    for line in block.strip("\n").splitlines():
        if current or line.startswith(("curl ", "find ", "python ", "kill ", "cd ", "EVENTKIT_")):
            current += line + "\n"
            if not line.endswith("\\") and current.count("'") % 2 == 0:
                commands.append(current)
                current = ""
        else:
            expected.append(line)
    return commands, expected


@pytest.mark.slow
def test_the_readme_five_minute_example_runs_as_written(
    collector_server: StartCollector, tmp_path: Path
) -> None:
    import shutil
    import subprocess

    assert shutil.which("curl"), "the README example needs curl"
    start, send, look = readme_blocks("Five minutes")
    assert "EVENTKIT_FLUSH_MAX_AGE=1 eventkit-collector --data-dir ./data" in start
    work = tmp_path / "work"
    work.mkdir()
    cp = collector_server(work / "data", EVENTKIT_FLUSH_MAX_AGE="1")
    commands, expected = shell_commands(send)
    outputs = []
    for command in commands:
        run = command.replace("http://127.0.0.1:8000", cp.url)
        done = subprocess.run(["bash", "-c", run], capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, (command, done.stderr)
        outputs.append(done.stdout.strip())
    assert outputs == expected
    wait_until(lambda: count_rows(work / "data") >= 4, 30, "the example's files")
    wait_until(lambda: count_rows(work / "data", "dead-letters") >= 1, 30, "its dead letter")
    listing, *_ = shell_commands(look)
    printed = ""
    for command in listing:
        if command.startswith("kill "):
            continue
        run = command.replace("python ", f"{sys.executable} ", 1)
        done = subprocess.run(
            ["bash", "-c", run], capture_output=True, text=True, timeout=60, cwd=work
        )
        assert done.returncode == 0, (command, done.stderr)
        printed += done.stdout
    assert {line.split()[0] for line in printed.splitlines() if " " in line} == {
        "users",
        "events",
        "pages",
        "webhooks",
    }
    assert "data/dead-letters/webhooks/" in printed


@pytest.mark.integration
@pytest.mark.slow
def test_pubsub_mode_keeps_each_users_order_end_to_end(
    collector_server: StartCollector, pubsub_emulator: Any
) -> None:
    """Issue 20: one user's events reach an ordered subscription in the order they were sent."""
    import asyncio

    from eventkit_core import RawEvent
    from eventkit_queues import (
        EventCoordinatorManager,
        EventSubscriptionCoordinator,
        ensure_subscription,
        ensure_topic,
    )

    project = pubsub_emulator.project
    topic = pubsub_emulator.new_name("ordered")
    ensure_topic(project, topic)
    ordered = pubsub_emulator.new_name("ordered-sub")
    ensure_subscription(project, topic, ordered, enable_message_ordering=True)
    cp = collector_server(
        EVENTKIT_QUEUE_MODE="pubsub",
        GCP_PROJECT_ID=project,
        EVENTKIT_PUBSUB_TOPIC=topic,
        EVENTKIT_PUBSUB_SUBSCRIPTION=pubsub_emulator.new_name("archive"),
        EVENTKIT_FLUSH_MAX_AGE="0.5",
    )
    users, per_user = 4, 60
    seen: list[tuple[str, int]] = []  # (user, seq) in arrival order
    lock = threading.Lock()

    async def record(event: RawEvent) -> None:
        body = json.loads(bytes(event.payload))
        with lock:
            seen.append((body["userId"], body["properties"]["seq"]))

    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    manager = EventCoordinatorManager(
        [EventSubscriptionCoordinator(project_id=project, subscription=ordered, handler=record)]
    )
    asyncio.run_coroutine_threadsafe(manager.start_all(), loop).result(60)
    try:
        with httpx.Client(base_url=cp.url, timeout=30) as c:
            for start in range(0, per_user, 5):  # each batch: five more events of every user
                batch = [
                    ev("track", userId=f"user-{u}", properties={"seq": seq})
                    for seq in range(start, start + 5)
                    for u in range(users)
                ]
                assert c.post("/v1/batch", json={"batch": batch}).status_code == 200
            for seq in range(per_user, per_user + 10):  # and single requests after them
                r = c.post("/v1/track", json=ev("track", userId="user-0", properties={"seq": seq}))
                assert r.status_code == 200

        def first_sightings() -> dict[str, list[int]]:
            per: dict[str, list[int]] = {}
            with lock:
                arrivals = list(seen)
            for user, seq in arrivals:
                got = per.setdefault(user, [])
                if seq not in got:  # a redelivery repeats what was seen: keep the first
                    got.append(seq)
            return per

        total = users * per_user + 10
        wait_until(
            lambda: sum(len(v) for v in first_sightings().values()) >= total, 90, "every event"
        )
        per = first_sightings()
        assert per["user-0"] == list(range(per_user + 10))
        for u in range(1, users):
            assert per[f"user-{u}"] == list(range(per_user))
        assert cp.stop() == 0
    finally:
        asyncio.run_coroutine_threadsafe(manager.stop_all(), loop).result(60)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
