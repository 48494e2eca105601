"""Reading profiles: find a profile by any of its ids, its identities, traits and events.

Backend-neutral over a ``query(sql, params)`` callable with ``?`` placeholders (DuckDB's
connection or the loader's read-only ``query``; BigQuery's positional parameters, see
:func:`reader_for`) and a ``ref(name)`` that names a table. Used by ``eventkit-loader profile`` and
the Profile API; every read is a point lookup, never a scan of the whole history.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from eventkit_storage.identity import IdentityConfig
from eventkit_storage.warehouse import IDENTITY_FACTS_TABLE

__all__ = ["Profile", "ProfileEvent", "ProfileReader", "reader_for"]

Query = Callable[[str, Sequence[Any]], list[tuple[Any, ...]]]


def _duckdb_ref(name: str) -> str:
    return f'"{name}"'


#: profile_merges chains longer than this are a loop (they cannot be: a merged id never returns)
_MAX_HOPS = 64


@dataclass(frozen=True)
class ProfileEvent:
    message_id: str
    type: str
    event: str | None
    name: str | None
    timestamp: datetime
    properties: Any

    def as_dict(self) -> dict[str, Any]:
        return {
            "message_id": self.message_id,
            "type": self.type,
            "event": self.event,
            "name": self.name,
            "timestamp": self.timestamp.isoformat(),
            "properties": self.properties,
        }


@dataclass(frozen=True)
class Profile:
    profile_id: str
    user_id: str | None
    traits: dict[str, Any]
    first_seen: datetime
    last_seen: datetime
    event_count: int
    #: (id_type, id_value, first_seen), earliest first
    identities: tuple[tuple[str, str, datetime], ...]


def _json(value: Any) -> Any:
    if isinstance(value, str):
        try:
            return json.loads(value)
        except ValueError:
            return value
    return value


class ProfileReader:
    """Point reads of profiles through ``query``."""

    def __init__(
        self,
        query: Query,
        table: str = "raw_events",
        config: IdentityConfig | None = None,
        *,
        ref: Callable[[str], str] = _duckdb_ref,
        quote: str = '"',
    ) -> None:
        self._query = query
        self.table = table
        self.config = config or IdentityConfig()
        self._ref = ref
        self._ts = f"{quote}timestamp{quote}"

    def find(self, id_type: str, value: str) -> str | None:
        """The profile id of ``id_type:value`` (``profile_id:use_...`` follows merges), or None."""
        if id_type == "profile_id":
            return self._current(value)
        clean = self.config.clean(id_type, value)
        if clean is None:
            return None
        # One equality filter (DuckDB then reads its ART index on id_value); the type is
        # checked here, among the few ids that share a value.
        rows = self._query(
            f"SELECT id_type, profile_id FROM {self._ref('identities')} WHERE id_value = ?", [clean]
        )
        return next((str(pid) for t, pid in rows if t == id_type), None)

    def _current(self, profile_id: str) -> str | None:
        for _ in range(_MAX_HOPS):
            profiles = self._ref("profiles")
            if self._query(f"SELECT 1 FROM {profiles} WHERE profile_id = ?", [profile_id]):
                return profile_id
            rows = self._query(
                f"SELECT into_profile_id FROM {self._ref('profile_merges')} "
                "WHERE from_profile_id = ? ORDER BY merged_at DESC LIMIT 1",
                [profile_id],
            )
            if not rows:
                return None
            profile_id = str(rows[0][0])
        return None

    def profile(self, profile_id: str) -> Profile | None:
        rows = self._query(
            "SELECT profile_id, user_id, CAST(traits AS STRING), first_seen, last_seen, "
            f"event_count FROM {self._ref('profiles')} WHERE profile_id = ?",
            [profile_id],
        )
        if not rows:
            return None
        pid, user, traits, first, last, count = rows[0]
        ids = self.identities(profile_id)
        decoded = _json(traits)
        return Profile(
            profile_id=str(pid),
            user_id=user,
            traits=decoded if isinstance(decoded, dict) else {},
            first_seen=first,
            last_seen=last,
            event_count=int(count),
            identities=tuple(ids),
        )

    def identities(self, profile_id: str) -> list[tuple[str, str, Any]]:
        """(id_type, id_value, first_seen) of each id of the profile, oldest first."""
        rows = self._query(
            f"SELECT id_type, id_value, first_seen FROM {self._ref('identities')} "
            "WHERE profile_id = ? ORDER BY first_seen, id_type, id_value",
            [profile_id],
        )
        return [(str(t), str(v), f) for t, v, f in rows]

    def events(self, profile_id: str, limit: int = 10, offset: int = 0) -> list[ProfileEvent]:
        """The profile's events, newest first (by timestamp, then message_id)."""
        ts = self._ts
        ids = self._query(
            f"SELECT f.message_id FROM {self._ref(IDENTITY_FACTS_TABLE)} AS f "
            f"JOIN {self._ref('identities')} AS i "
            "ON i.id_type = f.id_type AND i.id_value = f.id_value WHERE i.profile_id = ? "
            f"ORDER BY f.{ts} DESC, f.message_id DESC LIMIT {int(limit)} OFFSET {int(offset)}",
            [profile_id],
        )
        if not ids:
            return []
        marks = ", ".join("?" for _ in ids)
        # One copy of each message (a file loaded twice holds it twice), chosen as the events
        # view chooses, on these message ids only (filtering first keeps it a point read).
        rows = self._query(
            f"SELECT message_id, type, event, name, {ts}, properties FROM {self._ref(self.table)} "
            f"WHERE message_id IN ({marks}) QUALIFY ROW_NUMBER() OVER ("
            f"PARTITION BY message_id ORDER BY received_at, {ts}, properties) = 1 "
            f"ORDER BY {ts} DESC, message_id DESC",
            [row[0] for row in ids],
        )
        return [ProfileEvent(str(m), str(t), e, n, ts, _json(p)) for m, t, e, n, ts, p in rows]


def reader_for(warehouse: Any, config: IdentityConfig | None = None) -> ProfileReader:
    """The reader of a warehouse loader: DuckDB's read-only ``query``, or BigQuery's dataset
    (positional query parameters; the loader's client, retries and job timeout)."""
    from eventkit_storage.duckdb import DuckDBWarehouseLoader

    if isinstance(warehouse, DuckDBWarehouseLoader):
        return ProfileReader(
            lambda sql, params: warehouse.query(sql, params)[1], warehouse.table, config
        )
    from eventkit_storage.identity_bigquery import bigquery_query

    base = warehouse.dataset_ref
    return ProfileReader(
        bigquery_query(warehouse),
        warehouse.table,
        config,
        ref=lambda name: f"`{base}.{name}`",
        quote="`",
    )
