"""Ring-buffer shards: one SQLite file per server process, owned through a locked file.

With ``--workers N`` each process owns ``ring/<n>.db``. Ownership is an ``flock`` on
``ring/<n>.lock`` held for the life of the process: the kernel drops it when the process dies, so a
restarted worker can claim the shard of the one that died and deliver what it left.
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Final

from eventkit_core import EventkitError

#: Shards tried before giving up (far more than any sensible ``--workers``).
MAX_SHARDS: Final = 1024


class NoFreeShardError(EventkitError, RuntimeError):
    """Every ring-buffer shard under the data dir is owned by a running process."""

    code = "no_free_shard"


class ShardLock:
    """An owned shard: its index, its ring-buffer file, and the lock that keeps it ours."""

    def __init__(self, ring_dir: Path, index: int, fd: int) -> None:
        self.index = index
        self.path = ring_dir / f"{index}.db"
        self._fd: int | None = fd

    def release(self) -> None:
        """Give the shard up (idempotent)."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


def try_lock(ring_dir: Path, index: int) -> ShardLock | None:
    """Lock shard ``index`` if no other process holds it; ``None`` when one does."""
    ring_dir.mkdir(parents=True, exist_ok=True)
    fd = os.open(ring_dir / f"{index}.lock", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        return None
    return ShardLock(ring_dir, index, fd)


def claim_shard(ring_dir: Path, preferred: int | None = None) -> ShardLock:
    """The first free shard from ``preferred`` (default 0) on.

    A restarted worker takes the first free one, so it picks up that shard's leftovers.
    """
    for index in range(preferred or 0, MAX_SHARDS):
        lock = try_lock(ring_dir, index)
        if lock is not None:
            return lock
    raise NoFreeShardError(
        f"no free ring-buffer shard under {ring_dir}: {MAX_SHARDS} processes own one; "
        "stop some, or give this one its own EVENTKIT_DATA_DIR"
    )


def orphan_shards(ring_dir: Path, workers: int) -> Iterator[int]:
    """Indexes of shard files beyond ``workers`` (left by a run with more workers)."""
    for path in sorted(ring_dir.glob("*.db")):
        if path.stem.isdigit() and int(path.stem) >= workers:
            yield int(path.stem)
