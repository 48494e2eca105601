"""Stateful property test: the ring buffer against a plain in-memory model.

Operations: append, append_many, read, release by ids and by range, clean reopen, and crash
(threads stopped with no checkpoint and no close, then a new instance on the same file).
"""

from __future__ import annotations

import asyncio
import shutil
import sqlite3
import tempfile
from collections.abc import Coroutine
from pathlib import Path
from typing import Any, TypeVar

import hypothesis.strategies as st
import pytest
from eventkit_ring_buffer import EntryTooLargeError, RingBuffer, RingBufferFullError
from hypothesis import HealthCheck, settings
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from tests.ring_buffer._rb_helpers import integrity, read_all

T = TypeVar("T")
payloads = st.binary(max_size=24)


class RingBufferMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.loop = asyncio.new_event_loop()
        self.dir = Path(tempfile.mkdtemp(prefix="rb-model-"))
        self.path = self.dir / "rb.sqlite"
        self.leftovers: list[sqlite3.Connection] = []
        self.unreleased: dict[int, bytes] = {}  # insertion order == id order
        self.retained = 0
        self.last_id = 0

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        return self.loop.run_until_complete(coro)

    def new_buffer(self) -> RingBuffer:
        rb = RingBuffer(
            self.path,
            max_entries=self.max_entries,
            max_bytes=self.max_bytes,
            retention_seconds=self.retention,
            durability=self.durability,  # type: ignore[arg-type]
        )
        self.run(rb.open())
        return rb

    @initialize(
        max_entries=st.integers(1, 8),
        max_bytes=st.integers(1, 80),
        retention=st.sampled_from([0.0, 3600.0]),
        durability=st.sampled_from(["normal", "full"]),
    )
    def setup(self, max_entries: int, max_bytes: int, retention: float, durability: str) -> None:
        self.max_entries, self.max_bytes = max_entries, max_bytes
        self.retention, self.durability = retention, durability
        self.rb = self.new_buffer()
        self.instance_id = self.rb.instance_id

    def expect_append(self, batch: list[bytes]) -> type[Exception] | None:
        if any(len(p) > self.max_bytes for p in batch) and len(batch) == 1:
            return EntryTooLargeError
        used = sum(map(len, self.unreleased.values()))
        if (
            len(self.unreleased) + len(batch) > self.max_entries
            or used + sum(map(len, batch)) > self.max_bytes
        ):
            return RingBufferFullError
        return None

    def appended(self, batch: list[bytes], ids: list[int]) -> None:
        assert ids == list(range(ids[0], ids[0] + len(batch)))
        assert ids[0] > self.last_id, "an id was reused"
        self.last_id = ids[-1]
        self.unreleased.update(zip(ids, batch, strict=True))

    @rule(payload=payloads)
    def append(self, payload: bytes) -> None:
        error = self.expect_append([payload])
        if error is not None:
            with pytest.raises(error):
                self.run(self.rb.append(payload))
            return
        self.appended([payload], [self.run(self.rb.append(payload))])

    @rule(batch=st.lists(payloads, min_size=1, max_size=5))
    def append_many(self, batch: list[bytes]) -> None:
        error = self.expect_append(batch)
        if error is not None:
            with pytest.raises((RingBufferFullError, EntryTooLargeError)):
                self.run(self.rb.append_many(batch))
            return
        self.appended(batch, self.run(self.rb.append_many(batch)))

    @rule(data=st.data(), limit=st.integers(1, 10))
    def read(self, data: st.DataObject, limit: int) -> None:
        after = data.draw(st.sampled_from([0, *self.unreleased, self.last_id + 1]))
        got = self.run(self.rb.read_unpublished(after_id=after, limit=limit))
        want = [(i, p) for i, p in self.unreleased.items() if i > after][:limit]
        assert [(e.id, e.payload) for e in got] == want

    @rule(data=st.data())
    def release_ids(self, data: st.DataObject) -> None:
        candidates = [*self.unreleased, 0, self.last_id + 1, max(1, self.last_id - 1)]
        ids = data.draw(st.lists(st.sampled_from(candidates), max_size=6))
        want = len(set(ids) & self.unreleased.keys())
        assert self.run(self.rb.mark_published(ids)) == want
        self.forget(set(ids))

    @rule(a=st.integers(0, 40), b=st.integers(0, 40))
    def release_range(self, a: int, b: int) -> None:
        ids = {i for i in self.unreleased if a <= i <= b}
        assert self.run(self.rb.mark_published_range(a, b)) == len(ids)
        self.forget(ids)

    def forget(self, ids: set[int]) -> None:
        for i in ids & self.unreleased.keys():
            del self.unreleased[i]
            if self.retention:
                self.retained += 1

    @rule()
    def reopen(self) -> None:
        self.run(self.rb.close())
        self.rb = self.new_buffer()

    @rule()
    def crash(self) -> None:
        self.leftovers += self.run(self.rb._abandon())
        self.rb = self.new_buffer()

    @invariant()
    def matches_model(self) -> None:
        if not hasattr(self, "rb"):
            return
        assert self.rb.instance_id == self.instance_id
        stats = self.run(self.rb.stats())
        assert stats.unpublished == len(self.unreleased)
        assert stats.bytes == sum(map(len, self.unreleased.values()))
        assert stats.size == len(self.unreleased) + self.retained
        assert stats.last_id == self.last_id
        assert self.rb._gauge_values == (stats.size, stats.unpublished)

    def teardown(self) -> None:
        try:
            if hasattr(self, "rb"):
                entries = self.run(read_all(self.rb))
                assert [(e.id, e.payload) for e in entries] == list(self.unreleased.items())
                self.run(self.rb.close())
                assert integrity(self.path) == "ok"
        finally:
            for conn in self.leftovers:
                conn.close()
            self.loop.close()
            shutil.rmtree(self.dir, ignore_errors=True)


RingBufferMachine.TestCase.settings = settings(
    max_examples=60,
    stateful_step_count=30,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
test_ring_buffer_model = RingBufferMachine.TestCase
