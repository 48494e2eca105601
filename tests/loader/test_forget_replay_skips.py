"""`replay-dead-letters` never replays the dead letters of suppressed people."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from eventkit_storage.local import LocalFiles
from eventkit_storage.suppression import SuppressionList

from tests.loader.test_ld_replay import RELAXED, _dead_letters, _replay

pytestmark = pytest.mark.slow


def test_suppressed_dead_letters_are_not_replayed(tmp_path: Path) -> None:
    data = tmp_path / "d"
    _dead_letters(data)  # dl-1 (userId u1) and dl-2 (u2) pass the relaxed rules
    asyncio.run(SuppressionList(LocalFiles(data)).add([("user_id", "u1")], "r1"))
    relaxed = tmp_path / "relaxed.toml"
    relaxed.write_text(RELAXED)

    report = _replay(data, relaxed)
    assert report["suppressed"] == 1
    assert report["replayed"] == 1
    stored = b"".join(p.read_bytes() for p in (data / "events").rglob("*.parquet"))
    assert b"dl-2" in stored
    assert b"dl-1" not in stored
