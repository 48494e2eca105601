"""The backlog (status, lag) from a file listing and the warehouse ledger."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from eventkit_loader.service import compute_backlog

T0 = datetime(2024, 6, 1, 12, 0, tzinfo=UTC)


@dataclass(frozen=True)
class F:
    path: str
    uri: str
    size: int
    updated: datetime | None


def _file(i: int, minutes: int) -> F:
    path = f"events/events/2024/06/01/12/{i:04d}.parquet"
    return F(path, f"file:///d/{path}", 100 + i, T0 + timedelta(minutes=minutes))


def test_pending_is_listed_minus_loaded_oldest_first() -> None:
    files = [_file(1, 5), _file(2, 1), _file(3, 3), _file(4, 0)]
    backlog = compute_backlog(files, {files[3].uri}, {})
    assert backlog.listed == 4
    assert backlog.loaded == 1
    assert [f.path for f in backlog.pending] == [files[1].path, files[2].path, files[0].path]
    assert backlog.oldest_unloaded == (T0 + timedelta(minutes=1)).timestamp()
    now = (T0 + timedelta(minutes=11)).timestamp()
    assert backlog.lag_seconds(now) == 600.0
    info = backlog.as_dict(now)
    assert info["pending"] == 3
    assert info["pending_bytes"] == 101 + 102 + 103
    assert info["lag_seconds"] == 600.0


def test_ledger_of_paths_works_too() -> None:
    files = [_file(1, 0), _file(2, 0)]
    assert compute_backlog(files, {files[0].path}, {}).loaded == 1


def test_nothing_pending_means_no_lag() -> None:
    files = [_file(1, 0)]
    backlog = compute_backlog(files, {files[0].uri}, {})
    assert backlog.pending == ()
    assert backlog.lag_seconds() == 0.0
    assert backlog.as_dict()["oldest_unloaded"] is None


def test_failed_counts_only_files_still_pending() -> None:
    files = [_file(1, 0), _file(2, 0)]
    failed = {files[0].uri: 2, files[1].uri: 1, "file:///gone": 5}
    backlog = compute_backlog(files, {files[1].uri}, failed)
    assert backlog.failed == {files[0].uri: 2}


def test_naive_updated_times_are_utc() -> None:
    f = F("p", "u", 1, datetime(2024, 6, 1, 12, 0))
    assert compute_backlog([f], set(), {}).oldest_unloaded == T0.timestamp()
