"""Rate limits: a token bucket per write key, shared by every ``--workers`` process.

The unit is the **request**, as Segment's HTTP API counts it (it asks for at most 1,000 requests a
second per workspace and answers more with 429, ``Retry-After`` and ``X-RateLimit-Reset``, both in
seconds). A request costs one token whatever it holds, so the refusal is decided, where the key is
known from the ``Authorization`` header or the query string, before the body is read or decoded.
A key sent only inside the body (analytics.js puts ``writeKey`` there) is charged once the body is
parsed, still before anything is stored.

Who is limited: with ``EVENTKIT_WRITE_KEYS`` set, each write key has its bucket; requests that
carry no key by design (Snowplow trackers, allowed by app id) are limited per client IP. On an open
collector (no write keys), a presented key proves nothing, so every request is limited per client
IP (the address ``context.ip`` gets, before any anonymisation; it is kept in memory only, hashed in
the shared file).

Buckets: with one process, a dict (:class:`MemoryBuckets`). With ``--workers N``, one budget for
all of them (:class:`SharedBuckets`): a small memory-mapped file beside the ring buffer, a table of
slots updated under ``flock``; ``time.monotonic()`` is the machine's ``CLOCK_MONOTONIC``, the same
clock in every process. A bucket whose tokens have refilled to the burst is the same as no bucket,
so its slot is free for another key: the table never needs cleaning.
"""

from __future__ import annotations

import fcntl
import hashlib
import math
import mmap
import os
import struct
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final, Protocol

from eventkit_core import ConfigurationError

from eventkit_collector.edge import EdgeError, key_id

#: A request costs this many tokens.
COST: Final = 1.0


@dataclass(frozen=True, slots=True)
class Limit:
    """Requests per second refilled, and the most a bucket holds (the burst)."""

    rate: float
    burst: float

    def __post_init__(self) -> None:
        if self.rate < 0 or not math.isfinite(self.rate):
            raise ConfigurationError(f"a rate limit must be >= 0 requests/s, not {self.rate}")
        if self.burst < COST or not math.isfinite(self.burst):
            raise ConfigurationError(f"a rate-limit burst must be >= 1 request, not {self.burst}")


def default_burst(rate: float) -> float:
    """One second's worth of requests, at least one."""
    return float(max(1, math.ceil(rate)))


def refill(tokens: float, last: float, now: float, limit: Limit) -> float:
    """The tokens of a bucket at ``now`` (a clock that went back counts as no time)."""
    return min(limit.burst, tokens + max(0.0, now - last) * limit.rate)


def take(tokens: float, limit: Limit) -> tuple[float, float]:
    """``(tokens left, seconds to wait)`` after asking for one request's tokens.

    The wait is 0 when the request may pass (its tokens are taken), else how long until the
    bucket holds enough again (nothing is taken).
    """
    if tokens >= COST:
        return tokens - COST, 0.0
    if limit.rate <= 0:  # a bucket that never refills (rate 0 with a burst): wait "forever"
        return tokens, math.inf
    return tokens, (COST - tokens) / limit.rate


class Buckets(Protocol):
    """Where token buckets live; ``acquire`` returns the seconds to wait (0: allowed)."""

    def acquire(self, identity: str, limit: Limit, now: float) -> float: ...

    def close(self) -> None: ...


class MemoryBuckets:
    """The buckets of one process (``--workers 1``), at most ``max_entries`` of them."""

    def __init__(self, max_entries: int = 100_000) -> None:
        self._buckets: dict[str, tuple[float, float, Limit]] = {}
        self._max = max_entries

    def acquire(self, identity: str, limit: Limit, now: float) -> float:
        found = self._buckets.get(identity)
        tokens = limit.burst if found is None else refill(found[0], found[1], now, limit)
        left, wait = take(tokens, limit)
        if found is None and len(self._buckets) >= self._max:
            self._evict(now)
        self._buckets[identity] = (left, now, limit)
        return wait

    def _evict(self, now: float) -> None:
        # A bucket back to its burst is the same as an absent one; if none is, the oldest half
        # goes (their keys start again with a full bucket: never refusing too much).
        items = self._buckets.items()
        full = [k for k, (t, last, lim) in items if refill(t, last, now, lim) >= lim.burst]
        for k in full or sorted(self._buckets, key=lambda k: self._buckets[k][1])[: self._max // 2]:
            del self._buckets[k]

    def close(self) -> None:
        self._buckets.clear()


_MAGIC: Final = b"EKRLIM01"
_HEADER: Final = struct.Struct("<8sQ")
#: key hash (0 = empty), tokens, last update (monotonic seconds), rate, burst.
_SLOT: Final = struct.Struct("<Qdddd")
_PROBES: Final = 16


class SharedBuckets:
    """Buckets shared by processes on one machine: a memory-mapped table under ``flock``.

    ``slots`` buckets are kept at once (open addressing, ``_PROBES`` probes); a slot is free when
    it is empty or its bucket has refilled to its burst. When all probes of a key are taken by
    buckets still refilling, the one refilled the most is replaced (the new key starts with a full
    bucket): only with more than ``slots`` keys busy at once, and never refusing too much.
    """

    def __init__(self, path: Path, slots: int = 16_384) -> None:
        self.path = path
        self.slots = slots
        size = _HEADER.size + slots * _SLOT.size
        path.parent.mkdir(parents=True, exist_ok=True)
        self._fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX)
            try:
                self._prepare(size)
            finally:
                fcntl.flock(self._fd, fcntl.LOCK_UN)
            self._map = mmap.mmap(self._fd, size)
        except BaseException:
            os.close(self._fd)
            raise

    def _prepare(self, size: int) -> None:
        """A new (or differently laid out) file becomes an empty table; a valid one is kept."""
        header = os.pread(self._fd, _HEADER.size, 0)
        valid = len(header) == _HEADER.size and _HEADER.unpack(header) == (_MAGIC, self.slots)
        if valid and os.fstat(self._fd).st_size == size:
            return
        os.ftruncate(self._fd, 0)
        os.ftruncate(self._fd, size)
        os.pwrite(self._fd, _HEADER.pack(_MAGIC, self.slots), 0)

    def acquire(self, identity: str, limit: Limit, now: float) -> float:
        digest = hashlib.blake2b(identity.encode("utf-8", "surrogatepass"), digest_size=8).digest()
        h = int.from_bytes(digest, "little") or 1
        fcntl.flock(self._fd, fcntl.LOCK_EX)
        try:
            offset = self._slot_of(h, now)
            m = self._map
            stored, tokens, last, _rate, _burst = _SLOT.unpack_from(m, offset)
            current = refill(tokens, last, now, limit) if stored == h else limit.burst
            left, wait = take(current, limit)
            _SLOT.pack_into(m, offset, h, left, now, limit.rate, limit.burst)
            return wait
        finally:
            fcntl.flock(self._fd, fcntl.LOCK_UN)

    def _slot_of(self, h: int, now: float) -> int:
        """The offset of ``h``'s slot: its own, else a free one, else the most refilled."""
        m = self._map
        free: int | None = None
        fallback, best = 0, -1.0
        for i in range(_PROBES):
            offset = _HEADER.size + ((h + i) % self.slots) * _SLOT.size
            stored, tokens, last, rate, burst = _SLOT.unpack_from(m, offset)
            if stored == h:
                return offset
            if free is not None:
                continue
            if stored == 0 or last > now:  # empty, or written before a reboot
                free = offset
                continue
            fill = min(burst, tokens + (now - last) * rate)
            if fill >= burst:
                free = offset
            elif burst > 0 and fill / burst > best:
                fallback, best = offset, fill / burst
        return free if free is not None else fallback

    def close(self) -> None:
        if not self._map.closed:
            self._map.close()
            os.close(self._fd)


def _seconds(wait: float) -> int:
    """Whole seconds for ``Retry-After`` (at least 1, at most a day)."""
    if not math.isfinite(wait):
        return 86_400
    return max(1, min(86_400, math.ceil(wait)))


def rate_limited(wait: float, who: str) -> EdgeError:
    """The 429 answer: ``Retry-After`` and ``X-RateLimit-Reset`` in seconds, as Segment sends."""
    seconds = _seconds(wait)
    return EdgeError(
        429,
        "rate_limited",
        f"too many requests for this {who} (EVENTKIT_RATE_LIMIT): retry after {seconds} s",
        {"Retry-After": str(seconds), "X-RateLimit-Reset": str(seconds)},
    )


@dataclass(kw_only=True)
class RateLimiter:
    """Charges each request to its bucket; raises the 429 :class:`EdgeError` past the limit."""

    #: The limit of every bucket; ``None``: unlimited unless the key has an override.
    default: Limit | None
    #: Per write key id: its own limit (``None``: unlimited).
    overrides: Mapping[str, Limit | None] = field(default_factory=dict)
    buckets: Buckets = field(default_factory=MemoryBuckets)
    #: With write keys on, a request that needs one is limited per key; otherwise per client IP.
    by_key: bool = False
    clock: Callable[[], float] = time.monotonic

    def charge(self, key: str | None, needs_key: bool, ip: str | None) -> bool:
        """Charge one request; False when its bucket is not known yet (the key is in the body).

        ``key`` is the write key id, ``needs_key`` whether the endpoint authenticates by write
        key, ``ip`` the client address.
        """
        if self.by_key and needs_key:
            if key is None:
                return False
            limit = self.overrides.get(key, self.default) if self.overrides else self.default
            identity, who = "k" + key, "write key"
        else:
            limit, identity, who = self.default, "i" + (ip or ""), "client address"
        if limit is None:
            return True
        wait = self.buckets.acquire(identity, limit, self.clock())
        if wait > 0:
            raise rate_limited(wait, who)
        return True

    def close(self) -> None:
        self.buckets.close()


def parse_overrides(value: str, write_keys: list[str]) -> dict[str, Limit | None]:
    """``"KEY:RATE[:BURST],..."`` -> per key id limits. ``KEY`` is a write key id (the
    ``write_key_id`` of stored rows) or one of the write keys; a rate of 0 means unlimited."""
    out: dict[str, Limit | None] = {}
    keys = set(write_keys)
    for part in value.split(","):
        if not part.strip():
            continue
        name, rate_text, burst_text = _override_fields(part)
        try:
            rate = float(rate_text)
            burst = float(burst_text) if burst_text else default_burst(rate)
        except ValueError:
            raise ConfigurationError(
                f"EVENTKIT_RATE_LIMIT_KEYS item {part.strip()!r}: the rate and burst must be numbers"
            ) from None
        kid = key_id(name) if name in keys else name
        out[kid] = None if rate == 0 else Limit(rate, burst)
    return out


def _override_fields(part: str) -> tuple[str, str, str]:
    pieces = [p.strip() for p in part.rsplit(":", 2)]
    # "key:rate" or "key:rate:burst"; a key may hold colons, so numbers are read from the right.
    if len(pieces) == 3 and not _number(pieces[1]):
        pieces = [f"{pieces[0]}:{pieces[1]}", pieces[2]]
    if len(pieces) < 2 or not pieces[0]:
        raise ConfigurationError(
            f"EVENTKIT_RATE_LIMIT_KEYS item {part.strip()!r} is not KEY:RATE[:BURST]"
        )
    return pieces[0], pieces[1], pieces[2] if len(pieces) == 3 else ""


def _number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


@dataclass(frozen=True, kw_only=True)
class RateLimitConfig:
    """What the settings say (see :func:`build_rate_limiter`)."""

    rate: float = 0.0
    burst: float | None = None
    overrides: str = ""
    write_keys: list[str] = field(default_factory=list)
    workers: int = 1
    shared_path: Path | None = None


def build_rate_limiter(config: RateLimitConfig) -> RateLimiter | None:
    """The limiter of the settings, or ``None`` when no request is ever limited."""
    default = None
    if config.rate > 0:
        default = Limit(config.rate, config.burst or default_burst(config.rate))
    overrides = parse_overrides(config.overrides, config.write_keys)
    if default is None and not any(v is not None for v in overrides.values()):
        return None
    if config.workers > 1:
        if config.shared_path is None:
            raise ConfigurationError("a shared rate limit needs the path of its table")
        buckets: Buckets = SharedBuckets(config.shared_path)
    else:
        buckets = MemoryBuckets()
    return RateLimiter(
        default=default, overrides=overrides, buckets=buckets, by_key=bool(config.write_keys)
    )
