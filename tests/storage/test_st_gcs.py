"""What only the GCS stores do, on their error paths: a missing bucket, a missing object.

Against fake-gcs-server with the official client (fixtures ``gcs_emulator``, ``gcs_bucket``).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable

import pytest
from eventkit_core import DeadLetter, TypedEvent
from eventkit_storage.gcs import GCSErrorStore, GCSEventStore
from eventkit_storage.parquet import read_events
from google.api_core.exceptions import NotFound

from tests.emulators import GcsEmulator

pytestmark = pytest.mark.integration

MakeEvent = Callable[..., TypedEvent]
MakeDeadLetter = Callable[..., DeadLetter]


def missing_bucket() -> str:
    return f"missing-{uuid.uuid4().hex[:12]}"


async def test_a_missing_bucket_fails_the_write_and_health_until_it_exists(
    gcs_emulator: GcsEmulator, make_event: MakeEvent
) -> None:
    bucket = missing_bucket()
    store = GCSEventStore(bucket, client=gcs_emulator.client())
    events = [make_event(), make_event()]
    assert store.health_check()  # nothing known yet: no blocking call in a health check

    with pytest.raises(NotFound):
        await store.store_batch(events)
    assert not store.health_check()  # the last write failed
    assert not (gcs_emulator.root / bucket).exists()  # nothing half-written anywhere

    gcs_emulator.create_bucket(bucket)
    (stored,) = await store.store_batch(events)  # the same batch, retried as the loader does
    assert stored.created
    assert store.health_check()
    table = read_events(await store.read_bytes(stored.path))
    assert table.column("message_id").to_pylist() == [e.message_id for e in events]


async def test_a_missing_bucket_fails_dead_letters_and_listing(
    gcs_emulator: GcsEmulator, make_dead_letter: MakeDeadLetter
) -> None:
    bucket = missing_bucket()
    errors = GCSErrorStore(bucket, client=gcs_emulator.client())
    with pytest.raises(NotFound):
        await errors.store_errors([make_dead_letter()])
    assert not errors.health_check()
    with pytest.raises(NotFound):
        await GCSEventStore(bucket, client=gcs_emulator.client()).list_files()


async def test_a_missing_object_reads_as_file_not_found(
    gcs_emulator: GcsEmulator, gcs_bucket: str, make_event: MakeEvent
) -> None:
    store = GCSEventStore(gcs_bucket, prefix="p", client=gcs_emulator.client())
    (stored,) = await store.store_batch([make_event()])
    gone = stored.path.replace(".parquet", "-gone.parquet")

    with pytest.raises(FileNotFoundError, match=f"gs://{gcs_bucket}/p/{gone}"):
        await store.read_bytes(gone)
    with pytest.raises(FileNotFoundError):
        await store.read_table(gone)
    # A missing object is the reader's problem, not the store's: writes stay healthy.
    assert store.health_check()
    assert [f.path for f in await store.list_files()] == [stored.path]


async def test_a_missing_bucket_reads_as_file_not_found(gcs_emulator: GcsEmulator) -> None:
    bucket = missing_bucket()
    store = GCSEventStore(bucket, client=gcs_emulator.client())
    with pytest.raises(FileNotFoundError, match=f"gs://{bucket}/events/x.parquet"):
        await store.read_bytes("events/x.parquet")
