"""Replaying dead letters through the current adapters and rules file, once.

A dead letter is identified by its content (stream, payload, received_at, messageId, source and
batch fields) — not by its reason, which is what changes when rules are relaxed. Those that now
pass are stored as events with the EventStore (file names come from their messageIds, so storing
the same events again writes the same file), and only then recorded in the replay ledger: a replay
killed in between stores the same file again next time, and the warehouse dedupes on message_id.
Dead letters without a messageId get one derived from their content, so a replay is repeatable.
"""

from __future__ import annotations

import hashlib
import logging
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from eventkit_core import DeadLetter, SchemaAdapter, StoredFile, TypedEvent
from eventkit_storage.suppression import Suppressed, payload_ids

from eventkit_loader.state import LoaderState

log = logging.getLogger("eventkit_loader")

STORE_CHUNK = 10_000


class DeadLetterSource(Protocol):
    def read_errors(
        self, stream: str, since: datetime | None = None
    ) -> AsyncIterator[DeadLetter]: ...


class EventSink(Protocol):
    async def store_batch(self, events: Sequence[TypedEvent]) -> Sequence[StoredFile]: ...


def dead_letter_key(dl: DeadLetter) -> str:
    """A stable identity of a dead letter's content (its reason excluded)."""
    h = hashlib.sha256()
    for part in (
        dl.stream,
        dl.received_at.isoformat(),
        dl.payload,
        dl.message_id or "",
        dl.source,
        dl.batch_context or "",
        dl.batch_integrations or "",
        dl.batch_sent_at or "",
    ):
        data = part.encode("utf-8", "surrogatepass")
        h.update(len(data).to_bytes(8, "little"))
        h.update(data)
    return h.hexdigest()


def _replay_message_id(key: str) -> str:
    digest = uuid.uuid5(uuid.NAMESPACE_URL, f"eventkit-replay/{key}").bytes
    return str(uuid.UUID(bytes=digest, version=4))


@dataclass
class ReplayReport:
    stream: str
    read: int = 0
    #: Dead letters stored as events by this replay.
    replayed: int = 0
    #: Dead letters replayed by an earlier run (skipped).
    already_replayed: int = 0
    #: Same content read more than once (e.g. a dead-letter file written twice).
    duplicates: int = 0
    #: Dead letters of suppressed people (``eventkit-loader forget``): never replayed.
    suppressed: int = 0
    #: reason code -> dead letters that still fail.
    still_failing: Counter[str] = field(default_factory=Counter)
    files: list[str] = field(default_factory=list)
    dry_run: bool = False

    def as_dict(self) -> dict[str, Any]:
        return {
            "stream": self.stream,
            "read": self.read,
            "replayed": self.replayed,
            "already_replayed": self.already_replayed,
            "duplicates": self.duplicates,
            "suppressed": self.suppressed,
            "still_failing": sum(self.still_failing.values()),
            "still_failing_by_reason": dict(self.still_failing.most_common()),
            "files": self.files,
            "dry_run": self.dry_run,
        }


async def replay_dead_letters(
    stream: str,
    *,
    errors: DeadLetterSource,
    events: EventSink,
    adapter: SchemaAdapter,
    state: LoaderState,
    since: datetime | None = None,
    dry_run: bool = False,
    suppressed: Suppressed | None = None,
) -> ReplayReport:
    """Replay the dead letters of ``stream`` (received since ``since``).

    ``adapter``: what judges them again, normally the collector's
    (:class:`eventkit_validators.EndpointAdapter`, which picks the adapter by endpoint).
    """
    report = ReplayReport(stream=stream, dry_run=dry_run)
    letters: dict[str, DeadLetter] = {}
    async for dl in errors.read_errors(stream, since):
        report.read += 1
        key = dead_letter_key(dl)
        if key in letters:
            report.duplicates += 1
        else:
            letters[key] = dl
    done = state.replayed_keys(list(letters))
    report.already_replayed = len(done)

    passing: list[tuple[str, TypedEvent]] = []
    for key, dl in letters.items():
        if key in done:
            continue
        if suppressed and suppressed.matches(payload_ids(dl.payload)):
            report.suppressed += 1
            continue
        raw = dl.to_raw()
        if raw.message_id is None:
            raw.message_id = _replay_message_id(key)
        result = adapter.adapt(raw)
        if result.ok and result.event is not None:
            passing.append((key, result.event))
        else:
            code = result.error.code if result.error is not None else "unknown"
            report.still_failing[code] += 1

    if dry_run:
        report.replayed = len(passing)
        return report
    for start in range(0, len(passing), STORE_CHUNK):
        chunk = passing[start : start + STORE_CHUNK]
        stored = await events.store_batch([event for _, event in chunk])
        report.files += [f.path for f in stored]
        state.record_replayed((key, stream, event.message_id, None) for key, event in chunk)
        report.replayed += len(chunk)
    log.info(
        "replay %s: %d read, %d replayed, %d already replayed, %d still failing",
        stream,
        report.read,
        report.replayed,
        report.already_replayed,
        sum(report.still_failing.values()),
    )
    return report
