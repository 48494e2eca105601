"""Token buckets (eventkit_collector.ratelimit) with a hand-driven clock, and their settings."""

from __future__ import annotations

import multiprocessing
from pathlib import Path

import pytest
from eventkit_collector.edge import EdgeError, key_id
from eventkit_collector.ratelimit import (
    Limit,
    MemoryBuckets,
    RateLimitConfig,
    RateLimiter,
    SharedBuckets,
    build_rate_limiter,
    parse_overrides,
)
from eventkit_collector.settings import Settings
from eventkit_core import ConfigurationError
from pydantic import ValidationError


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.mark.parametrize("make", [MemoryBuckets, "shared"])
def test_a_bucket_allows_its_burst_then_refills_at_its_rate(make: object, tmp_path: Path) -> None:
    buckets = SharedBuckets(tmp_path / "b.bin") if make == "shared" else MemoryBuckets()
    limit = Limit(rate=2.0, burst=3.0)
    now = 50.0
    assert [buckets.acquire("k", limit, now) for _ in range(3)] == [0.0, 0.0, 0.0]
    assert buckets.acquire("k", limit, now) == pytest.approx(0.5)  # one token in 1/2 s
    assert buckets.acquire("other", limit, now) == 0.0  # a bucket per identity
    assert buckets.acquire("k", limit, now + 0.5) == 0.0
    assert buckets.acquire("k", limit, now + 0.5) > 0
    # Refills stop at the burst: a long pause gives 3 requests, not more.
    later = now + 1000
    assert [buckets.acquire("k", limit, later) for _ in range(3)] == [0.0, 0.0, 0.0]
    assert buckets.acquire("k", limit, later) > 0
    buckets.close()


def _spend(path: str, count: int, out: multiprocessing.Queue) -> None:  # type: ignore[type-arg]
    buckets = SharedBuckets(Path(path))
    allowed = sum(buckets.acquire("k", Limit(0.001, 5.0), 10.0) == 0.0 for _ in range(count))
    buckets.close()
    out.put(allowed)


def test_processes_share_the_shared_buckets(tmp_path: Path) -> None:
    ctx = multiprocessing.get_context("spawn")
    out = ctx.Queue()
    procs = [ctx.Process(target=_spend, args=(str(tmp_path / "b.bin"), 5, out)) for _ in range(2)]
    for p in procs:
        p.start()
    results = [out.get(timeout=60) for _ in procs]
    for p in procs:
        p.join(60)
    assert sum(results) == 5  # one budget of 5, not 5 per process


def test_the_limiter_limits_by_key_or_by_client_address() -> None:
    clock = Clock()
    limiter = RateLimiter(
        default=Limit(1.0, 1.0),
        overrides={"vip": None},
        by_key=True,
        clock=clock,
        buckets=MemoryBuckets(),
    )
    assert limiter.charge("a", True, "1.2.3.4")
    with pytest.raises(EdgeError) as refused:
        limiter.charge("a", True, "5.6.7.8")  # same key, another address: same bucket
    assert refused.value.status == 429
    assert refused.value.headers == {"Retry-After": "1", "X-RateLimit-Reset": "1"}
    assert all(limiter.charge("vip", True, None) for _ in range(100))  # no limit for it
    assert limiter.charge(None, True, "1.2.3.4") is False  # key in the body: charged later
    assert limiter.charge(None, False, "9.9.9.9")  # no key by design: per address
    with pytest.raises(EdgeError):
        limiter.charge(None, False, "9.9.9.9")
    clock.now += 1.0
    assert limiter.charge("a", True, None)


def test_settings_build_no_limiter_by_default_and_parse_overrides() -> None:
    assert build_rate_limiter(RateLimitConfig()) is None
    overrides = parse_overrides("wk-secret:5:10,id42:0", ["wk-secret"])
    assert overrides == {key_id("wk-secret"): Limit(5.0, 10.0), "id42": None}
    for bad, match in [("nokey", "KEY:RATE"), ("k:fast", "numbers"), ("k:-1", ">= 0")]:
        with pytest.raises(ConfigurationError, match=match):
            parse_overrides(bad, [])


def test_bad_rate_settings_are_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EVENTKIT_RATE_LIMIT", "-1")
    with pytest.raises(ValidationError, match="eventkit_rate_limit"):
        Settings()
    monkeypatch.setenv("EVENTKIT_RATE_LIMIT", "10")
    monkeypatch.setenv("EVENTKIT_RATE_LIMIT_BURST", "0.5")
    with pytest.raises(ValidationError, match="eventkit_rate_limit_burst"):
        Settings()
