"""Where files go and what they are called.

Layout (relative to a store's root: a directory, or ``gs://<bucket>/<prefix>``)::

    events/<stream>/YYYY/MM/DD/HH/<name>.parquet
    dead-letters/<stream>/YYYY/MM/DD/HH/<name>.parquet

``HH`` is the UTC hour of ``received_at``. Names come from the source entries a file holds
(:func:`file_name`), so re-flushing the same entries after a crash rewrites the same name and a
create-only store sees that the file is already there.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Final, Literal

from eventkit_core import ConfigurationError, DeadLetter, TypedEvent, validate_stream

Kind = Literal["events", "dead-letters"]
KINDS: Final[tuple[Kind, ...]] = ("events", "dead-letters")
SUFFIX: Final = ".parquet"
_DIGEST_BYTES: Final = 8  # 16 hex characters


def hour_of(moment: datetime) -> datetime:
    """``moment`` in UTC, truncated to the hour (naive datetimes are taken as UTC)."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).replace(minute=0, second=0, microsecond=0)


def hour_prefix(kind: Kind, stream: str, hour: datetime) -> str:
    """``<kind>/<stream>/YYYY/MM/DD/HH``: the folder of one stream's hour."""
    if kind not in KINDS:
        raise ConfigurationError(f"kind {kind!r} is invalid: use one of {', '.join(KINDS)}")
    h = hour_of(hour)
    return f"{kind}/{validate_stream(stream)}/{h:%Y/%m/%d/%H}"


def event_path(kind: Kind, stream: str, hour: datetime, name: str) -> str:
    """``<kind>/<stream>/YYYY/MM/DD/HH/<name>.parquet`` (HH: the UTC hour of ``hour``).

    The stream is validated (it becomes a path segment); ``name`` must be a plain file name
    such as :func:`file_name` makes.
    """
    if not name or "/" in name or "\\" in name or name.startswith("."):
        raise ConfigurationError(
            f"file name {name!r} is invalid: use a plain name such as file_name() makes"
        )
    return f"{hour_prefix(kind, stream, hour)}/{name}{SUFFIX}"


def parse_hour(path: str) -> datetime | None:
    """The hour encoded in a path made by :func:`event_path`, or ``None`` if it has none."""
    parts = path.split("/")
    if len(parts) < 7:
        return None
    try:
        year, month, day, hour = (int(p) for p in parts[-5:-1])
        return datetime(year, month, day, hour, tzinfo=UTC)
    except ValueError:
        return None


def file_name(items: Sequence[TypedEvent] | Sequence[DeadLetter]) -> str:
    """A file name determined by the source entries of ``items`` (not by their order).

    When every item has an ``int`` source id (ring-buffer ids): ``{first:012d}-{last:012d}-{digest}``
    with the lowest and highest id; otherwise the digest alone. The digest is 16 hex characters
    of BLAKE2b over the sorted message ids (for a dead letter without one, its payload text).
    """
    if not items:
        raise ConfigurationError("file_name() needs at least one event or dead letter")
    keys = sorted(_key(item) for item in items)
    digest = hashlib.blake2b(digest_size=_DIGEST_BYTES)
    for key in keys:
        digest.update(len(key).to_bytes(8, "little"))
        digest.update(key)
    ids = [item.source_id for item in items]
    if all(type(i) is int for i in ids):
        ints: list[int] = ids  # type: ignore[assignment]
        return f"{min(ints):012d}-{max(ints):012d}-{digest.hexdigest()}"
    return digest.hexdigest()


def _key(item: TypedEvent | DeadLetter) -> bytes:
    if item.message_id is not None:
        return item.message_id.encode()
    assert isinstance(item, DeadLetter)
    return b"\x00" + item.payload.encode()
