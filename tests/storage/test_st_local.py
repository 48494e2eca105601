"""What only the local directory store does: atomic create-only files, paths, health."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from eventkit_core import TypedEvent
from eventkit_storage.local import LocalErrorStore, LocalEventStore

MakeEvent = Callable[..., TypedEvent]


async def test_no_temporary_files_left_and_leftovers_ignored(
    tmp_path: Path, make_event: MakeEvent
) -> None:
    store = LocalEventStore(tmp_path / "data")
    (stored,) = await store.store_batch([make_event(), make_event()])
    final = store.local_path(stored.path)
    assert final.is_file()
    assert [p.name for p in final.parent.iterdir()] == [final.name]
    assert final.stat().st_nlink == 1  # the temporary link is gone

    # a crash between writing and linking leaves a hidden temporary file: never listed
    (final.parent / f".{final.name}.abc.tmp").write_bytes(b"partial")
    assert [f.path for f in await store.list_files()] == [stored.path]


async def test_existing_file_is_kept(tmp_path: Path, make_event: MakeEvent) -> None:
    store = LocalEventStore(tmp_path)
    events = [make_event()]
    (stored,) = await store.store_batch(events)
    path = store.local_path(stored.path)
    path.write_bytes(b"written before the crash")
    (again,) = await store.store_batch(events)
    assert not again.created
    assert again.bytes == len(b"written before the crash")
    assert path.read_bytes() == b"written before the crash"


async def test_paths_stay_under_the_root(tmp_path: Path) -> None:
    store = LocalEventStore(tmp_path)
    for bad in ("../x.parquet", "/etc/passwd", "events//x", "events/./x"):
        with pytest.raises(ValueError, match="invalid"):
            store.local_path(bad)
        with pytest.raises(ValueError, match="invalid"):
            await store.read_bytes(bad)
    assert store.local_path("events/a/b.parquet") == tmp_path / "events" / "a" / "b.parquet"
    assert store.uri("events/a/b.parquet") == (tmp_path / "events/a/b.parquet").as_uri()


async def test_health_check(tmp_path: Path, make_event: MakeEvent) -> None:
    assert LocalEventStore(tmp_path / "not" / "yet").health_check()  # made on first write
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    broken = LocalEventStore(blocker / "data")
    assert not broken.health_check()
    with pytest.raises(OSError):
        await broken.store_batch([make_event()])
    assert not broken.health_check()
    errors = LocalErrorStore(tmp_path / "errors")
    assert errors.health_check()
    assert errors.root == tmp_path / "errors"


async def test_root_made_and_relative_root(
    tmp_path: Path, make_event: MakeEvent, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    store = LocalEventStore("eventkit-data")
    (stored,) = await store.store_batch([make_event()])
    assert (tmp_path / "eventkit-data" / stored.path).is_file()
    assert stored.uri.startswith((tmp_path / "eventkit-data").as_uri())
