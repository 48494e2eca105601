"""Benchmark: the identity pass on DuckDB, and profile lookups by id.

Run from the repository root::

    uv run python benchmarks/bench_identity.py [--events 1000000] [--people 200000]

Events go straight into ``raw_events`` of a scratch DuckDB file (the load is not measured). Each
person has one device (anonymous id), 10% two or three; about a third of the events are
anonymous, the rest carry the user id (identify calls carry an email trait). Measures the first
identity pass over the whole history, an incremental pass over ``--new`` more events, and the
p99 of profile lookups by a random id (``ProfileReader.find`` + ``profile``, in-process). Prints
the figures and writes them to ``benchmarks/results/identity.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
from eventkit_storage.identity import run_identity_pass
from eventkit_storage.identity_duckdb import DuckDBIdentityStore
from eventkit_storage.identity_read import ProfileReader
from eventkit_storage.schema import EVENT_SCHEMA
from eventkit_storage.warehouse import duckdb_ddl

RESULTS = Path(__file__).parent / "results" / "identity.json"
T0 = datetime(2024, 1, 1, tzinfo=UTC)


def devices_of(person: int) -> list[str]:
    extra = 1 + person % 2 if person % 10 == 0 else 0  # 10% with two or three devices
    return [f"anon-{person}-{d}" for d in range(1 + extra)]


def make_events(rng: random.Random, start: int, count: int, people: int) -> pa.Table:
    rows: dict[str, list[Any]] = {name: [] for name in EVENT_SCHEMA.names}
    for i in range(start, start + count):
        person = rng.randrange(people)
        anon = rng.choice(devices_of(person))
        kind = rng.random()
        type_ = "identify" if kind < 0.1 else "track"
        user = None if kind > 0.7 else f"user-{person}"
        at = T0 + timedelta(seconds=i)
        traits = json.dumps({"email": f"P{person}@example.com", "plan": rng.choice("abc")})
        values = {
            "message_id": f"m{i}",
            "type": type_,
            "stream": "users" if type_ == "identify" else "events",
            "user_id": user,
            "anonymous_id": anon,
            "event": "Clicked" if type_ == "track" else None,
            "timestamp": at,
            "received_at": at,
            "traits": traits if type_ == "identify" else None,
            "context": "{}",
            "properties": '{"n":1}',
            "payload": "{}",
        }
        for name in rows:
            rows[name].append(values.get(name))
    return pa.table(rows, schema=EVENT_SCHEMA)


def insert(con: duckdb.DuckDBPyConnection, table: pa.Table) -> None:
    con.register("_bench_rows", table)
    con.execute("INSERT INTO raw_events SELECT * FROM _bench_rows")
    con.unregister("_bench_rows")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--people", type=int, default=200_000)
    parser.add_argument("--new", type=int, default=10_000)
    parser.add_argument("--lookups", type=int, default=2_000)
    parser.add_argument("--chunk", type=int, default=50_000)
    args = parser.parse_args()
    rng = random.Random(12)
    with tempfile.TemporaryDirectory() as tmp:
        con = duckdb.connect(str(Path(tmp) / "bench.duckdb"))
        con.execute(duckdb_ddl())
        for start in range(0, args.events, 100_000):
            insert(con, make_events(rng, start, min(100_000, args.events - start), args.people))
        store = DuckDBIdentityStore(con)

        began = time.perf_counter()
        first = run_identity_pass(store, chunk_events=args.chunk)
        first_s = time.perf_counter() - began

        insert(con, make_events(rng, args.events, args.new, args.people))
        began = time.perf_counter()
        incremental = run_identity_pass(store, chunk_events=args.chunk)
        incremental_s = time.perf_counter() - began

        profiles = con.execute("SELECT count(*) FROM profiles").fetchone()
        cursor = con.cursor()
        reader = ProfileReader(lambda sql, params: cursor.execute(sql, params).fetchall())
        latencies = []
        for _ in range(args.lookups):
            person = rng.randrange(args.people)
            ident = rng.choice(
                [("user_id", f"user-{person}"), ("anonymous_id", devices_of(person)[0])]
            )
            began = time.perf_counter()
            found = reader.find(*ident)
            if found is not None:
                reader.profile(found)
            latencies.append((time.perf_counter() - began) * 1000)
        con.close()
    latencies.sort()
    figures = {
        "events": args.events,
        "people": args.people,
        "profiles": profiles[0] if profiles else 0,
        "first_pass_s": round(first_s, 2),
        "first_pass_chunks": first.chunks,
        "first_pass_events_per_s": round(first.events / first_s),
        "incremental_events": incremental.events,
        "incremental_pass_s": round(incremental_s, 3),
        "lookup_p50_ms": round(statistics.median(latencies), 2),
        "lookup_p99_ms": round(latencies[int(len(latencies) * 0.99) - 1], 2),
        # the machine is shared: its load average when the run ended says how busy it was
        "load_average_1_5_15": [round(x, 1) for x in os.getloadavg()],
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, Python {sys.version.split()[0]}, "
        f"duckdb {duckdb.__version__}",
        "command": "uv run python benchmarks/bench_identity.py " + " ".join(sys.argv[1:]),
    }
    print(json.dumps(figures, indent=2))
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(figures, indent=2) + "\n")


if __name__ == "__main__":
    main()
