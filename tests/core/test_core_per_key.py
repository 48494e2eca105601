"""PerKey: one value per key object, made once, also under concurrent first use."""

from __future__ import annotations

import threading

from eventkit_core import PerKey


class _Key:
    pass


def test_one_value_per_key_by_identity() -> None:
    made: list[object] = []

    def make(key: object) -> list[object]:
        made.append(key)
        return [key]

    per_key: PerKey[object, list[object]] = PerKey(make)
    a, b = _Key(), _Key()
    assert per_key(a) is per_key(a)
    assert per_key(b) is not per_key(a)
    assert per_key(None) is per_key(None)
    assert made == [a, b, None]


def test_concurrent_first_use_makes_one_value() -> None:
    calls: list[int] = []

    def make(_key: object) -> int:
        calls.append(1)
        return len(calls)

    per_key: PerKey[object, int] = PerKey(make)
    key = _Key()
    results: list[int] = []
    threads = [threading.Thread(target=lambda: results.append(per_key(key))) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results == [1] * 8
    assert calls == [1]
