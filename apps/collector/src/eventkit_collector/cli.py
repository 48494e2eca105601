"""``eventkit-collector [serve] [options]``: run the collector.

Every option is also an environment variable (shown in ``--help``); options win over the
environment.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from eventkit_collector import __version__
from eventkit_collector.settings import Settings

#: option -> (settings field, type, help)
_OPTIONS: list[tuple[str, str, Any, str]] = [
    ("--host", "eventkit_host", str, "address to listen on [EVENTKIT_HOST, default 127.0.0.1]"),
    ("--port", "eventkit_port", int, "HTTP port [EVENTKIT_PORT, default 8000]"),
    (
        "--data-dir",
        "eventkit_data_dir",
        Path,
        "ring buffer, local Parquet and dead letters live here "
        "[EVENTKIT_DATA_DIR, default ./eventkit-data]",
    ),
    (
        "--metrics-port",
        "eventkit_metrics_port",
        int,
        "Prometheus /metrics and /health port; worker n uses port+n "
        "[EVENTKIT_METRICS_PORT, default 9090]",
    ),
    (
        "--workers",
        "eventkit_workers",
        int,
        "server processes sharing the port, one ring-buffer shard each "
        "[EVENTKIT_WORKERS, default 1]",
    ),
    (
        "--queue-mode",
        "eventkit_queue_mode",
        str,
        "async (in-process) or pubsub [EVENTKIT_QUEUE_MODE, default async]",
    ),
    (
        "--event-store",
        "eventkit_event_store",
        str,
        "local or gcs [EVENTKIT_EVENT_STORE, default local]",
    ),
    (
        "--rules-file",
        "eventkit_rules_file",
        Path,
        "TOML per-stream validation rules [EVENTKIT_RULES_FILE, default none]",
    ),
    (
        "--log-level",
        "eventkit_log_level",
        str,
        "debug, info, warning or error [EVENTKIT_LOG_LEVEL, default info]",
    ),
]


#: How ``--help`` shows each option's value.
_METAVARS: dict[str, str] = {
    "--host": "ADDRESS",
    "--port": "PORT",
    "--data-dir": "DIR",
    "--metrics-port": "PORT",
    "--workers": "N",
    "--queue-mode": "{async,pubsub}",
    "--event-store": "{local,gcs}",
    "--rules-file": "FILE",
    "--log-level": "LEVEL",
}


def _add_options(parser: argparse.ArgumentParser, *, suppress: bool) -> None:
    default = argparse.SUPPRESS if suppress else None
    for flag, field, typ, help_text in _OPTIONS:
        parser.add_argument(
            flag,
            dest=field,
            type=typ,
            default=default,
            metavar=_METAVARS.get(flag),
            help=help_text,
        )
    parser.add_argument(
        "--no-metrics",
        dest="eventkit_metrics_enabled",
        action="store_false",
        default=argparse.SUPPRESS if suppress else None,
        help="do not serve metrics [EVENTKIT_METRICS_ENABLED=false]",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="eventkit-collector",
        description=(
            "eventkit collector: Segment-compatible HTTP ingest -> durable SQLite ring buffer -> "
            "queue -> validation -> Parquet (local or GCS). With no options it runs the embedded "
            "default: Parquet under ./eventkit-data, in-process queue, on http://127.0.0.1:8000 "
            "and metrics on :9090. Every setting is an environment variable (see the README)."
        ),
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    _add_options(parser, suppress=False)
    sub = parser.add_subparsers(dest="command", metavar="{serve,setup}")
    serve = sub.add_parser("serve", help="run the collector (the default command)")
    _add_options(serve, suppress=True)
    setup = sub.add_parser(
        "setup", help="create the bucket, topic and subscription the settings name (idempotent)"
    )
    _add_options(setup, suppress=True)
    setup.add_argument(
        "--dry-run", action="store_true", help="print what would be created; create nothing"
    )
    return parser


def settings_from_args(args: argparse.Namespace) -> Settings:
    overrides = {
        key: value
        for key, value in vars(args).items()
        if key.startswith(("eventkit_", "gcp_")) and value is not None
    }
    return Settings(**overrides)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        settings = settings_from_args(args)
    except ValidationError as exc:
        lines = [
            f"  {'.'.join(str(p) for p in e['loc']) or 'settings'}: {e['msg']}"
            for e in exc.errors()
        ]
        print("eventkit-collector: invalid settings:\n" + "\n".join(lines), file=sys.stderr)
        return 2
    if args.command == "setup":
        from eventkit_collector.setup import run_setup

        return run_setup(settings, args.dry_run)
    from eventkit_collector.server import serve

    return serve(settings)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
