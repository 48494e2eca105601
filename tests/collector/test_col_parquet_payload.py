"""EVENTKIT_PARQUET_PAYLOAD: what the collector's Parquet files keep in ``payload``."""

from __future__ import annotations

from pathlib import Path

import msgspec
import pytest
from eventkit_collector.settings import Settings
from eventkit_collector.wiring import make_stores
from eventkit_core import RawEvent
from eventkit_storage import FileEventStore
from eventkit_storage.parquet import read_events
from eventkit_validators import EndpointAdapter
from pydantic import ValidationError

BODY = b'{"type":"track","event":"Clicked","userId":"u1","writeKey":"wk","properties":{"a":1}}'


async def stored_row(settings: Settings) -> dict[str, object]:
    events, _ = make_stores(settings)
    assert isinstance(events, FileEventStore)
    result = EndpointAdapter().adapt(RawEvent(payload=msgspec.Raw(BODY), source="track"))
    assert result.event is not None
    (stored,) = await events.store_batch([result.event])
    rows: list[dict[str, object]] = read_events(await events.read_bytes(stored.path)).to_pylist()
    return rows[0]


async def test_the_default_keeps_only_the_fields_no_column_holds(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv("EVENTKIT_PARQUET_PAYLOAD", raising=False)
    settings = Settings(eventkit_data_dir=tmp_path)
    assert settings.eventkit_parquet_payload == "extras"
    row = await stored_row(settings)
    assert (row["payload"], row["extras"]) == (None, '{"writeKey":"wk"}')


async def test_full_keeps_the_whole_original_object(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("EVENTKIT_PARQUET_PAYLOAD", "full")
    row = await stored_row(Settings(eventkit_data_dir=tmp_path))
    assert (row["payload"], row["extras"]) == (BODY.decode(), '{"writeKey":"wk"}')


def test_other_values_are_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EVENTKIT_PARQUET_PAYLOAD", "everything")
    with pytest.raises(ValidationError, match="eventkit_parquet_payload"):
        Settings()
