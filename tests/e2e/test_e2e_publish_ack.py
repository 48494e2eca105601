"""``EVENTKIT_ACK_MODE=publish``: 200 only once Pub/Sub confirmed the request's events.

- Refused at start-up with a queue mode other than ``pubsub``: one line, exit 3.
- Concurrent requests share Publish calls (far fewer calls than requests), every event arrives.
- kill -9 mid-traffic (four concurrent clients): every acknowledged messageId is on an audit
  subscription of the topic (Pub/Sub is the durable log), and the ring buffer was never written.
- The Pub/Sub emulator frozen (SIGSTOP: connections hang): 503 with the JSON error body within
  the bounded wait, never a hang or a 500; once it is thawed, 200 again.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from eventkit_collector.edge import Kind, Limits, parse_body
from eventkit_collector.envelope import Envelope
from eventkit_collector.publish_ack import PublishAck, PublishAckConfig
from eventkit_core import BackpressureError, decode_raw_event
from eventkit_queues.pubsub import PubSubQueue, ensure_subscription, ensure_topic

from tests.e2e.conftest import StartCollector, free_port, wait_until
from tests.e2e.faults import Books, LoadGen, batch_body
from tests.emulators import PubSubEmulator, run_pubsub


def _topic_with_audit(emulator: PubSubEmulator, tag: str) -> tuple[str, str]:
    """A new topic and a subscription of the test's own on it (created before any publish)."""
    topic, audit = emulator.new_name(tag), emulator.new_name(f"{tag}-audit")
    publisher, subscriber = emulator.publisher(), emulator.subscriber()
    try:
        ensure_topic(emulator.project, topic, publisher=publisher)
        ensure_subscription(
            emulator.project, topic, audit, enable_message_ordering=False, subscriber=subscriber
        )
    finally:
        publisher.transport.close()
        subscriber.transport.close()
    return topic, audit


@contextlib.contextmanager
def _pulling(emulator: PubSubEmulator, subscription: str) -> Iterator[Any]:
    subscriber = emulator.subscriber()
    path = emulator.subscription_path(subscription)
    seen: set[str] = set()

    def pull() -> set[str]:
        """Pull (and ack) what is there; returns every messageId pulled so far."""
        response = subscriber.pull(
            request={"subscription": path, "max_messages": 1000}, timeout=10.0
        )
        if response.received_messages:
            for m in response.received_messages:
                seen.add(str(decode_raw_event(m.message.data).message_id))
            subscriber.acknowledge(
                request={
                    "subscription": path,
                    "ack_ids": [m.ack_id for m in response.received_messages],
                }
            )
        return seen

    try:
        yield pull
    finally:
        subscriber.transport.close()


def _pubsub_env(emulator: PubSubEmulator, topic: str, **more: str) -> dict[str, str]:
    return {
        "EVENTKIT_QUEUE_MODE": "pubsub",
        "EVENTKIT_ACK_MODE": "publish",
        "GCP_PROJECT_ID": emulator.project,
        "PUBSUB_EMULATOR_HOST": emulator.host,
        "EVENTKIT_PUBSUB_TOPIC": topic,
        "EVENTKIT_PUBSUB_SUBSCRIPTION": emulator.new_name("archive"),
        "EVENTKIT_FLUSH_MAX_AGE": "0.3",
        **more,
    }


def test_publish_mode_without_pubsub_is_refused_in_one_line(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("EVENTKIT_")}
    env["EVENTKIT_ACK_MODE"] = "publish"
    done = subprocess.run(
        [sys.executable, "-m", "eventkit_collector.cli", "serve", "--data-dir", str(tmp_path)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 3, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert "EVENTKIT_ACK_MODE=publish needs EVENTKIT_QUEUE_MODE=pubsub" in lines[0]


def _request(n: int) -> tuple[list[str], Envelope, Any]:
    ids, body = batch_body(n, tag="share")
    data = json.dumps(body).encode()
    env = Envelope(source="batch", stream=None, received_at=datetime.now(UTC), body=data)
    return ids, env, parse_body(Kind.BATCH, data, Limits())


@pytest.mark.integration
def test_concurrent_requests_share_publish_calls(pubsub_emulator: PubSubEmulator) -> None:
    topic, audit = _topic_with_audit(pubsub_emulator, "share")
    requests = [_request(5) for _ in range(300)]

    async def go() -> PublishAck:
        ack = PublishAck(
            PubSubQueue(pubsub_emulator.project, topic, publisher=pubsub_emulator.publisher()),
            PublishAckConfig(timeout=60.0),
        )
        await ack.start()
        try:
            await asyncio.gather(*(ack.accept(env, parsed) for _ids, env, parsed in requests))
        finally:
            await ack.stop()
        return ack

    ack = asyncio.run(go())
    assert ack.refused == 0
    # 300 requests arriving together: a handful of calls (4 in flight at most), not 300.
    assert 1 <= ack.publish_calls <= 30, ack.publish_calls
    expected = {i for ids, _e, _p in requests for i in ids}
    with _pulling(pubsub_emulator, audit) as pull:
        wait_until(lambda: expected <= pull(), 60, "every event on the audit subscription")
        assert pull() == expected


@pytest.mark.integration
def test_accept_refuses_when_stopped_and_when_full(pubsub_emulator: PubSubEmulator) -> None:
    topic, _audit = _topic_with_audit(pubsub_emulator, "refuse")
    _ids, env, parsed = _request(1)

    async def go() -> list[str]:
        ack = PublishAck(
            PubSubQueue(pubsub_emulator.project, topic, publisher=pubsub_emulator.publisher()),
            PublishAckConfig(timeout=60.0, max_pending_requests=1),
        )
        messages: list[str] = []
        with pytest.raises(BackpressureError) as before:
            await ack.accept(env, parsed)
        messages.append(before.value.message)
        await ack.start()
        try:
            first = asyncio.ensure_future(ack.accept(env, parsed))
            await asyncio.sleep(0)  # the first request is now waiting for its publish
            with pytest.raises(BackpressureError) as full:
                await ack.accept(env, parsed)
            messages.append(full.value.message)
            await first
        finally:
            await ack.stop()
        return messages

    starting, full = asyncio.run(go())
    assert "starting or stopping" in starting
    assert "EVENTKIT_MAX_PENDING_REQUESTS" in full


def _ring_appends(data: Path) -> int:
    """Entries ever appended to the collector's ring buffer (``next_id`` starts at 1)."""
    with contextlib.closing(sqlite3.connect(data / "ring" / "0.db", timeout=30)) as conn:
        (next_id,) = conn.execute("select next_id from counters").fetchone()
    return int(next_id) - 1


def _merged(books: list[Books]) -> Books:
    out = Books()
    for b in books:
        out.acked |= b.acked
        out.sent |= b.sent
        out.statuses.update(b.statuses)
        out.unanswered_requests += b.unanswered_requests
    return out


@pytest.mark.integration
@pytest.mark.slow
def test_kill_9_mid_traffic_loses_no_acknowledged_event(
    collector_server: StartCollector, pubsub_emulator: PubSubEmulator, tmp_path: Path
) -> None:
    topic, audit = _topic_with_audit(pubsub_emulator, "kill")
    data = tmp_path / "data"
    cp = collector_server(data, **_pubsub_env(pubsub_emulator, topic))
    gens = [LoadGen(lambda: cp.url, batch=10, rate=15, timeout=30) for _ in range(4)]
    with contextlib.ExitStack() as stack:
        for gen in gens:
            stack.enter_context(gen)
        wait_until(lambda: sum(g.acked_count() for g in gens) >= 400, 120, "acked events")
        cp.kill()  # mid-traffic: four clients have requests in flight
    books = _merged([g.snapshot() for g in gens])
    assert set(books.statuses) <= {200, 503}, books.statuses
    assert len(books.acked) >= 400
    assert _ring_appends(data) == 0  # publish mode skips the ring buffer
    with _pulling(pubsub_emulator, audit) as pull:
        wait_until(lambda: books.acked <= pull(), 60, "every acknowledged id on the topic")
        assert pull() <= books.sent
    assert "Traceback" not in cp.log(), cp.log()[-4000:]


@pytest.fixture
def own_pubsub(tmp_path: Path) -> Iterator[PubSubEmulator]:
    with run_pubsub(tmp_path / "own-pubsub") as emulator:
        yield emulator


@pytest.mark.integration
@pytest.mark.slow
def test_pubsub_frozen_gives_503_json_then_200_again(
    collector_server: StartCollector, own_pubsub: PubSubEmulator, tmp_path: Path
) -> None:
    topic, audit = _topic_with_audit(own_pubsub, "frozen")
    cp = collector_server(
        tmp_path / "data",
        port=free_port(),
        **_pubsub_env(own_pubsub, topic, EVENTKIT_ACK_TIMEOUT="2"),
    )
    control = own_pubsub.control
    assert control is not None
    acked: set[str] = set()
    with httpx.Client(base_url=cp.url, timeout=60) as client:

        def post() -> tuple[httpx.Response, list[str]]:
            ids, body = batch_body(5, tag="frozen")
            response = client.post("/v1/batch", json=body)
            if response.status_code == 200:
                acked.update(ids)
            return response, ids

        assert post()[0].status_code == 200
        control.pause()
        try:
            for _ in range(3):
                started = time.monotonic()
                response, _ids = post()
                # Bounded: the 2 s ack timeout, far below the client's 60 s (a hang fails here).
                assert time.monotonic() - started < 30
                assert response.status_code == 503, response.text
                body = response.json()
                assert body["code"] == "overloaded"
                assert "Pub/Sub" in body["message"]
                assert int(response.headers["retry-after"]) >= 1
        finally:
            control.resume()
        wait_until(lambda: post()[0].status_code == 200, 60, "200 once Pub/Sub is back")
    with _pulling(own_pubsub, audit) as pull:
        wait_until(lambda: acked <= pull(), 60, "every acknowledged id on the topic")
    assert cp.stop() == 0
    assert "Traceback" not in cp.log(), cp.log()[-4000:]


def test_debugger_shows_events_in_publish_mode(
    collector_server: StartCollector, pubsub_emulator: PubSubEmulator, tmp_path: Path
) -> None:
    """Publish mode skips the ring buffer; the debugger taps the adapter behind the archive
    subscription, so it still shows each event (once the subscription delivered it)."""
    topic, _audit = _topic_with_audit(pubsub_emulator, "debug")
    cp = collector_server(tmp_path / "data", **_pubsub_env(pubsub_emulator, topic))
    lines: list[str] = []
    stop = threading.Event()

    def read() -> None:
        with (
            httpx.Client(base_url=cp.url, timeout=httpx.Timeout(10.0, read=90.0)) as client,
            client.stream("GET", "/debugger/events") as stream,
        ):
            for line in stream.iter_lines():
                lines.append(line)
                if stop.is_set():
                    return

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    sent: list[str] = []

    def shown() -> bool:
        # Taps start recording within a second of a viewer connecting: probe until one shows.
        if not any(m in line for line in list(lines) for m in sent):
            message_id = f"dbg-{len(sent)}"
            answer = httpx.post(
                cp.url + "/v1/track",
                json={"userId": "u-debug", "event": "Probe", "messageId": message_id},
                timeout=30,
            )
            assert answer.status_code == 200, answer.text
            sent.append(message_id)
            time.sleep(0.5)
            return False
        return True

    try:
        wait_until(shown, 90, "a published event in the debugger's stream")
    finally:
        stop.set()
    items = [line for line in list(lines) if line.startswith("data: ")]
    assert any('"u-debug"' in line and '"Probe"' in line for line in items), items[-5:]
    assert _ring_appends(tmp_path / "data") == 0  # still publish mode: no ring buffer
    assert "Traceback" not in cp.log(), cp.log()[-4000:]
