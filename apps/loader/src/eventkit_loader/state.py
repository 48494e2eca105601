"""The loader's own small state: files that failed to load, and the replay ledger.

The ledger of *loaded* files belongs to the warehouse (``loaded_files()``): a load and its ledger
entry are recorded together there. This file only keeps what the warehouse does not:

- ``failed_files``: stored files whose last load failed (for ``status``; they are retried by every
  pass and leave this table when they load);
- ``replayed``: dead letters that a replay stored as events, keyed by their content, so replaying
  the same dead letters again stores nothing new.

It is a SQLite file (``<data-dir>/loader-state.sqlite``), WAL mode, one short transaction per
write: a process killed at any moment leaves it consistent.
"""

from __future__ import annotations

import contextlib
import sqlite3
import time
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

_SCHEMA = """
CREATE TABLE IF NOT EXISTS failed_files (
    uri TEXT PRIMARY KEY,
    attempts INTEGER NOT NULL,
    first_failed_at REAL NOT NULL,
    last_failed_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS replayed (
    dead_letter_key TEXT PRIMARY KEY,
    stream TEXT NOT NULL,
    message_id TEXT,
    stored_path TEXT,
    replayed_at REAL NOT NULL
);
"""


class LoaderState:
    """Access to ``loader-state.sqlite``; opens the file per call (safe across processes)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    @contextlib.contextmanager
    def _connect(self, write: bool) -> Iterator[sqlite3.Connection]:
        if not write and not self.path.exists():
            conn = sqlite3.connect(":memory:")
        else:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(self.path, timeout=30)
            conn.execute("PRAGMA journal_mode=WAL")
        try:
            conn.executescript(_SCHEMA)
            with conn:
                yield conn
        finally:
            conn.close()

    # -- failed files ---------------------------------------------------------------------

    def record_load(self, loaded: Iterable[str], failed: Iterable[str]) -> None:
        """Forget ``loaded`` files' failures; count one more failure for each of ``failed``."""
        now = time.time()
        with self._connect(write=True) as conn:
            conn.executemany("DELETE FROM failed_files WHERE uri = ?", [(u,) for u in loaded])
            conn.executemany(
                "INSERT INTO failed_files (uri, attempts, first_failed_at, last_failed_at) "
                "VALUES (?, 1, ?, ?) ON CONFLICT(uri) DO UPDATE SET "
                "attempts = attempts + 1, last_failed_at = excluded.last_failed_at",
                [(u, now, now) for u in failed],
            )

    def failed_files(self) -> dict[str, int]:
        """uri -> failed attempts, for files whose last load failed."""
        with self._connect(write=False) as conn:
            return dict(conn.execute("SELECT uri, attempts FROM failed_files").fetchall())

    # -- replay ledger --------------------------------------------------------------------

    def replayed_keys(self, keys: Sequence[str]) -> set[str]:
        """Those of ``keys`` already replayed."""
        found: set[str] = set()
        with self._connect(write=False) as conn:
            for start in range(0, len(keys), 500):
                chunk = keys[start : start + 500]
                marks = ",".join("?" * len(chunk))
                rows = conn.execute(
                    f"SELECT dead_letter_key FROM replayed WHERE dead_letter_key IN ({marks})",
                    chunk,
                ).fetchall()
                found.update(r[0] for r in rows)
        return found

    def record_replayed(self, entries: Iterable[tuple[str, str, str | None, str | None]]) -> None:
        """Record ``(key, stream, message_id, stored_path)`` of dead letters stored as events."""
        now = time.time()
        with self._connect(write=True) as conn:
            conn.executemany(
                "INSERT OR IGNORE INTO replayed "
                "(dead_letter_key, stream, message_id, stored_path, replayed_at) "
                "VALUES (?, ?, ?, ?, ?)",
                [(*entry, now) for entry in entries],
            )

    def replayed_count(self, stream: str | None = None) -> int:
        with self._connect(write=False) as conn:
            if stream is None:
                row = conn.execute("SELECT count(*) FROM replayed").fetchone()
            else:
                row = conn.execute(
                    "SELECT count(*) FROM replayed WHERE stream = ?", (stream,)
                ).fetchone()
        return int(row[0])
