"""The suppression list (eventkit_storage.suppression): salted hashes beside the data.

On a local directory and on the GCS emulator (fixtures ``gcs_emulator``, ``gcs_bucket``).
"""

from __future__ import annotations

from pathlib import Path

import pytest
from eventkit_storage.filestore import FileBackend
from eventkit_storage.gcs import GCSFiles
from eventkit_storage.local import LocalFiles
from eventkit_storage.suppression import (
    SuppressionList,
    candidate_ids,
    digest,
    payload_ids,
)

from tests.emulators import GcsEmulator

PERSON = [("user_id", "u-forgotten-1"), ("email", "zed@example.com")]


def _all_bytes(root: Path) -> bytes:
    return b"".join(p.read_bytes() for p in root.rglob("*") if p.is_file())


async def _roundtrip(backend: FileBackend) -> None:
    empty = await SuppressionList(backend).load()
    assert not empty
    assert len(empty) == 0
    assert not empty.matches(PERSON)

    writer = SuppressionList(backend)
    await writer.add(PERSON, "req-1")
    await writer.add([("anonymous_id", "a-9")], "req-2")
    # A second writer (another process) reads the same salt and the union of both lists.
    snapshot = await SuppressionList(backend).load()
    assert len(snapshot) == 3
    assert snapshot.matches([("email", "zed@example.com")])
    assert snapshot.matches([("anonymous_id", "a-9")])
    assert not snapshot.matches([("user_id", "someone-else"), ("anonymous_id", "u-forgotten-1")])
    # Create-only: writing a name again keeps the first list.
    await writer.add([("user_id", "late")], "req-1")
    assert not (await SuppressionList(backend).load()).matches([("user_id", "late")])


async def test_local_list_holds_hashes_never_ids(tmp_path: Path) -> None:
    backend = LocalFiles(tmp_path)
    await _roundtrip(backend)
    raw = _all_bytes(tmp_path)
    assert b"u-forgotten-1" not in raw
    assert b"zed@example.com" not in raw
    salt = (tmp_path / "suppression" / "salt").read_bytes()
    assert digest(salt, "user_id", "u-forgotten-1").encode() in raw


@pytest.mark.integration
async def test_gcs_list(gcs_emulator: GcsEmulator, gcs_bucket: str) -> None:
    backend = GCSFiles(gcs_bucket, prefix="p", client=gcs_emulator.client())
    await _roundtrip(backend)
    names = {f.path for f in await backend.scan("suppression/")}
    assert names == {"suppression/salt", "suppression/req-1.list", "suppression/req-2.list"}


async def test_reload_reads_new_lists(tmp_path: Path) -> None:
    backend = LocalFiles(tmp_path)
    reader = SuppressionList(backend)
    assert not await reader.load()
    await SuppressionList(backend).add(PERSON, "later")
    assert (await reader.load()).matches(PERSON)


def test_candidate_ids_cover_every_id_of_an_event() -> None:
    ids = candidate_ids(
        user_id=" u1 ",
        anonymous_id="null",
        previous_id="p1",
        traits='{"email": " Zed@Example.com "}',
        context={"externalIds": [{"id": "c-7", "type": "crm_id"}], "traits": {"email": "x@y.z"}},
    )
    assert ids == [
        ("user_id", "u1"),
        ("user_id", "p1"),
        ("anonymous_id", "p1"),
        ("crm_id", "c-7"),
        ("email", "zed@example.com"),
        ("email", "x@y.z"),
    ]
    assert payload_ids('{"userId": "u2", "anonymousId": "a2"}') == [
        ("user_id", "u2"),
        ("anonymous_id", "a2"),
    ]
    assert payload_ids("not json") == []
    assert payload_ids("[1]") == []


async def test_missing_salt_with_lists_is_a_clear_error(tmp_path: Path) -> None:
    backend = LocalFiles(tmp_path)
    await SuppressionList(backend).add(PERSON, "r")
    (tmp_path / "suppression" / "salt").unlink()
    with pytest.raises(ValueError, match="restore it from a backup"):
        await SuppressionList(backend).load()
