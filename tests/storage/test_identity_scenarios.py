"""The identity scenarios on real DuckDB and the BigQuery emulator, and the property test.

Each scenario loads its batches (one file and one identity pass each) and must end with the
same identities and profiles on both backends.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import signal
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import duckdb
import pytest
from eventkit_storage.identity import profile_id_of, run_identity_pass
from eventkit_storage.identity_duckdb import DuckDBIdentityStore
from eventkit_storage.warehouse import duckdb_ddl
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.storage.test_wh_conformance import (
    Backend,
    at,
    event_table,
    unique_name,
)
from tests.storage.test_wh_conformance import backend as conformance_backend

backend = conformance_backend  # the fixture: every scenario on DuckDB and BigQuery


def ev(
    mid: str,
    type_: str,
    seconds: float,
    *,
    user: str | None = None,
    anon: str | None = None,
    prev: str | None = None,
    traits: dict[str, Any] | None = None,
    external: list[dict[str, str]] | None = None,
) -> dict[str, Any]:
    """One stored row (EVENT_SCHEMA) of a Segment event."""
    context = {"externalIds": external} if external else {}
    return {
        "message_id": mid,
        "type": type_,
        "stream": {"identify": "users", "alias": "aliases"}.get(type_, "events"),
        "user_id": user,
        "anonymous_id": anon,
        "event": "Clicked" if type_ == "track" else None,
        "name": None,
        "group_id": None,
        "previous_id": prev,
        "timestamp": at(seconds),
        "original_timestamp": None,
        "sent_at": None,
        "received_at": at(seconds),
        "properties": json.dumps({"n": mid}),
        "traits": json.dumps(traits) if traits is not None else None,
        "context": json.dumps(context),
        "integrations": None,
        "payload": json.dumps({"messageId": mid}),
    }


Profile = tuple[tuple[str, ...], str | None, dict[str, Any], int]


async def load_and_resolve(backend: Backend, batches: list[list[dict[str, Any]]]) -> None:
    await backend.loader.ensure_schema()
    for rows in batches:
        await backend.loader.load_files([backend.put(unique_name(), event_table(rows))])
        await backend.loader.resolve_identities()


def profiles(backend: Backend) -> list[Profile]:
    """Each profile as (its ids, user_id, traits, event_count); checks its id is derived from
    its earliest identity."""
    ids: dict[str, list[tuple[Any, ...]]] = {}
    for t, v, pid, first in backend.rows(
        "identities", "id_type, id_value, profile_id, first_seen", "id_type, id_value"
    ):
        ids.setdefault(pid, []).append((first, t, v))
    out = []
    for pid, user, traits, count in backend.rows(
        "profiles", "profile_id, user_id, traits, event_count", "profile_id"
    ):
        members = sorted(ids[pid])
        assert pid == profile_id_of((members[0][1], members[0][2]))
        out.append(
            (tuple(sorted(f"{t}:{v}" for _, t, v in members)), user, json.loads(traits), count)
        )
    assert set(ids) == {p for p, *_ in backend.rows("profiles", "profile_id", "profile_id")}
    return sorted(out)


def rules(backend: Backend) -> list[tuple[Any, ...]]:
    return backend.rows("identity_rejections", "rule, id_value_1, message_id", "message_id, rule")


SHARED_DEVICE = [
    ev("s1", "identify", 1, user="u1", anon="kiosk", traits={"plan": "free"}),
    ev("s2", "identify", 2, user="u2", anon="kiosk", traits={"plan": "pro"}),
    ev("s3", "track", 3, anon="kiosk"),
]
SHARED_EXPECTED = [
    (("anonymous_id:kiosk", "user_id:u1"), "u1", {"plan": "free"}, 2),
    (("user_id:u2",), "u2", {"plan": "pro"}, 1),
]


async def test_anonymous_then_identify(backend: Backend) -> None:
    await load_and_resolve(
        backend,
        [
            [ev("t1", "page", 1, anon="a1"), ev("t2", "track", 2, anon="a1")],
            [ev("i1", "identify", 3, user="u1", anon="a1", traits={"email": "A@x.com"})],
            [ev("i2", "identify", 4, user="u1", traits={"plan": "pro", "email": None})],
        ],
    )
    assert profiles(backend) == [
        (("anonymous_id:a1", "email:a@x.com", "user_id:u1"), "u1", {"plan": "pro"}, 4)
    ]
    events = backend.rows("events", "message_id, profile_id", "message_id")
    assert len({pid for _, pid in events}) == 1
    assert events[0][1] is not None
    # the anonymous profile of the first pass was merged into the user's: still resolvable
    assert backend.rows("profile_merges", "from_profile_id, into_profile_id", "1") == []


async def test_two_devices_one_user(backend: Backend) -> None:
    await load_and_resolve(
        backend,
        [
            [ev("d1", "track", 1, anon="phone"), ev("d2", "track", 2, anon="laptop")],
            [ev("d3", "identify", 3, user="u1", anon="laptop")],
            [ev("d4", "identify", 4, user="u1", anon="phone")],
        ],
    )
    assert profiles(backend) == [
        (("anonymous_id:laptop", "anonymous_id:phone", "user_id:u1"), "u1", {}, 4)
    ]
    merges = backend.rows("profile_merges", "from_profile_id, into_profile_id, message_id", "1")
    survivor = profile_id_of(("anonymous_id", "phone"))  # the earliest identity
    assert merges == [(profile_id_of(("anonymous_id", "laptop")), survivor, "d4")]


async def test_an_alias_chain_joins_two_user_ids(backend: Backend) -> None:
    await load_and_resolve(
        backend,
        [
            [
                ev("c1", "identify", 1, user="u1", anon="a1", traits={"name": "Ann"}),
                ev("c2", "identify", 2, user="u2", anon="a2", traits={"plan": "pro"}),
            ],
            [
                ev("c3", "alias", 3, user="u3", prev="u2"),
                ev("c4", "alias", 4, user="u3", prev="u1"),
            ],
        ],
    )
    assert profiles(backend) == [
        (
            ("anonymous_id:a1", "anonymous_id:a2", "user_id:u1", "user_id:u2", "user_id:u3"),
            "u3",
            {"name": "Ann", "plan": "pro"},
            4,
        )
    ]
    users = backend.rows("users", "user_id, profile_id", "user_id")
    assert [u for u, _ in users] == ["u1", "u2", "u3"]
    assert len({p for _, p in users}) == 1
    assert rules(backend) == []


async def test_a_shared_device_does_not_merge_two_users(backend: Backend) -> None:
    await load_and_resolve(backend, [SHARED_DEVICE])
    assert profiles(backend) == SHARED_EXPECTED
    assert rules(backend) == [("limit:user_id", "kiosk", "s2")]


async def test_blocked_ids_never_link(backend: Backend) -> None:
    await load_and_resolve(
        backend,
        [
            [
                ev("b1", "identify", 1, user="u1", anon="undefined"),
                ev("b2", "identify", 2, user="u2", anon="undefined"),
                ev("b3", "track", 3, user="null", anon="a3"),
                ev("b4", "identify", 4, user="u4", anon="00000000-0000-0000-0000-000000000000"),
            ]
        ],
    )
    assert profiles(backend) == [
        (("anonymous_id:a3",), None, {}, 1),
        (("user_id:u1",), "u1", {}, 1),
        (("user_id:u2",), "u2", {}, 1),
        (("user_id:u4",), "u4", {}, 1),
    ]
    assert [r[0] for r in rules(backend)] == ["blocked_value"] * 4


async def test_email_and_external_ids_link(backend: Backend) -> None:
    await load_and_resolve(
        backend,
        [
            [ev("e1", "identify", 1, user="u1", traits={"email": "Ann@Example.com"})],
            [ev("e2", "identify", 2, anon="a9", traits={"email": " ann@example.com "})],
            [ev("e3", "track", 3, anon="a7", external=[{"id": "crm-1", "type": "crm_id"}])],
            [ev("e4", "track", 4, user="u1", external=[{"id": "crm-1", "type": "crm_id"}])],
        ],
    )
    assert profiles(backend) == [
        (
            (
                "anonymous_id:a7",
                "anonymous_id:a9",
                "crm_id:crm-1",
                "email:ann@example.com",
                "user_id:u1",
            ),
            "u1",
            {"email": " ann@example.com "},
            4,
        )
    ]


async def test_events_out_of_order_and_files_loaded_twice(backend: Backend) -> None:
    # the shared device, delivered newest first over three passes, one file twice
    await load_and_resolve(
        backend, [[SHARED_DEVICE[2]], [SHARED_DEVICE[1]], [SHARED_DEVICE[0]], [SHARED_DEVICE[0]]]
    )
    assert profiles(backend) == SHARED_EXPECTED
    assert rules(backend) == [("limit:user_id", "kiosk", "s2")]


async def test_a_pass_interrupted_midway_then_rerun(backend: Backend) -> None:
    """A write that dies after some statements of a chunk (what a kill leaves on BigQuery,
    which has no transaction here): the rerun gives the same state. The real SIGKILL of a
    loader on the emulator: tests/loader/test_ld_profile.py."""
    await backend.loader.ensure_schema()
    rows = [*SHARED_DEVICE, ev("x1", "identify", 5, user="u1", anon="kiosk-2")]
    await backend.loader.load_files([backend.put(unique_name(), event_table(rows))])
    with _store_of(backend) as store:
        calls = 0
        real = store._execute_all

        def dies_midway(statements: Any) -> None:
            nonlocal calls
            calls += 1
            if calls == 1:
                real(statements[: len(statements) // 2])
                raise RuntimeError("killed")
            real(statements)

        store._execute_all = dies_midway
        with pytest.raises(RuntimeError, match="killed"):
            run_identity_pass(store)
        assert run_identity_pass(store).events == len(rows)
    assert profiles(backend) == [
        (("anonymous_id:kiosk", "anonymous_id:kiosk-2", "user_id:u1"), "u1", {"plan": "free"}, 3),
        (("user_id:u2",), "u2", {"plan": "pro"}, 1),
    ]


@contextlib.contextmanager
def _store_of(backend: Backend) -> Iterator[Any]:
    if backend.name == "bigquery":
        from eventkit_storage.identity_bigquery import BigQueryIdentityStore

        yield BigQueryIdentityStore(backend.loader)
        return
    with contextlib.closing(duckdb.connect(str(backend.loader.database))) as con:
        yield DuckDBIdentityStore(con)


# ------------------------------------------------------------------- DuckDB: SIGKILL midway


CHILD = textwrap.dedent(
    """
    import sys, duckdb
    from eventkit_storage.identity import run_identity_pass
    from eventkit_storage.identity_duckdb import DuckDBIdentityStore
    con = duckdb.connect(sys.argv[1])
    def told(stats):
        print(stats.chunks, flush=True)
    run_identity_pass(DuckDBIdentityStore(con), chunk_events=3, on_chunk=told)
    """
)


def random_events(rng: random.Random, count: int) -> list[dict[str, Any]]:
    out = []
    for i in range(count):
        type_ = rng.choice(["track", "identify", "identify", "page", "alias"])
        user = rng.choice([None, "u0", "u1", "u2", "u3", "anonymous"])
        anon = rng.choice([None, "a0", "a1", "a2", "a3", "a4"]) if type_ != "alias" else None
        if user is None and anon is None:
            anon = "a0"
        traits = None
        if type_ == "identify":
            traits = {rng.choice(["plan", "name", "email"]): rng.choice(["x", "y", None, "E@x.io"])}
        prev = rng.choice(["u0", "u1", "u2", "u3"]) if type_ == "alias" else None
        if type_ == "alias":
            user = user or "u0"
        out.append(
            ev(f"m{i:04d}", type_, rng.randrange(count // 2 + 1), user=user, anon=anon,
               prev=prev, traits=traits)
        )  # fmt: skip
    return out


def test_a_pass_sigkilled_midway_then_rerun_gives_the_same_state(tmp_path: Path) -> None:
    rows = random_events(random.Random(7), 240)
    reference = _memory_db()
    _insert(reference, rows)
    run_identity_pass(DuckDBIdentityStore(reference))

    path = tmp_path / "w.duckdb"
    with contextlib.closing(duckdb.connect(str(path))) as con:
        con.execute(duckdb_ddl())
        _insert(con, rows)
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(path)], stdout=subprocess.PIPE, text=True
    )
    assert child.stdout is not None
    for _ in range(5):  # killed after its fifth chunk committed, while it works on the next
        assert child.stdout.readline()
    os.kill(child.pid, signal.SIGKILL)
    assert child.wait() == -signal.SIGKILL
    with contextlib.closing(duckdb.connect(str(path))) as con:
        done = con.execute("SELECT count(*) FROM _eventkit_identity_events").fetchone()
        assert done is not None
        assert 15 <= done[0] < 240
        run_identity_pass(DuckDBIdentityStore(con))
        assert _snapshot(con) == _snapshot(reference)


# ------------------------------------------------------------------------- property test


def _memory_db() -> duckdb.DuckDBPyConnection:
    con = duckdb.connect(":memory:")
    con.execute(duckdb_ddl())
    return con


def _insert(con: duckdb.DuckDBPyConnection, rows: list[dict[str, Any]]) -> None:
    con.register("_rows", event_table(rows))
    con.execute("INSERT INTO raw_events SELECT * FROM _rows")
    con.unregister("_rows")


def _snapshot(con: duckdb.DuckDBPyConnection) -> tuple[list[Any], list[Any]]:
    ids = con.execute("SELECT * FROM identities ORDER BY id_type, id_value").fetchall()
    profs = con.execute(
        "SELECT profile_id, user_id, anonymous_ids, CAST(traits AS VARCHAR), first_seen, "
        "last_seen, event_count FROM profiles ORDER BY profile_id"
    ).fetchall()
    return ids, profs


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 2**32), count=st.integers(1, 60), data=st.data())
def test_any_order_and_any_split_give_the_same_identities_and_profiles(
    seed: int, count: int, data: st.DataObject
) -> None:
    rows = random_events(random.Random(seed), count)
    one = _memory_db()
    _insert(one, rows)
    run_identity_pass(DuckDBIdentityStore(one))

    shuffled = data.draw(st.permutations(rows))
    duplicates = data.draw(st.lists(st.sampled_from(rows), max_size=5))
    cuts = sorted(data.draw(st.lists(st.integers(0, count), max_size=4)))
    chunk = data.draw(st.integers(1, 20))
    many = _memory_db()
    parts = [shuffled[a:b] for a, b in zip([0, *cuts], [*cuts, count], strict=True)]
    for part in [*parts, duplicates]:
        if part:
            _insert(many, list(part))
        run_identity_pass(DuckDBIdentityStore(many), chunk_events=chunk)
    assert _snapshot(many) == _snapshot(one)
