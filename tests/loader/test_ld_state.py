"""The loader's state file: failed files and the replay ledger, across processes."""

from __future__ import annotations

from pathlib import Path

from eventkit_loader.state import LoaderState


def test_reading_a_missing_state_creates_nothing(tmp_path: Path) -> None:
    state = LoaderState(tmp_path / "d" / "loader-state.sqlite")
    assert state.failed_files() == {}
    assert state.replayed_keys(["a"]) == set()
    assert not (tmp_path / "d").exists()


def test_failures_count_up_and_clear_when_loaded(tmp_path: Path) -> None:
    path = tmp_path / "loader-state.sqlite"
    LoaderState(path).record_load(loaded=["u0"], failed=["u1", "u2"])
    LoaderState(path).record_load(loaded=[], failed=["u1"])
    assert LoaderState(path).failed_files() == {"u1": 2, "u2": 1}
    LoaderState(path).record_load(loaded=["u1"], failed=[])
    assert LoaderState(path).failed_files() == {"u2": 1}


def test_replay_ledger_remembers_keys(tmp_path: Path) -> None:
    state = LoaderState(tmp_path / "s.sqlite")
    keys = [f"k{i}" for i in range(1200)]
    state.record_replayed((k, "events", None, None) for k in keys[:700])
    state.record_replayed([("k0", "events", "m", None)])  # again: ignored
    assert state.replayed_keys(keys) == set(keys[:700])
    assert state.replayed_count() == 700
    assert state.replayed_count("other") == 0
