"""Identity resolution: the edges events draw between ids, the rules, and deterministic profiles.

Backend-neutral. A warehouse plugs in through :class:`IdentityStore` (read the stored edges and
facts of some ids, write one chunk's results); :func:`run_identity_pass` does the rest:

1. read events not processed yet (in chunks, each committed on its own);
2. :func:`extract` each event's ids and edges (one small function: other sources' adapters map
   their ids -- PostHog's ``$anon_distinct_id``, Amplitude's ``device_id`` -- onto the same
   :class:`EventIds` and contribute edges the same way);
3. find every stored component the chunk touches (all edges, rejected ones included, so a
   component is recomputed whole) and :func:`resolve` it from scratch: edges in canonical order
   ``(timestamp, message_id, ...)``, blocked values never link, per-id-type limits (default: one
   ``user_id`` per profile, except through ``alias``);
4. write identities, profiles, merges and rejections of those components.

Because a component is always recomputed from all of its stored edges in one canonical order, the
same events in any arrival order and split over any number of passes give the same result.
"""

from __future__ import annotations

import hashlib
import json
import operator
import re
from collections import defaultdict
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final, NamedTuple, Protocol

from eventkit_core.errors import EventkitError

__all__ = [
    "DEFAULT_BLOCKED_VALUES",
    "EDGE_KINDS",
    "ChunkResult",
    "Edge",
    "EventFacts",
    "EventIds",
    "Extracted",
    "IdentityConfig",
    "IdentityError",
    "IdentityRow",
    "IdentityStore",
    "PassStats",
    "ProfileRow",
    "Rejection",
    "StoredFacts",
    "event_ids_from_typed",
    "extract",
    "parse_identity",
    "profile_id_of",
    "resolve",
    "run_identity_pass",
]

Identity = tuple[str, str]  # (id_type, id_value)

EDGE_KINDS: Final = ("same_event", "alias", "trait", "external_id")

#: Values that never link two ids (compared trimmed and lower-cased; quoted forms too).
DEFAULT_BLOCKED_VALUES: Final = frozenset(
    {
        "",
        "null",
        "undefined",
        "anonymous",
        "unknown",
        "guest",
        "none",
        "nan",
        "0",
        "-1",
        "[object object]",
        "true",
        "false",
    }
)
_ZEROS_OR_DASHES = re.compile(r"[0-]+")
#: External id types that name our own id columns (Segment writes both spellings).
_EXTERNAL_ALIASES: Final = {
    "user_id": "user_id",
    "userid": "user_id",
    "anonymous_id": "anonymous_id",
    "anonymousid": "anonymous_id",
}


class IdentityError(EventkitError, ValueError):
    """An identity that cannot be looked up (``type:value`` malformed)."""


@dataclass(frozen=True)
class IdentityConfig:
    """The rules. ``limits``: the most ids of a type one profile holds outside ``alias``."""

    blocked_values: frozenset[str] = DEFAULT_BLOCKED_VALUES
    trait_identifiers: tuple[str, ...] = ("email",)
    limits: Mapping[str, int] = field(default_factory=lambda: {"user_id": 1})

    def clean(self, id_type: str, value: Any) -> str | None:
        """The stored form of an id, or None when it is missing or blocked."""
        if isinstance(value, bool) or not isinstance(value, str | int | float):
            return None
        text = str(value).strip()
        if id_type in self.trait_identifiers or id_type == "email":
            text = text.lower()  # emails and other trait ids: case does not tell people apart
        return None if self.is_blocked(text) else text

    def is_blocked(self, text: str) -> bool:
        low = text.strip().lower()
        if len(low) >= 2 and low[0] == low[-1] and low[0] in "\"'":
            low = low[1:-1].strip()
        return low in self.blocked_values or bool(_ZEROS_OR_DASHES.fullmatch(low))


class EventIds(NamedTuple):
    """What identity resolution needs of one event (any source maps onto this)."""

    message_id: str
    type: str
    timestamp: datetime
    user_id: str | None = None
    anonymous_id: str | None = None
    previous_id: str | None = None
    #: identify traits (a JSON object as text or decoded), else None
    traits: Any = None
    #: Segment's ``context.externalIds``: ``[{"id", "type"}]`` (text or decoded), else None
    external_ids: Any = None


class Edge(NamedTuple):
    """One link between two ids; sides are ordered so that equal edges compare equal."""

    id_type_1: str
    id_value_1: str
    id_type_2: str
    id_value_2: str
    kind: str
    message_id: str
    timestamp: datetime

    @property
    def one(self) -> Identity:
        return (self.id_type_1, self.id_value_1)

    @property
    def two(self) -> Identity:
        return (self.id_type_2, self.id_value_2)

    def order_key(self) -> tuple[Any, ...]:
        """The canonical order: event timestamp, then message_id (the rest breaks ties)."""
        key: tuple[Any, ...] = _ORDER(self)
        return key


#: :meth:`Edge.order_key` as one C call (timestamp, message_id, kind, then both sides): the
#: pass sorts every edge of the components it touches.
_ORDER: Final = operator.itemgetter(6, 5, 4, 0, 1, 2, 3)


class Rejection(NamedTuple):
    id_type_1: str
    id_value_1: str
    id_type_2: str | None
    id_value_2: str | None
    rule: str
    message_id: str
    seen_at: datetime


class EventFacts(NamedTuple):
    """The event as the pass keeps it: the id it is counted under, and identify traits."""

    message_id: str
    type: str
    timestamp: datetime
    id_type: str | None
    id_value: str | None
    traits: str | None


class Extracted(NamedTuple):
    facts: EventFacts
    ids: tuple[Identity, ...]
    edges: tuple[Edge, ...]
    blocked: tuple[Rejection, ...]


def _edge(a: Identity, b: Identity, kind: str, event: EventIds) -> Edge:
    one, two = sorted((a, b))
    return Edge(one[0], one[1], two[0], two[1], kind, event.message_id, event.timestamp)


def _decode(value: Any) -> Any:
    if isinstance(value, bytes | str):
        try:
            return json.loads(value)
        except ValueError:
            return None
    return value


def _others(event: EventIds) -> list[tuple[str, Any, str]]:
    """Trait and external ids: (id_type, raw value, edge kind)."""
    found: list[tuple[str, Any, str]] = []
    traits = _decode(event.traits) if event.type == "identify" else None
    if isinstance(traits, dict):
        found += [(name, traits.get(name), "trait") for name in sorted(traits)]
    externals = _decode(event.external_ids)
    if isinstance(externals, list):
        for item in externals:
            if isinstance(item, dict) and isinstance(item.get("type"), str):
                kind = item["type"].strip().lower()
                found.append((_EXTERNAL_ALIASES.get(kind, kind), item.get("id"), "external_id"))
    return found


def extract(event: EventIds, config: IdentityConfig | None = None) -> Extracted:
    """The ids and edges of one event.

    - ``anonymousId`` with ``userId`` (any type): ``same_event``;
    - alias: ``previousId`` <-> ``userId`` (``alias``). previousId is taken as an anonymous id
      when it equals the event's anonymousId (analytics.js sends it so), else as a user id;
    - the configured traits of an identify (default ``email``): ``trait``;
    - ``context.externalIds``: ``external_id`` (types ``user_id`` / ``anonymous_id`` are ours).

    Every id links to the event's own id (userId, else anonymousId). Blocked values make no
    edge; they are returned as rejections with rule ``blocked_value``.
    """
    config = config or IdentityConfig()
    blocked: list[Rejection] = []
    candidates: list[tuple[str, Any, str]] = [
        ("user_id", event.user_id, "same_event"),
        ("anonymous_id", event.anonymous_id, "same_event"),
    ]
    if event.type == "alias" and event.previous_id is not None:
        prev_type = "anonymous_id" if event.previous_id == event.anonymous_id else "user_id"
        candidates.append((prev_type, event.previous_id, "alias"))
    candidates += [c for c in _others(event) if c[2] != "trait" or c[0] in config.trait_identifiers]
    ids: list[tuple[Identity, str]] = []
    for id_type, raw, kind in candidates:
        if raw is None:
            continue
        value = config.clean(id_type, raw)
        if value is None:
            text = raw if isinstance(raw, str) else json.dumps(raw)
            blocked.append(
                Rejection(
                    id_type, text, None, None, "blocked_value", event.message_id, event.timestamp
                )
            )
        elif (id_type, value) not in [i for i, _ in ids]:
            ids.append(((id_type, value), kind))
    primary = ids[0][0] if ids else None
    edges = tuple(_edge(primary, ident, kind, event) for ident, kind in ids[1:] if primary)
    traits = event.traits if event.type == "identify" else None
    if traits is not None and not isinstance(traits, str):
        traits = json.dumps(traits)
    facts = EventFacts(
        event.message_id,
        event.type,
        event.timestamp,
        primary[0] if primary else None,
        primary[1] if primary else None,
        traits,
    )
    return Extracted(facts, tuple(i for i, _ in ids), edges, tuple(blocked))


def event_ids_from_typed(event: Any) -> EventIds:
    """:class:`EventIds` of an ``eventkit_core.TypedEvent`` (its JSON fields are msgspec.Raw)."""
    context = _decode(bytes(event.context)) if event.context is not None else None
    return EventIds(
        message_id=event.message_id,
        type=event.type,
        timestamp=event.timestamp,
        user_id=event.user_id,
        anonymous_id=event.anonymous_id,
        previous_id=event.previous_id,
        traits=bytes(event.traits).decode() if event.traits is not None else None,
        external_ids=context.get("externalIds") if isinstance(context, dict) else None,
    )


def parse_identity(text: str) -> Identity:
    """``"user_id:u1"`` -> ``("user_id", "u1")`` (split on the first ``:``)."""
    id_type, sep, value = text.partition(":")
    if not sep or not id_type.strip() or not value:
        raise IdentityError(
            f"{text!r} is not an id: use TYPE:VALUE, e.g. user_id:u1, anonymous_id:a1 or "
            "email:x@example.com"
        )
    return id_type.strip(), value


def profile_id_of(identity: Identity) -> str:
    """The id of the profile whose earliest identity is ``identity`` (stable, Segment-shaped)."""
    digest = hashlib.sha256(f"{identity[0]}:{identity[1]}".encode()).hexdigest()
    return "use_" + digest[:28]


# ---------------------------------------------------------------------------------- resolve


class _Sets:
    """Union-find whose roots know which limited ids their set holds."""

    def __init__(self, limits: Mapping[str, int]) -> None:
        self.parent: dict[Identity, Identity] = {}
        self.limited: dict[Identity, dict[str, set[str]]] = {}
        self.limits = limits

    def add(self, ident: Identity) -> None:
        if ident not in self.parent:
            self.parent[ident] = ident
            self.limited[ident] = {ident[0]: {ident[1]}} if ident[0] in self.limits else {}

    def find(self, ident: Identity) -> Identity:
        root = ident
        while self.parent[root] != root:
            root = self.parent[root]
        while self.parent[ident] != root:  # path compression
            self.parent[ident], ident = root, self.parent[ident]
        return root

    def broken_limit(self, a: Identity, b: Identity) -> str | None:
        la, lb = self.limited[a], self.limited[b]
        for id_type, limit in sorted(self.limits.items()):
            if len(la.get(id_type, set()) | lb.get(id_type, set())) > limit:
                return id_type
        return None

    def union(self, a: Identity, b: Identity) -> None:
        small, big = sorted((a, b))  # deterministic root choice
        self.parent[big] = small
        for id_type, values in self.limited.pop(big).items():
            self.limited[small].setdefault(id_type, set()).update(values)


def resolve(
    ids: Iterable[Identity], edges: Iterable[Edge], config: IdentityConfig | None = None
) -> tuple[dict[Identity, Identity], list[Rejection]]:
    """Group ``ids`` by applying ``edges`` in canonical order; return (id -> group root, the
    edges refused by a limit as rejections with rule ``limit:<id_type>``)."""
    config = config or IdentityConfig()
    sets = _Sets(config.limits)
    for ident in ids:
        sets.add(ident)
    rejected: list[Rejection] = []
    for edge in sorted(set(edges), key=_ORDER):
        one, two = (edge[0], edge[1]), (edge[2], edge[3])
        sets.add(one)
        sets.add(two)
        a, b = sets.find(one), sets.find(two)
        if a == b:
            continue
        broken = None if edge.kind == "alias" else sets.broken_limit(a, b)
        if broken is not None:
            rejected.append(
                Rejection(*edge[:4], f"limit:{broken}", edge.message_id, edge.timestamp)
            )
            continue
        sets.union(a, b)
    return {ident: sets.find(ident) for ident in sets.parent}, rejected


# ------------------------------------------------------------------------------------ rows


class IdentityRow(NamedTuple):
    id_type: str
    id_value: str
    profile_id: str
    first_seen: datetime
    last_seen: datetime


class ProfileRow(NamedTuple):
    profile_id: str
    user_id: str | None
    anonymous_ids: tuple[str, ...]
    traits: str  # a JSON object
    first_seen: datetime
    last_seen: datetime
    event_count: int


class Merge(NamedTuple):
    from_profile_id: str
    into_profile_id: str
    merged_at: datetime
    message_id: str


@dataclass
class StoredFacts:
    """What the store holds about some ids (written by earlier chunks)."""

    #: id -> (profile_id, first_seen, last_seen)
    identities: dict[Identity, tuple[str, datetime, datetime]] = field(default_factory=dict)
    #: id -> events counted under it
    counts: dict[Identity, int] = field(default_factory=dict)
    #: identify events counted under these ids that carry traits
    identifies: list[EventFacts] = field(default_factory=list)


@dataclass
class ChunkResult:
    """Everything one chunk writes. The store replaces, for ``component_ids``, their identities
    and limit rejections, and the profiles ``old_profile_ids`` and the new ones; for ``events`` (by
    message_id) their facts, edges and blocked-value rejections.

    ``stored_identities`` is what the store held of ``component_ids`` when the chunk was
    computed: :meth:`identity_changes` writes only the rows that differ from it."""

    events: list[EventFacts]
    edges: list[Edge]
    blocked: list[Rejection]
    component_ids: list[Identity]
    old_profile_ids: list[str]
    identities: list[IdentityRow]
    profiles: list[ProfileRow]
    rejections: list[Rejection]
    merges: list[Merge]
    stored_identities: Mapping[Identity, tuple[str, datetime, datetime]] = field(
        default_factory=dict
    )

    def identity_changes(self) -> tuple[list[IdentityRow], list[Identity], list[IdentityRow]]:
        """(rows to insert: new ids and ids that changed profile; ids to delete first: those
        that changed profile; rows whose only change is first_seen/last_seen). Unchanged rows
        are left alone (updating them in place keeps DuckDB's indexes untouched)."""
        inserts: list[IdentityRow] = []
        moved: list[Identity] = []
        seen: list[IdentityRow] = []
        for row in self.identities:
            ident = (row.id_type, row.id_value)
            stored = self.stored_identities.get(ident)
            if stored is None:
                inserts.append(row)
            elif stored[0] != row.profile_id:
                moved.append(ident)
                inserts.append(row)
            elif stored[1] != row.first_seen or stored[2] != row.last_seen:
                seen.append(row)
        return inserts, moved, seen

    def profile_changes(self) -> tuple[list[str], list[ProfileRow], list[ProfileRow]]:
        """(stored profile ids to delete, rows to insert, rows to update in place).

        A profile is rewritten (deleted and inserted) when it is new, or its anonymous ids
        changed (DuckDB rewrites a LIST column's rows on update, indexes included); otherwise
        its scalar columns are updated in place. Stored profiles that no longer exist (merged
        away or re-split) are deleted."""
        stored_anons: dict[str, set[str]] = defaultdict(set)
        for (id_type, value), (pid, _, _) in self.stored_identities.items():
            if id_type == "anonymous_id":
                stored_anons[pid].add(value)
        old = set(self.old_profile_ids)
        new = {p.profile_id for p in self.profiles}
        delete = sorted(old - new)
        inserts: list[ProfileRow] = []
        updates: list[ProfileRow] = []
        for row in self.profiles:
            if row.profile_id in old and stored_anons[row.profile_id] == set(row.anonymous_ids):
                updates.append(row)
            else:
                inserts.append(row)
                if row.profile_id in old:
                    delete.append(row.profile_id)
        return sorted(delete), inserts, updates


class IdentityStore(Protocol):
    """The warehouse side of identity resolution (DuckDB and BigQuery implement it)."""

    def pending_events(self, limit: int) -> list[EventIds]:
        """Up to ``limit`` events whose facts are not stored yet (duplicates allowed)."""
        ...

    def profile_members(self, ids: Collection[Identity]) -> set[Identity]:
        """Every stored id whose profile is the stored profile of one of ``ids``."""
        ...

    def edges_touching(self, ids: Collection[Identity]) -> list[Edge]:
        """Every stored edge with a side in ``ids``."""
        ...

    def facts(self, ids: Collection[Identity]) -> StoredFacts: ...

    def write(self, result: ChunkResult) -> None:
        """Write one chunk, atomically where the backend can; else facts last (a rerun of an
        interrupted chunk then finds its events pending again and rewrites the same rows)."""
        ...


@dataclass
class PassStats:
    events: int = 0
    edges: int = 0
    chunks: int = 0
    components: int = 0
    profiles: int = 0
    rejections: int = 0

    def as_dict(self) -> dict[str, int]:
        return dict(self.__dict__)


def _closure(store: IdentityStore, start: set[Identity], edges: set[Edge]) -> set[Identity]:
    """All ids connected to ``start`` through stored edges and ``edges`` (rejected included).

    Seeded with every id that shares a stored profile with ``start`` (one indexed read), so the
    first round of stored edges usually closes the component; later rounds only follow edges a
    limit refused (they join ids of other profiles)."""
    by_id: dict[Identity, list[Identity]] = defaultdict(list)

    def link(new: Iterable[Edge]) -> None:
        for e in new:
            one, two = (e[0], e[1]), (e[2], e[3])
            by_id[one].append(two)
            by_id[two].append(one)

    link(edges)
    known = set(start) | store.profile_members(start)
    frontier = set(known)
    while frontier:
        stored = store.edges_touching(frontier)
        edges.update(stored)
        link(stored)
        reached = {n for ident in frontier for n in by_id.get(ident, ())}
        frontier = reached - known
        known |= frontier
    return known


def _merge_traits(identifies: Iterable[EventFacts]) -> dict[str, Any]:
    """Each top-level trait's latest value by event timestamp; a null value removes the key."""
    merged: dict[str, Any] = {}
    seen: set[str] = set()
    for fact in sorted(identifies, key=lambda f: (f.timestamp, f.message_id)):
        if fact.message_id in seen or fact.traits is None:
            continue
        seen.add(fact.message_id)
        traits = _decode(fact.traits)
        if not isinstance(traits, dict):
            continue
        for key, value in traits.items():
            if value is None:
                merged.pop(key, None)
            else:
                merged[key] = value
    return merged


def _profile(
    members: list[Identity],
    seen: Mapping[Identity, tuple[datetime, datetime]],
    counts: Mapping[Identity, int],
    identifies: Iterable[EventFacts],
) -> ProfileRow:
    earliest = min(members, key=lambda i: (seen[i][0], i))
    users = [i for i in members if i[0] == "user_id"]
    latest_user = max(users, key=lambda i: (seen[i][1], i[1]))[1] if users else None
    return ProfileRow(
        profile_id=profile_id_of(earliest),
        user_id=latest_user,
        anonymous_ids=tuple(sorted(v for t, v in members if t == "anonymous_id")),
        traits=json.dumps(_merge_traits(identifies), sort_keys=True, separators=(",", ":")),
        first_seen=min(seen[i][0] for i in members),
        last_seen=max(seen[i][1] for i in members),
        event_count=sum(counts.get(i, 0) for i in members),
    )


def _seen(
    ids: set[Identity], stored: StoredFacts, extracted: Sequence[Extracted]
) -> dict[Identity, tuple[datetime, datetime]]:
    """First and last event time of each id: stored values widened by this chunk's events."""
    seen = {i: (f, last) for i, (_, f, last) in stored.identities.items() if i in ids}
    for item in extracted:
        ts = item.facts.timestamp
        for ident in item.ids:
            first, last = seen.get(ident, (ts, ts))
            seen[ident] = (min(first, ts), max(last, ts))
    return seen


def _chunk_result(
    extracted: list[Extracted], store: IdentityStore, config: IdentityConfig
) -> ChunkResult:
    chunk_edges = {e for item in extracted for e in item.edges}
    edges = set(chunk_edges)
    touched = {i for item in extracted for i in item.ids}
    ids = _closure(store, touched, edges)
    stored = store.facts(ids)
    seen = _seen(ids, stored, extracted)
    counts = dict(stored.counts)
    identifies = list(stored.identifies)
    for item in extracted:
        f = item.facts
        if f.id_type is not None and f.id_value is not None:
            key = (f.id_type, f.id_value)
            counts[key] = counts.get(key, 0) + 1
            if f.traits is not None:
                identifies.append(f)
    roots, rejections = resolve(ids, edges, config)
    groups: dict[Identity, list[Identity]] = defaultdict(list)
    for ident, root in roots.items():
        groups[root].append(ident)
    traits_of: dict[Identity, list[EventFacts]] = defaultdict(list)
    for fact in identifies:
        if fact.id_type is not None and fact.id_value is not None:
            traits_of[roots.get((fact.id_type, fact.id_value), ("", ""))].append(fact)
    profiles = {
        root: _profile(members, seen, counts, traits_of.get(root, ()))
        for root, members in groups.items()
    }
    identities = [
        IdentityRow(i[0], i[1], profiles[roots[i]].profile_id, *seen[i]) for i in sorted(roots)
    ]
    old = {i: row[0] for i, row in stored.identities.items() if i in roots}
    merges = _merges(old, roots, profiles, seen, edges, rejections)
    return ChunkResult(
        events=[item.facts for item in extracted],
        edges=sorted(chunk_edges, key=_ORDER),
        blocked=[r for item in extracted for r in item.blocked],
        component_ids=sorted(roots),
        old_profile_ids=sorted(set(old.values())),
        identities=identities,
        profiles=sorted(profiles.values()),
        rejections=rejections,
        merges=merges,
        stored_identities={i: row for i, row in stored.identities.items() if i in roots},
    )


def _merges(
    old: Mapping[Identity, str],
    roots: Mapping[Identity, Identity],
    profiles: Mapping[Identity, ProfileRow],
    seen: Mapping[Identity, tuple[datetime, datetime]],
    edges: Collection[Edge],
    rejections: Collection[Rejection],
) -> list[Merge]:
    """Old profile ids that no longer exist, each into the profile of its earliest id. The
    merge is dated by the latest applied edge of the profile it went into."""
    new_ids = {p.profile_id for p in profiles.values()}
    members: dict[str, list[Identity]] = defaultdict(list)
    for ident, pid in old.items():
        members[pid].append(ident)
    gone = {
        pid: roots[min(idents, key=lambda i: (seen[i][0], i))]
        for pid, idents in members.items()
        if pid not in new_ids
    }
    if not gone:
        return []  # the usual pass: no profile went away
    wanted = set(gone.values())  # only the profiles something merged into need their edge
    refused = {
        (r.message_id, r.id_type_1, r.id_value_1, r.id_type_2, r.id_value_2) for r in rejections
    }
    latest: dict[Identity, Edge] = {}
    for e in edges:
        root = roots.get((e[0], e[1]))
        if root not in wanted or (e.message_id, *e[:4]) in refused:
            continue
        if root not in latest or _ORDER(e) > _ORDER(latest[root]):
            latest[root] = e
    out: list[Merge] = []
    for pid, root in sorted(gone.items()):
        edge = latest.get(root)
        if edge is not None:
            out.append(Merge(pid, profiles[root].profile_id, edge.timestamp, edge.message_id))
    return out


def run_identity_pass(
    store: IdentityStore,
    config: IdentityConfig | None = None,
    *,
    chunk_events: int = 20_000,
    max_chunks: int | None = None,
    on_chunk: Callable[[PassStats], None] | None = None,
) -> PassStats:
    """Process every pending event, ``chunk_events`` at a time, each chunk written on its own
    (``on_chunk`` is told after each write)."""
    config = config or IdentityConfig()
    stats = PassStats()
    while max_chunks is None or stats.chunks < max_chunks:
        pending = store.pending_events(chunk_events)
        if not pending:
            break
        unique = list({e.message_id: e for e in reversed(pending)}.values())
        extracted = [extract(e, config) for e in unique]
        result = _chunk_result(extracted, store, config)
        store.write(result)
        stats.chunks += 1
        stats.events += len(unique)
        stats.edges += len(result.edges)
        stats.profiles += len(result.profiles)
        stats.rejections += len(result.rejections) + len(result.blocked)
        stats.components += len({r.profile_id for r in result.identities})
        if on_chunk is not None:
            on_chunk(stats)
    return stats
