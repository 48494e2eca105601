"""One shared object per key object, made on first use (e.g. metric instruments per provider).

OpenTelemetry warns when one meter creates the same instrument twice, and two buffers or stores
in one process must add to the same counters: each library keeps one set of instruments per
meter provider with a :class:`PerKey`.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Generic, TypeVar

K = TypeVar("K")
V = TypeVar("V")


class PerKey(Generic[K, V]):
    """``per_key(key)``: the value made by ``make(key)`` the first time, the same one after.

    Keys are compared by identity (``None`` is a key too) and kept referenced, so that an id
    cannot be reused by another object. Thread-safe.
    """

    __slots__ = ("_lock", "_make", "_values")

    def __init__(self, make: Callable[[K], V]) -> None:
        self._make = make
        self._lock = threading.Lock()
        self._values: dict[int, tuple[K, V]] = {}

    def __call__(self, key: K) -> V:
        with self._lock:
            found = self._values.get(id(key))
            if found is None or found[0] is not key:
                found = (key, self._make(key))
                self._values[id(key)] = found
            return found[1]
