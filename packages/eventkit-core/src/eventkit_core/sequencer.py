"""Hash-based routing: the same identity always goes to the same partition.

The hash is CRC-32 (``zlib.crc32``): stable across processes, restarts, machines and Python
versions (unlike ``hash()``), computed in C, and uniform enough once mixed (see ``_mix``).
"""

from __future__ import annotations

import zlib
from typing import Any

import msgspec

from eventkit_core.errors import ConfigurationError
from eventkit_core.events import RawEvent


class _Identity(msgspec.Struct):
    """Only the identity fields of an event; msgspec skips the rest without building it."""

    userId: Any = None
    anonymousId: Any = None
    messageId: Any = None


_IDENTITY_DECODER = msgspec.json.Decoder(_Identity)


def _text(value: Any) -> str | None:
    if isinstance(value, str):
        return value or None
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)
    return None


def identity_key(event: RawEvent) -> str:
    """The routing key of an event: userId, else anonymousId, else messageId, else ``""``."""
    if event.key is not None:
        return event.key
    payload = event.payload
    if isinstance(payload, msgspec.Raw):
        try:
            ident = _IDENTITY_DECODER.decode(payload)
        except msgspec.DecodeError:
            return event.message_id or ""
        candidates: tuple[Any, ...] = (ident.userId, ident.anonymousId, ident.messageId)
    elif isinstance(payload, dict):
        candidates = (payload.get("userId"), payload.get("anonymousId"), payload.get("messageId"))
    else:
        candidates = ()
    for value in candidates:
        text = _text(value)
        if text is not None:
            return text
    return event.message_id or ""


def _mix(h: int) -> int:
    # murmur3 finalizer: spreads CRC-32's structure so that ``% n`` is uniform for any n.
    h ^= h >> 16
    h = (h * 0x85EBCA6B) & 0xFFFFFFFF
    h ^= h >> 13
    h = (h * 0xC2B2AE35) & 0xFFFFFFFF
    h ^= h >> 16
    return h


class Sequencer:
    """Routes events to one of ``partitions`` partitions by identity."""

    __slots__ = ("partitions",)

    def __init__(self, partitions: int = 8) -> None:
        if partitions < 1:
            raise ConfigurationError(f"partitions must be at least 1, got {partitions}")
        self.partitions = partitions

    def partition_for_key(self, key: str) -> int:
        """Partition of a routing key."""
        return _mix(zlib.crc32(key.encode("utf-8", "surrogatepass"))) % self.partitions

    def partition_for(self, event: RawEvent) -> int:
        """Partition of an event (see :func:`identity_key`)."""
        return self.partition_for_key(identity_key(event))

    # ``route``: the name code written against the original eventkit package calls.
    route = partition_for
