"""Anonymised client IPs: per stream, ``context.ip`` is stored whole, truncated, or not at all.

``EVENTKIT_IP_MODE`` (``full`` | ``truncate`` | ``drop``) is the mode of every stream, and
``EVENTKIT_STREAM_IP_MODE`` (``web:truncate,server:drop``) overrides it per stream. ``truncate``
keeps the network of the address: IPv4 /24 (``203.0.113.77`` -> ``203.0.113.0``), IPv6 /48
(``2001:db8:85a3:8d3:1319:8a2e:370:7348`` -> ``2001:db8:85a3::``); a value that is not an IP
address cannot be truncated and is not stored.

The IP lives in two places of an event on its way to storage: the request's address
(:attr:`RawEvent.ip`, which the adapters copy into ``context.ip``, and which a dead letter keeps
in its ``ip`` column) and whatever address the client put in the event itself (Segment's
``context.ip``, also in a ``/v1/batch`` top-level ``context``; Amplitude's ``ip``; Snowplow's
``ip`` parameter; PostHog's ``properties.$ip``). :class:`IpAnonymiser` rewrites both on the
RawEvents of one delivery, before the queue (in-process or Pub/Sub) and the adapters see them,
so that no column -- ``context``, ``extras``, ``payload`` with ``EVENTKIT_PARQUET_PAYLOAD=full``,
the dead letters -- ever holds the whole address. :class:`AnonymisingSink` applies it to every
delivery of the publisher, whatever the source.

An event is only decoded when its bytes may hold such a field (``"ip"``, ``$ip`` or a ``\\u``
escape): SDK events without a client-set IP pass through untouched, and with every stream
``full`` (the default) nothing is done at all.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from typing import Any, Final, Literal, get_args

import msgspec
from eventkit_core import ConfigurationError, InvalidStreamError, RawEvent, validate_stream

from eventkit_collector.release import EntryCounts
from eventkit_collector.sinks import Sink

IpMode = Literal["full", "truncate", "drop"]
IP_MODES: Final[tuple[IpMode, ...]] = get_args(IpMode)
#: From the least to the most private: the ring buffer keeps the IP of the least private mode
#: any stream has (a /v1/batch request's events go to streams known only after routing).
_PRIVACY: Final[dict[str, int]] = {"full": 0, "truncate": 1, "drop": 2}

_ANY: Final = msgspec.json.Decoder()
_ENCODER: Final = msgspec.json.Encoder()
#: Byte patterns one of the IP fields needs (an escaped key can spell "ip" with \\u0069).
_NEEDLES: Final = (b'"ip"', b"$ip", b"\\u")
_CACHE_LIMIT: Final = 4096


def parse_stream_modes(value: Any) -> dict[str, IpMode]:
    """``"web:truncate, server:drop"`` (or a JSON object, or a dict) -> ``{"web": "truncate", ...}``."""
    if value is None:
        return {}
    if isinstance(value, str):
        text = value.strip()
        if not text:
            return {}
        if text.startswith("{"):
            try:
                value = msgspec.json.decode(text)
            except msgspec.DecodeError as exc:
                raise ConfigurationError(f"EVENTKIT_STREAM_IP_MODE is not JSON: {exc}") from None
        else:
            value = dict(_pair(part) for part in text.split(",") if part.strip())
    if not isinstance(value, Mapping):
        raise ConfigurationError(
            "EVENTKIT_STREAM_IP_MODE must be stream:mode pairs, e.g. web:truncate,server:drop"
        )
    out: dict[str, IpMode] = {}
    for stream, mode in value.items():
        try:
            validate_stream(str(stream))
        except InvalidStreamError as exc:  # a settings error, reported like every other one
            raise ConfigurationError(f"EVENTKIT_STREAM_IP_MODE: {exc}") from None
        out[str(stream)] = check_mode(mode, f"EVENTKIT_STREAM_IP_MODE for stream {stream!r}")
    return out


def _pair(part: str) -> tuple[str, str]:
    stream, sep, mode = part.partition(":")
    if not sep:
        raise ConfigurationError(
            f"EVENTKIT_STREAM_IP_MODE item {part.strip()!r} is not stream:mode "
            "(e.g. web:truncate,server:drop)"
        )
    return stream.strip(), mode.strip()


def check_mode(mode: Any, what: str = "EVENTKIT_IP_MODE") -> IpMode:
    text = str(mode).strip().lower()
    for known in IP_MODES:
        if text == known:
            return known
    raise ConfigurationError(f"{what} is {mode!r}: use one of {', '.join(IP_MODES)}")


def truncate_ip(value: str) -> str | None:
    """The /24 (IPv4) or /48 (IPv6) network of an address; ``None`` when it is not an address.

    An IPv4-mapped IPv6 address (``::ffff:203.0.113.77``) is truncated as the IPv4 it holds.
    """
    try:
        addr = ipaddress.ip_address(value.strip())
    except ValueError:
        return None
    if isinstance(addr, ipaddress.IPv6Address):
        mapped = addr.ipv4_mapped
        if mapped is not None:
            net4 = ipaddress.IPv4Network((int(mapped) & 0xFFFFFF00, 24))
            return f"::ffff:{net4.network_address}"
        return str(ipaddress.IPv6Network((int(addr) >> 80 << 80, 48)).network_address)
    return str(ipaddress.IPv4Network((int(addr) & 0xFFFFFF00, 24)).network_address)


class IpPolicy:
    """Which mode each stream has, and what an IP becomes under it."""

    def __init__(self, default: IpMode = "full", streams: Mapping[str, IpMode] | None = None):
        self.default: IpMode = check_mode(default)
        self.streams: dict[str, IpMode] = {
            s: check_mode(m, f"the IP mode of stream {s!r}") for s, m in (streams or {}).items()
        }
        self._truncated: dict[str, str | None] = {}

    @property
    def enabled(self) -> bool:
        """False when every stream keeps whole IPs: nothing to do anywhere."""
        return self.default != "full" or any(m != "full" for m in self.streams.values())

    @property
    def ring_mode(self) -> IpMode:
        """The least private mode of any stream: what a request's IP may be stored as before
        its events are routed (in the ring buffer entry)."""
        modes = [self.default, *self.streams.values()]
        return min(modes, key=lambda m: _PRIVACY[m])

    def mode(self, stream: str) -> IpMode:
        return self.streams.get(stream, self.default)

    def apply(self, ip: str | None, mode: IpMode) -> str | None:
        if ip is None or mode == "full":
            return ip
        if mode == "drop":
            return None
        cache = self._truncated
        if ip in cache:
            return cache[ip]
        if len(cache) >= _CACHE_LIMIT:
            cache.clear()
        out = cache[ip] = truncate_ip(ip)
        return out

    def ring_ip(self, ip: str | None) -> str | None:
        """The IP as the ring buffer entry keeps it."""
        return self.apply(ip, self.ring_mode)


class IpAnonymiser:
    """Rewrites the IPs of a delivery's RawEvents by the mode of each event's stream."""

    def __init__(self, policy: IpPolicy) -> None:
        self.policy = policy

    def apply(self, events: list[RawEvent]) -> None:
        """In place: ``ip`` and the IP fields of ``payload`` and ``batch_context``."""
        policy = self.policy
        # A batch's events share one top-level context (one object): rewrite it once.
        contexts: dict[tuple[int, str], Any] = {}
        for raw in events:
            mode = policy.mode(raw.stream)
            if mode == "full":
                continue
            raw.ip = policy.apply(raw.ip, mode)
            raw.payload = _scrub_item(raw.payload, mode, policy)
            batch = raw.batch_context
            if batch is not None:
                key = (id(batch), mode)
                if key not in contexts:
                    contexts[key] = _scrub_context(batch, mode, policy)
                raw.batch_context = contexts[key]


def _may_hold_ip(data: bytes) -> bool:
    return any(n in data for n in _NEEDLES)


def _scrub_item(payload: Any, mode: IpMode, policy: IpPolicy) -> Any:
    """The item without (or with truncated) IP fields; the same object when it has none."""
    if isinstance(payload, msgspec.Raw):
        data = bytes(payload)
        if not _may_hold_ip(data):
            return payload
        try:
            value = _ANY.decode(data)
        except (msgspec.DecodeError, RecursionError):
            return payload  # not JSON: the adapter makes it a dead letter as it is
        if _scrub_fields(value, mode, policy):
            return msgspec.Raw(_ENCODER.encode(value))
        return payload
    _scrub_fields(payload, mode, policy)  # a decoded value (a hand-built RawEvent)
    return payload


def _scrub_context(context: Any, mode: IpMode, policy: IpPolicy) -> Any:
    """A batch's top-level context, IP rewritten."""
    holder = {"context": _decoded(context)}
    if _scrub_fields(holder, mode, policy):
        return msgspec.Raw(_ENCODER.encode(holder["context"]))
    return context


def _decoded(value: Any) -> Any:
    if isinstance(value, msgspec.Raw):
        try:
            return _ANY.decode(value)
        except (msgspec.DecodeError, RecursionError):
            return None
    return value


def _scrub_fields(value: Any, mode: IpMode, policy: IpPolicy) -> bool:
    """Rewrite ``ip`` (Amplitude, Snowplow), ``$ip``, ``context.ip`` (Segment) and
    ``properties.$ip`` (PostHog) of a decoded event; True when something changed."""
    if not isinstance(value, dict):
        return False
    changed = _rewrite(value, "ip", mode, policy) | _rewrite(value, "$ip", mode, policy)
    for parent, key in (("context", "ip"), ("properties", "$ip")):
        inner = value.get(parent)
        if isinstance(inner, dict):
            changed |= _rewrite(inner, key, mode, policy)
    return changed


def _rewrite(obj: dict[str, Any], key: str, mode: IpMode, policy: IpPolicy) -> bool:
    if key not in obj:
        return False
    old = obj[key]
    new = policy.apply(old, mode) if isinstance(old, str) else None
    if new is None:
        del obj[key]
        return True
    if new != old:
        obj[key] = new
        return True
    return False


class AnonymisingSink:
    """A :class:`Sink` that anonymises each delivery's IPs, then hands it to the next sink."""

    def __init__(self, inner: Sink, policy: IpPolicy) -> None:
        self.inner = inner
        self.anonymiser = IpAnonymiser(policy)

    async def start(self) -> None:
        await self.inner.start()

    async def stop(self) -> None:
        await self.inner.stop()

    async def deliver(self, events: list[RawEvent], entries: EntryCounts) -> None:
        self.anonymiser.apply(events)
        await self.inner.deliver(events, entries)

    def health(self) -> dict[str, bool]:
        return self.inner.health()


def with_ip_policy(sink: Sink, policy: IpPolicy) -> Sink:
    """``sink`` itself when every stream keeps whole IPs (the default), else wrapped."""
    return AnonymisingSink(sink, policy) if policy.enabled else sink
