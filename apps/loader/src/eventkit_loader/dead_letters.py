"""``eventkit-loader dead-letters``: what went to the dead letters, by stream and reason.

It reads the dead-letter Parquet files of the event store (local directory or GCS) directly, so
it works before any load pass and without a warehouse. Files are skipped by their hour folder
when ``since`` rules them out, then rows are filtered by ``received_at``.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final, Protocol

from eventkit_core import DeadLetter
from eventkit_storage.filestore import FileInfo
from eventkit_storage.parquet import read_dead_letters
from eventkit_storage.paths import hour_of, parse_hour

#: Sample payloads kept per group (the first ones received).
DEFAULT_SAMPLES: Final = 3
#: Longer payloads are cut in samples (the files keep them whole).
SAMPLE_CHARS: Final = 500


class DeadLetterFiles(Protocol):
    """The part of a ``FileErrorStore`` this needs."""

    async def list_files(
        self, kind: Any = None, since: datetime | None = None, *, stream: str | None = None
    ) -> list[FileInfo]: ...

    async def read_bytes(self, path: str) -> bytes: ...


@dataclass
class Group:
    """The dead letters of one stream with one reason code."""

    stream: str
    reason_code: str
    count: int = 0
    samples: list[dict[str, Any]] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "stream": self.stream,
            "reason_code": self.reason_code,
            "count": self.count,
            "samples": self.samples,
        }


@dataclass
class Summary:
    """Counts by (stream, reason code), ordered by stream then most frequent reason."""

    groups: list[Group]

    @property
    def total(self) -> int:
        return sum(g.count for g in self.groups)

    def as_dict(self) -> dict[str, Any]:
        return {"total": self.total, "groups": [g.as_dict() for g in self.groups]}


def _sample(letter: DeadLetter) -> dict[str, Any]:
    payload = letter.payload
    if len(payload) > SAMPLE_CHARS:
        payload = payload[:SAMPLE_CHARS] + "…"
    received = letter.received_at
    if received.tzinfo is None:
        received = received.replace(tzinfo=UTC)
    return {
        "message_id": letter.message_id,
        "received_at": received.astimezone(UTC).isoformat(),
        "reason": letter.reason,
        "payload": payload,
    }


def summarize_letters(
    letters: Iterable[DeadLetter],
    *,
    since: datetime | None = None,
    reason: str | None = None,
    samples: int = DEFAULT_SAMPLES,
) -> Summary:
    """Group ``letters`` (filtered by ``since`` and ``reason`` code) by stream and reason."""
    groups: dict[tuple[str, str], Group] = {}
    for letter in letters:
        if reason is not None and letter.reason_code != reason:
            continue
        if since is not None and _aware(letter.received_at) < since:
            continue
        key = (letter.stream, letter.reason_code)
        group = groups.get(key)
        if group is None:
            group = groups[key] = Group(letter.stream, letter.reason_code)
        group.count += 1
        if len(group.samples) < samples:
            group.samples.append(_sample(letter))
    ordered = sorted(groups.values(), key=lambda g: (g.stream, -g.count, g.reason_code))
    return Summary(ordered)


async def summarize(
    store: DeadLetterFiles,
    *,
    stream: str | None = None,
    since: datetime | None = None,
    reason: str | None = None,
    samples: int = DEFAULT_SAMPLES,
) -> Summary:
    """Read the dead-letter files of ``store`` and summarize them (see :func:`summarize_letters`)."""
    since = None if since is None else _aware(since)
    first_hour = None if since is None else hour_of(since)
    letters: list[DeadLetter] = []
    for info in await store.list_files("dead-letters", stream=stream):
        hour = parse_hour(info.path)
        if first_hour is not None and hour is not None and hour < first_hour:
            continue  # the whole folder is older than --since
        letters.extend(read_dead_letters(await store.read_bytes(info.path)))
    return summarize_letters(letters, since=since, reason=reason, samples=samples)


def _aware(moment: datetime) -> datetime:
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment


def text_lines(summary: Summary) -> list[str]:
    """The human-readable listing: one line per group, its samples indented under it."""
    if not summary.groups:
        return ["no dead letters"]
    lines = [f"{summary.total} dead letters in {len(summary.groups)} groups"]
    for group in summary.groups:
        lines.append(f"{group.stream:<20} {group.reason_code:<24} {group.count:>8}")
        for sample in group.samples:
            lines.append(f"    {sample['received_at']}  {sample['reason']}")
            lines.append(f"      {sample['payload']}")
    return lines
