"""``eventkit-loader``: the command line. Options go after the subcommand (before it works too).

Exit codes: 0 done; 1 some files failed or a backend failed; 2 a usage or settings error
(including a port that ``run`` cannot listen on).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import errno
import functools
import json
import logging
import signal
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any, cast

from eventkit_core import (
    ConfigurationError,
    EventkitError,
    InvalidStreamError,
    LoadReport,
    WarehouseMissingError,
    validate_stream,
)
from rich.console import Console

from eventkit_loader import __version__, backends
from eventkit_loader.compact import RewritableStore, compact
from eventkit_loader.output import write_json, write_table
from eventkit_loader.replay import replay_dead_letters
from eventkit_loader.retention import apply_retention
from eventkit_loader.service import Backlog, LoaderService, PassResult, compute_backlog, resolve
from eventkit_loader.settings import LoaderSettings, load_settings
from eventkit_loader.state import LoaderState
from eventkit_loader.telemetry import MetricsServer, Telemetry, configure_logging
from eventkit_loader.wait import DEFAULT_WAIT, pending_files, wait_for_file

log = logging.getLogger("eventkit_loader")

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
#: Seconds between two retention runs of `run`.
RETENTION_EVERY = 3600.0


def parse_since(text: str) -> datetime:
    """``YYYY-MM-DD`` (midnight UTC) or an ISO 8601 date-time (naive = UTC)."""
    value = text.strip()
    try:
        if len(value) == 10:
            day = date.fromisoformat(value)
            return datetime(day.year, day.month, day.day, tzinfo=UTC)
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a date: use YYYY-MM-DD or an ISO 8601 date-time"
        ) from None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _positive_float(text: str) -> float:
    value = float(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"{text} is not a positive number of seconds")
    return value


def _stream(text: str) -> str:
    try:
        return validate_stream(text)
    except InvalidStreamError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _batch_files(text: str) -> int:
    value = int(text)
    if not 1 <= value <= 10_000:
        raise argparse.ArgumentTypeError(f"{text}: use 1 to 10000 files per batch")
    return value


# Settings a command-line option can set: dest -> LoaderSettings field.
_OPTION_FIELDS = {
    "data_dir": "data_dir",
    "event_store": "event_store",
    "warehouse": "warehouse",
    "project": "gcp_project_id",
    "bucket": "gcp_gcs_bucket",
    "prefix": "gcs_prefix",
    "dataset": "gcp_bigquery_dataset",
    "table": "warehouse_table",
    "log_level": "log_level",
    "interval": "loader_interval",
    "batch_files": "loader_batch_files",
    "metrics_port": "metrics_port",
    "metrics_host": "metrics_host",
    "rules_file": "rules_file",
    "profiles_port": "profiles_port",
    "profiles_host": "profiles_host",
}


def _common_options() -> argparse.ArgumentParser:
    # SUPPRESS: an option not given leaves no attribute, so the environment decides.
    common = argparse.ArgumentParser(add_help=False, argument_default=argparse.SUPPRESS)
    g = common.add_argument_group("settings (override the environment)")
    g.add_argument(
        "--data-dir",
        metavar="DIR",
        type=Path,
        help="data directory shared with the collector [EVENTKIT_DATA_DIR]",
    )
    g.add_argument(
        "--event-store", choices=["local", "gcs"], help="where files are [EVENTKIT_EVENT_STORE]"
    )
    g.add_argument(
        "--warehouse", choices=["duckdb", "bigquery"], help="warehouse [EVENTKIT_WAREHOUSE]"
    )
    g.add_argument("--project", metavar="PROJECT", help="Google Cloud project [GCP_PROJECT_ID]")
    g.add_argument("--bucket", metavar="BUCKET", help="GCS bucket [GCP_GCS_BUCKET]")
    g.add_argument(
        "--prefix", metavar="PREFIX", help="object prefix in the bucket [EVENTKIT_GCS_PREFIX]"
    )
    g.add_argument("--dataset", metavar="DATASET", help="BigQuery dataset [GCP_BIGQUERY_DATASET]")
    g.add_argument("--table", metavar="TABLE", help="warehouse table [EVENTKIT_WAREHOUSE_TABLE]")
    g.add_argument(
        "--log-level", metavar="LEVEL", help="DEBUG, INFO, WARNING, ERROR [EVENTKIT_LOG_LEVEL]"
    )
    return common


def build_parser() -> argparse.ArgumentParser:
    common = _common_options()
    parser = argparse.ArgumentParser(
        prog="eventkit-loader",
        description="Load the Parquet files eventkit stored into the warehouse "
        "(the embedded DuckDB file by default, or BigQuery).",
        parents=[common],
    )
    parser.add_argument("--version", action="version", version=f"eventkit-loader {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    def add(name: str, help_text: str, description: str) -> argparse.ArgumentParser:
        return sub.add_parser(name, parents=[common], help=help_text, description=description)

    batch_help = "files per load (1-10000) [EVENTKIT_LOADER_BATCH_FILES]"

    run = add(
        "run",
        "load new files continuously (the service)",
        "Pass after pass: find new files, load them in batches, wait --interval seconds. "
        "Serves /metrics and /health. SIGTERM finishes the current batch and stops.",
    )
    run.add_argument(
        "--interval",
        metavar="SECONDS",
        type=_positive_float,
        help="seconds between passes [EVENTKIT_LOADER_INTERVAL]",
    )
    run.add_argument("--batch-files", metavar="N", type=_batch_files, help=batch_help)
    run.add_argument(
        "--metrics-port", metavar="PORT", type=int, help="metrics port [EVENTKIT_METRICS_PORT]"
    )
    run.add_argument(
        "--metrics-host", metavar="ADDRESS", help="metrics address [EVENTKIT_METRICS_HOST]"
    )
    run.add_argument(
        "--profiles-port",
        metavar="PORT",
        type=int,
        help="serve the Profile API on this port (off by default) [EVENTKIT_PROFILES_PORT]",
    )
    run.add_argument(
        "--profiles-host", metavar="ADDRESS", help="Profile API address [EVENTKIT_PROFILES_HOST]"
    )
    run.add_argument(
        "--no-metrics",
        action="store_const",
        const=True,
        dest="no_metrics",
        help="serve no metrics [EVENTKIT_METRICS_ENABLED=false]",
    )

    once = add(
        "once",
        "one pass, then exit (cron, Cloud Run jobs)",
        "Load every stored file that is not loaded yet, then exit: 0 when all loaded, 1 if any "
        "failed.",
    )
    once.add_argument("--batch-files", metavar="N", type=_batch_files, help=batch_help)
    once.add_argument("--json", action="store_true", default=False, help="print the result as JSON")
    once.add_argument(
        "--wait",
        metavar="SECONDS",
        nargs="?",
        type=_positive_float,
        const=DEFAULT_WAIT,
        default=None,
        help="when no new file is stored yet, wait for the collector to write one, up to "
        f"SECONDS (default {DEFAULT_WAIT:g}); says what it waits for on stderr",
    )

    backfill = add(
        "backfill",
        "load the files stored since a date, with a progress bar",
        "Load every file stored since DATE that is not loaded yet, showing files and rows.",
    )
    backfill.add_argument(
        "--since",
        metavar="DATE",
        type=parse_since,
        required=True,
        help="YYYY-MM-DD or ISO date-time (UTC)",
    )
    backfill.add_argument("--batch-files", metavar="N", type=_batch_files, help=batch_help)
    backfill.add_argument(
        "--no-progress", action="store_true", default=False, help="no progress bar"
    )
    backfill.add_argument(
        "--json", action="store_true", default=False, help="print the result as JSON"
    )

    create = add(
        "create-table",
        "create the warehouse table and views (BigQuery: the dataset too)",
        "Create the raw_events table and the events, tracks, identifies, pages, screens, groups, "
        "aliases and users views. Safe to run again.",
    )
    create.add_argument(
        "--print-sql",
        action="store_true",
        default=False,
        help="print the BigQuery DDL (for `bq query`) instead of running anything",
    )
    create.add_argument(
        "--dry-run",
        action="store_true",
        default=False,
        help="print the warehouse it would create and its DDL; create nothing",
    )

    status = add(
        "status",
        "files loaded, pending, failed, and the lag",
        "Compare the stored files with the warehouse's ledger of loaded files.",
    )
    status.add_argument("--json", action="store_true", default=False, help="print JSON")

    retention = add(
        "retention",
        "delete files and warehouse rows past EVENTKIT_RETENTION_DAYS",
        "Per stream (EVENTKIT_RETENTION_DAYS, EVENTKIT_STREAM_RETENTION_DAYS): delete the "
        "warehouse rows (events, dead letters) received before the cutoff, rounded down to its "
        "hour, then the files of the hours before it. Crash-safe; `run` does it hourly.",
    )
    retention.add_argument(
        "--dry-run", action="store_true", default=False, help="print the cutoffs and files only"
    )
    retention.add_argument("--json", action="store_true", default=False, help="print JSON")

    compact = add(
        "compact",
        "merge the small files of each finished hour into large ones",
        "Per stream and hour (events and dead letters apart): merge the files the warehouse "
        "has loaded into one file per 64 MB of input, record it as loaded, delete the small "
        "ones. Crash-safe: a killed run is finished or undone by the next one.",
    )
    compact.add_argument(
        "--dry-run", action="store_true", default=False, help="print the merges, change nothing"
    )
    compact.add_argument("--json", action="store_true", default=False, help="print JSON")

    replay = add(
        "replay-dead-letters",
        "re-run dead letters through the current adapters and rules",
        "Read the dead letters of a stream, adapt them again with the current rules file, store "
        "those that now pass as events (once), and report those that still fail.",
    )
    replay.add_argument(
        "--stream",
        metavar="STREAM",
        type=_stream,
        required=True,
        help="stream whose dead letters to replay",
    )
    replay.add_argument(
        "--since",
        metavar="DATE",
        type=parse_since,
        help="only dead letters received since (YYYY-MM-DD)",
    )
    replay.add_argument(
        "--rules-file", metavar="FILE", type=Path, help="rules file [EVENTKIT_RULES_FILE]"
    )
    replay.add_argument(
        "--load",
        action="store_true",
        default=False,
        help="run a load pass right after (else the next pass loads them)",
    )
    replay.add_argument(
        "--dry-run", action="store_true", default=False, help="report only, store nothing"
    )
    replay.add_argument("--json", action="store_true", default=False, help="print JSON")

    dead = add(
        "dead-letters",
        "count dead letters by stream and reason, with sample payloads",
        "Read the dead-letter files of the event store (local directory or GCS) and list how "
        "many there are per stream and reason code, with a few sample payloads each.",
    )
    dead.add_argument(
        "--stream", metavar="STREAM", type=_stream, help="only this stream's dead letters"
    )
    dead.add_argument(
        "--since",
        metavar="DATE",
        type=parse_since,
        help="only dead letters received since: YYYY-MM-DD or ISO date-time (UTC)",
    )
    dead.add_argument(
        "--reason", metavar="CODE", help="only this reason code (e.g. validation_failed)"
    )
    dead.add_argument(
        "--samples", metavar="N", type=int, default=3, help="sample payloads per group (default 3)"
    )
    dead.add_argument("--json", action="store_true", default=False, help="print one JSON object")

    profile = add(
        "profile",
        "show one person: ids, merged traits, last events",
        "Find a profile by any of its ids (user_id:u1, anonymous_id:a1, email:x@example.com, "
        "profile_id:use_...) in the warehouse (DuckDB or BigQuery). Exit 1 when no profile has it.",
    )
    profile.add_argument("id", metavar="ID_TYPE:VALUE", help="e.g. user_id:u1")
    profile.add_argument(
        "--events",
        metavar="N",
        type=int,
        default=10,
        help="how many of the last events (default 10)",
    )
    profile.add_argument("--json", action="store_true", default=False, help="print one JSON object")

    forget = add(
        "forget",
        "remove one person from the warehouse and the stored files",
        "Suppress the person's ids, delete their warehouse rows and rewrite every stored file "
        "holding their events or dead letters (DuckDB + local store). Rerun after a crash.",
    )
    forget.add_argument("id", metavar="ID_TYPE:VALUE", help="e.g. user_id:u1")
    forget.add_argument("--dry-run", action="store_true", default=False, help="change nothing")
    forget.add_argument("--json", action="store_true", default=False, help="print one JSON object")

    query = add(
        "query",
        "run SQL on the embedded DuckDB warehouse",
        "Run one SQL statement read-only (waits up to 10 s for a running pass). Tables: raw_events; "
        "views: events, tracks, identifies, pages, screens, groups, aliases, users.",
    )
    query.add_argument(
        "sql", metavar="SQL", help='e.g. "select type, count(*) from events group by 1"'
    )
    query.add_argument(
        "--json",
        action="store_true",
        default=False,
        help="print one JSON array of row objects, nothing else",
    )
    return parser


def settings_from(args: argparse.Namespace) -> LoaderSettings:
    overrides: dict[str, Any] = {
        field: getattr(args, dest) for dest, field in _OPTION_FIELDS.items() if hasattr(args, dest)
    }
    if getattr(args, "no_metrics", False):
        overrides["metrics_enabled"] = False
    settings = load_settings(**overrides)
    settings.check()
    return settings


# -- commands --------------------------------------------------------------------------------


def _service(settings: LoaderSettings, telemetry: Telemetry | None = None) -> LoaderService:
    provider = None if telemetry is None else telemetry.provider
    return LoaderService(
        backends.event_store(settings, provider),
        backends.warehouse(settings, provider),
        batch_files=settings.loader_batch_files,
        state=LoaderState(settings.state_path),
        metrics=None if telemetry is None else telemetry.metrics,
        warehouse_label=settings.warehouse_kind,
    )


def _stop_on_signals(stop: asyncio.Event) -> Callable[[], None]:
    """SIGTERM / SIGINT set ``stop``; returns a function that restores the default handlers."""
    loop = asyncio.get_running_loop()
    signals = (signal.SIGTERM, signal.SIGINT)

    def requested(signum: int) -> None:
        if stop.is_set():
            log.warning("still finishing the current batch (SIGKILL is safe too: it is retried)")
        else:
            log.info("%s: finishing the current batch, then stopping", signal.Signals(signum).name)
        stop.set()

    for signum in signals:
        loop.add_signal_handler(signum, requested, signum)

    def restore() -> None:
        for signum in signals:
            loop.remove_signal_handler(signum)

    return restore


def _disabled(settings: LoaderSettings) -> bool:
    if not settings.warehouse_enabled:
        log.warning(
            "warehouse loading is disabled (EVENTKIT_WAREHOUSE_ENABLED=false): nothing to do"
        )
        return True
    return False


async def cmd_run(settings: LoaderSettings) -> int:
    if _disabled(settings):
        return EXIT_OK
    telemetry = Telemetry()
    telemetry.install_global()
    service = _service(settings, telemetry)
    server: MetricsServer | None = None
    if settings.metrics_enabled:
        with _listening(
            settings.metrics_host, settings.metrics_port, "metrics", "--metrics-port", "METRICS"
        ):
            # bound here, started (and logged) once the Profile API port is bound too
            server = MetricsServer(
                telemetry, service.health, settings.metrics_host, settings.metrics_port
            )
    # (if this fails, the bound metrics socket closes with the process: the command ends)
    with _listening(
        settings.profiles_host, settings.profiles_port, "Profile API", "--profiles-port", "PROFILES"
    ):
        profiles = await _start_profiles_api(settings, service)
    if server is not None:
        server.start()
    stop = asyncio.Event()
    restore = _stop_on_signals(stop)
    log.info(
        "loader %s: %s -> %s every %gs",
        __version__,
        _source_name(settings),
        _warehouse_name(settings),
        settings.loader_interval,
    )
    try:
        await service.run(
            settings.loader_interval, stop, between=_hourly_retention(settings, service)
        )
    finally:
        restore()
        if server is not None:
            server.stop()
        if profiles is not None:
            profiles.stop()
            service.warehouse.release()  # type: ignore[attr-defined]
        telemetry.shutdown()
    return EXIT_OK


@contextlib.contextmanager
def _listening(host: str, port: int | None, what: str, option: str, env: str) -> Iterator[None]:
    """A port that cannot be bound is a settings error: one line naming the port and option."""
    try:
        yield
    except OSError as exc:
        how = f"{option} / EVENTKIT_{env}_PORT"
        if exc.errno == errno.EADDRINUSE:
            problem = f"{what} port {port} on {host} is in use: choose another with {how}"
        else:
            problem = f"cannot listen on {host}:{port} ({what}): {exc.strerror or exc}; see {how}"
        raise ConfigurationError(problem) from None


async def _start_profiles_api(settings: LoaderSettings, service: LoaderService) -> Any:
    """With EVENTKIT_PROFILES_PORT: hold the DuckDB file open and serve the Profile API."""
    if settings.profiles_port is None or settings.profiles_token is None:
        return None
    from eventkit_storage.identity_read import ProfileReader, reader_for

    from eventkit_loader.profiles_api import ProfilesServer

    warehouse = service.warehouse
    if settings.warehouse_kind == "duckdb":
        warehouse.hold()  # type: ignore[attr-defined]  # one writer per file: share it
    await service.ensure_schema()  # the tables exist before the first request

    def reader() -> ProfileReader:
        return reader_for(warehouse)

    return ProfilesServer(
        reader, settings.profiles_token, settings.profiles_host, settings.profiles_port
    ).start()


def _print_pass(result: PassResult, as_json: bool, console: Console) -> None:
    if as_json:
        print(json.dumps(result.as_dict()))
        return
    console.print(
        f"loaded {result.loaded} files ({result.rows} rows), skipped {result.skipped}, "
        f"failed {len(result.failed)}, {result.pending - result.loaded - result.skipped} "
        "still pending" + (f" — error: {result.error}" if result.error else "")
    )


async def cmd_once(settings: LoaderSettings, as_json: bool, wait: float | None = None) -> int:
    if _disabled(settings):
        return EXIT_OK
    service = _service(settings)
    stop = asyncio.Event()
    restore = _stop_on_signals(stop)
    try:
        if wait is not None:
            await wait_for_file(
                functools.partial(pending_files, settings, service),
                wait,
                lambda line: print(line, file=sys.stderr, flush=True),
                _source_name(settings),
                should_stop=stop.is_set,
            )
        result = await service.run_pass(should_stop=stop.is_set)
    finally:
        restore()
    _print_pass(result, as_json, Console())
    return EXIT_OK if result.ok else EXIT_FAILED


async def cmd_backfill(
    settings: LoaderSettings, since: datetime, progress: bool, as_json: bool
) -> int:
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    if _disabled(settings):
        return EXIT_OK
    service = _service(settings)
    stop = asyncio.Event()
    restore = _stop_on_signals(stop)
    bar = Progress(
        TextColumn("[bold]backfill[/]"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("files"),
        TextColumn("{task.fields[rows]:,} rows"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=Console(stderr=True),
        disable=not progress,
    )
    task = bar.add_task("files", total=None, rows=0)
    rows = 0

    def on_backlog(backlog: Backlog) -> None:
        bar.update(task, total=len(backlog.pending), completed=0)

    def on_batch(report: LoadReport, files: int) -> None:
        nonlocal rows
        rows += report.rows
        bar.update(task, advance=files, rows=rows)

    try:
        with bar:
            result = await service.run_pass(
                since=since, should_stop=stop.is_set, on_backlog=on_backlog, on_batch=on_batch
            )
    finally:
        restore()
    _print_pass(result, as_json, Console())
    return EXIT_OK if result.ok else EXIT_FAILED


def cmd_create_table_dry_run(settings: LoaderSettings) -> int:
    """What ``create-table`` would create, and the DDL, for the configured warehouse."""
    from eventkit_storage.warehouse import VIEW_NAMES, bigquery_ddl, duckdb_ddl

    table = settings.warehouse_table
    if settings.warehouse_kind == "bigquery":
        project = settings.gcp_project_id or "your-project"
        dataset = settings.gcp_bigquery_dataset
        print(f"would create (unless it exists): dataset {project}.{dataset}")
        where, ddl = f"{project}.{dataset}", bigquery_ddl(project, dataset, table)
    else:
        where, ddl = str(settings.duckdb_path), duckdb_ddl(table)
        print(f"would create (unless it exists): DuckDB file {where}")
    print(f"would create (unless it exists): table {where}.{table}")
    print(f"would create or replace: views {', '.join(VIEW_NAMES)} in {where}")
    print("-- DDL:")
    print(ddl)
    return EXIT_OK


async def cmd_create_table(settings: LoaderSettings, print_sql: bool) -> int:
    if print_sql:
        from eventkit_storage.warehouse import bigquery_ddl

        print(
            bigquery_ddl(
                settings.gcp_project_id or "your-project",
                settings.gcp_bigquery_dataset,
                settings.warehouse_table,
            )
        )
        return EXIT_OK
    warehouse = backends.warehouse(settings)
    await resolve(warehouse.ensure_schema())
    print(f"ready: {_warehouse_name(settings)} (table {settings.warehouse_table} and its views)")
    return EXIT_OK


async def cmd_status(settings: LoaderSettings, as_json: bool) -> int:
    service = _service(settings)
    note: str | None = None
    if settings.warehouse_kind == "duckdb" and not settings.duckdb_path.exists():
        ledger_missing = True
    else:
        ledger_missing = False
        try:
            backlog = await service.backlog()
        except WarehouseMissingError:  # no dataset / ledger yet
            ledger_missing = True
    if ledger_missing:
        note = "the warehouse is not created yet: run `eventkit-loader create-table` or a pass"
        failed = service.state.failed_files() if service.state is not None else {}
        backlog = compute_backlog(await service.list_files(), set(), failed)
    info = {
        "source": _source_name(settings),
        "warehouse": _warehouse_name(settings),
        **backlog.as_dict(),
        "dead_letters": await _dead_letter_status(service, ledger_missing),
        "note": note,
    }
    if as_json:
        print(json.dumps(info))
        return EXIT_OK
    console = Console()
    for key in ("source", "warehouse", "listed", "loaded", "pending", "failed", "oldest_unloaded"):
        console.print(f"{key:>16}: {info[key] if info[key] is not None else '-'}", highlight=False)
    console.print(f"{'lag':>16}: {info['lag_seconds']:.1f} s", highlight=False)
    dead = info["dead_letters"]
    console.print(
        f"{'dead letters':>16}: {dead['files']} files, {dead['loaded']} loaded, "
        f"{dead['pending']} pending (see `eventkit-loader dead-letters`)",
        highlight=False,
    )
    for uri, attempts in info["failed_files"].items():
        console.print(f"  failed x{attempts}: {uri}", highlight=False)
    if note:
        console.print(note, highlight=False)
    return EXIT_OK


async def _dead_letter_status(service: LoaderService, ledger_missing: bool) -> dict[str, int]:
    """Dead-letter files stored, loaded into ``dead_letters`` and pending (rows: in the table)."""
    backlog = None if ledger_missing else await service.dead_letter_backlog()
    if backlog is None:
        files = await resolve(service.store.list_files("dead-letters"))
        return {"files": len(files), "loaded": 0, "pending": len(files)}
    return {"files": backlog.listed, "loaded": backlog.loaded, "pending": len(backlog.pending)}


async def cmd_retention(settings: LoaderSettings, dry_run: bool, as_json: bool) -> int:
    policy = settings.retention
    if not policy.enabled:
        print(
            "eventkit-loader: no retention set: set EVENTKIT_RETENTION_DAYS (or "
            "EVENTKIT_STREAM_RETENTION_DAYS); nothing is deleted",
            file=sys.stderr,
        )
        return EXIT_OK
    service = _service(settings)
    store = cast(RewritableStore, service.store)  # a file store (backends.event_store)
    report = await apply_retention(service, store, policy, dry_run=dry_run)
    info = report.as_dict()
    if as_json:
        print(json.dumps(info))
        return EXIT_OK
    for stream, cutoff in info["cutoffs"].items():
        print(f"{stream}: data received before {cutoff} is past retention")
    verb = "would delete" if dry_run else "deleted"
    rows = "" if dry_run else f" and {sum(report.rows.values())} warehouse rows"
    print(f"{verb} {len(report.files)} files{rows}" + (" (dry run)" if dry_run else ""))
    return EXIT_OK


def _hourly_retention(settings: LoaderSettings, service: LoaderService) -> Any:
    """For ``run``: retention after a pass, at most once an hour (None when none is set)."""
    policy = settings.retention
    if not policy.enabled:
        return None
    last = [float("-inf")]

    async def between() -> None:
        if time.monotonic() - last[0] < RETENTION_EVERY:
            return
        last[0] = time.monotonic()
        await apply_retention(service, cast(RewritableStore, service.store), policy)

    return between


async def cmd_compact(settings: LoaderSettings, dry_run: bool, as_json: bool) -> int:
    service = _service(settings)
    if settings.warehouse_kind == "duckdb" and not settings.duckdb_path.exists():
        print("eventkit-loader: nothing to compact: no file is loaded yet (run a pass first)")
        return EXIT_OK
    # The service's store is a file store (backends.event_store): local or GCS.
    report = await compact(service, cast(RewritableStore, service.store), dry_run=dry_run)
    info = report.as_dict()
    if as_json:
        print(json.dumps(info))
        return EXIT_OK
    verb = "would merge" if dry_run else "merged"
    for merge in report.merges:
        print(f"{verb} {len(merge['inputs'])} files into {merge['output']} ({merge['rows']} rows)")
    for done in report.recovered:
        print(f"{done.outcome} an interrupted {done.reason} ({done.id})")
    print(
        f"{verb} {info['files_merged']} files into {info['files_written']}"
        + (" (dry run: nothing changed)" if dry_run else "")
    )
    return EXIT_OK


async def cmd_replay(
    settings: LoaderSettings,
    stream: str,
    since: datetime | None,
    load: bool,
    dry_run: bool,
    as_json: bool,
) -> int:
    from eventkit_storage.suppression import SuppressionList

    adapter = backends.replay_adapter(settings)
    errors = backends.error_store(settings)
    report = await replay_dead_letters(
        stream,
        errors=errors,
        events=backends.event_store(settings),
        adapter=adapter,
        state=LoaderState(settings.state_path),
        since=since,
        dry_run=dry_run,
        suppressed=await SuppressionList(errors.backend).load(),
    )
    result: PassResult | None = None
    if load and not dry_run and settings.warehouse_enabled:
        result = await _service(settings).run_pass()
    if as_json:
        out = report.as_dict()
        if result is not None:
            out["load"] = result.as_dict()
        print(json.dumps(out))
    else:
        console = Console()
        verb = "would replay" if dry_run else "replayed"
        console.print(
            f"{stream}: {report.read} dead letters read, {verb} {report.replayed}, "
            f"{report.already_replayed} replayed before, "
            f"{sum(report.still_failing.values())} still failing",
            highlight=False,
        )
        for code, count in report.still_failing.most_common():
            console.print(f"  still failing: {code} x{count}", highlight=False)
        if result is not None:
            _print_pass(result, False, console)
        elif report.replayed and not dry_run:
            console.print("the next load pass loads them (or run with --load)", highlight=False)
    if result is not None and not result.ok:
        return EXIT_FAILED
    return EXIT_OK


async def cmd_dead_letters(settings: LoaderSettings, args: argparse.Namespace) -> int:
    from eventkit_loader.dead_letters import summarize, text_lines

    summary = await summarize(
        backends.error_store(settings),
        stream=getattr(args, "stream", None),
        since=getattr(args, "since", None),
        reason=getattr(args, "reason", None),
        samples=max(0, args.samples),
    )
    if args.json:
        print(json.dumps(summary.as_dict()))
    else:
        console = Console(highlight=False)
        for line in text_lines(summary):
            console.print(line, markup=False)
    return EXIT_OK


def _check_duckdb(settings: LoaderSettings) -> None:
    if settings.warehouse_kind != "duckdb":
        raise ConfigurationError(
            "query reads the embedded DuckDB warehouse: for BigQuery use `bq query` or the "
            "console (or pass --warehouse duckdb)"
        )
    if not settings.duckdb_path.exists():
        raise ConfigurationError(
            f"no warehouse at {settings.duckdb_path} yet: run `eventkit-loader once "
            f"--data-dir {settings.data_dir}` first (or check --data-dir)"
        )


async def cmd_query(settings: LoaderSettings, sql: str, as_json: bool) -> int:
    _check_duckdb(settings)
    warehouse = backends.warehouse(settings)
    columns, rows = await resolve(warehouse.query(sql))
    if as_json:
        write_json(columns, rows, sys.stdout)
    else:
        write_table(columns, rows, Console())
    return EXIT_OK


def _profile_dict(profile: Any, events: Sequence[Any]) -> dict[str, Any]:
    return {
        "profile_id": profile.profile_id,
        "user_id": profile.user_id,
        "identities": [{"type": t, "value": v} for t, v, _ in profile.identities],
        "traits": profile.traits,
        "events": [e.as_dict() for e in events],
    }


async def cmd_profile(settings: LoaderSettings, ident: str, count: int, as_json: bool) -> int:
    from eventkit_storage.identity import parse_identity
    from eventkit_storage.identity_read import reader_for

    if settings.warehouse_kind == "duckdb":
        _check_duckdb(settings)
    id_type, value = parse_identity(ident)
    reader = reader_for(backends.warehouse(settings))
    found = await asyncio.to_thread(reader.find, id_type, value)
    profile = None if found is None else await asyncio.to_thread(reader.profile, found)
    if profile is None:
        print(f"eventkit-loader: no profile has {id_type}:{value}", file=sys.stderr)
        return EXIT_FAILED
    events = await asyncio.to_thread(reader.events, profile.profile_id, max(0, count))
    if as_json:
        print(json.dumps(_profile_dict(profile, events), default=str))
        return EXIT_OK
    console = Console(highlight=False)
    console.print(
        f"[bold]{profile.profile_id}[/]  user_id: {profile.user_id or '-'}  "
        f"events: {profile.event_count}  seen {profile.first_seen} .. {profile.last_seen}"
    )
    console.print("identities:")
    for t, v, _ in profile.identities:
        console.print(f"  {t}:{v}", markup=False)
    console.print("traits:")
    for key, val in sorted(profile.traits.items()):
        console.print(f"  {key}: {json.dumps(val)}", markup=False)
    console.print(f"last {len(events)} events:")
    for e in events:
        console.print(
            f"  {e.timestamp.isoformat()}  {e.type:<8} {e.event or e.name or ''}  {e.message_id}",
            markup=False,
        )
    return EXIT_OK


def _source_name(settings: LoaderSettings) -> str:
    if settings.event_store == "gcs":
        prefix = f"/{settings.gcs_prefix}" if settings.gcs_prefix else ""
        return f"gs://{settings.gcp_gcs_bucket}{prefix}"
    return str(settings.data_dir)


def _warehouse_name(settings: LoaderSettings) -> str:
    if settings.warehouse_kind == "bigquery":
        return f"bigquery:{settings.gcp_project_id}.{settings.gcp_bigquery_dataset}.{settings.warehouse_table}"
    return f"duckdb:{settings.duckdb_path}"


async def _dispatch(args: argparse.Namespace, settings: LoaderSettings) -> int:
    command: str = args.command
    if command == "run":
        return await cmd_run(settings)
    if command == "once":
        return await cmd_once(settings, args.json, args.wait)
    if command == "backfill":
        return await cmd_backfill(settings, args.since, not args.no_progress, args.json)
    if command == "create-table":
        if args.dry_run:
            return cmd_create_table_dry_run(settings)
        return await cmd_create_table(settings, args.print_sql)
    if command == "status":
        return await cmd_status(settings, args.json)
    if command == "retention":
        return await cmd_retention(settings, args.dry_run, args.json)
    if command == "compact":
        return await cmd_compact(settings, args.dry_run, args.json)
    if command == "replay-dead-letters":
        return await cmd_replay(
            settings, args.stream, getattr(args, "since", None), args.load, args.dry_run, args.json
        )
    if command == "dead-letters":
        return await cmd_dead_letters(settings, args)
    if command == "query":
        return await cmd_query(settings, args.sql, args.json)
    if command == "profile":
        return await cmd_profile(settings, args.id, args.events, args.json)
    if command == "forget":
        from eventkit_loader.forget import cmd_forget

        return await cmd_forget(settings, args.id, args.dry_run, args.json)
    raise AssertionError(f"unknown command {command}")  # argparse prevents it


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        settings = settings_from(args)
    except ConfigurationError as exc:
        print(f"eventkit-loader: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    configure_logging(settings.log_level)
    try:
        return asyncio.run(_dispatch(args, settings))
    except ConfigurationError as exc:
        print(f"eventkit-loader: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except EventkitError as exc:
        print(f"eventkit-loader: error: {exc}", file=sys.stderr)
        return EXIT_FAILED
    except KeyboardInterrupt:
        return 130
    except Exception as exc:  # a backend's own error (HTTP, I/O): one line, details at DEBUG
        log.debug("command failed", exc_info=True)
        print(f"eventkit-loader: error: {type(exc).__name__}: {exc}", file=sys.stderr)
        return EXIT_FAILED


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
