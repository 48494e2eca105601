"""``python -m tests.emulators install [gcs] [pubsub] [bigquery]``: prepare the emulators.

``up`` / ``env`` / ``down``: a local cloud for a laptop (see :mod:`tests.emulators.local`).

Run from the repository root (``uv run python -m tests.emulators install``). Installs what can be
downloaded into the per-user cache, checks what must be on the machine, and exits non-zero with a
message saying what to install when something is missing.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path

from tests.emulators._common import EmulatorError, cache_root
from tests.emulators.bigquery import install_bigquery
from tests.emulators.gcs import install_gcs
from tests.emulators.pubsub import install_pubsub

INSTALLERS: dict[str, Callable[[], Path]] = {
    "gcs": install_gcs,
    "pubsub": install_pubsub,
    "bigquery": install_bigquery,
}


LOCAL_COMMANDS = {
    "up": "start a local cloud (GCS, Pub/Sub, BigQuery emulators) and print its environment",
    "env": "print the running local cloud's environment (export lines)",
    "down": "stop the local cloud",
    "_serve": "(internal) the supervisor process that `up` starts",
}


def run_local(command: str, state_dir: Path | None) -> int:
    from tests.emulators import local

    where = (state_dir or local.default_state_dir()).resolve()
    actions = {"up": local.up, "env": local.env, "down": local.down, "_serve": local.serve}
    try:
        return actions[command](where)
    except EmulatorError as exc:
        print(f"[local-cloud] FAILED: {exc}", file=sys.stderr)
        return 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.emulators")
    commands = parser.add_subparsers(dest="command", required=True)
    install = commands.add_parser("install", help="install / check the emulators")
    install.add_argument(
        "names", nargs="*", metavar="NAME", help="gcs, pubsub, bigquery (default: all)"
    )
    commands.add_parser("cache-dir", help="print where emulator installs are cached")
    for name, text in LOCAL_COMMANDS.items():
        sub = commands.add_parser(name, help=text)
        sub.add_argument(
            "--dir",
            type=Path,
            default=None,
            help="state directory (default: $EVENTKIT_LOCAL_CLOUD_DIR or ./.eventkit-local)",
        )
    args = parser.parse_args(argv)
    if args.command in LOCAL_COMMANDS:
        return run_local(args.command, args.dir)
    if args.command == "cache-dir":
        print(cache_root())
        return 0
    unknown = sorted(set(args.names) - set(INSTALLERS))
    if unknown:
        parser.error(
            f"unknown emulator(s) {', '.join(unknown)}: choose from {', '.join(INSTALLERS)}"
        )
    failed = 0
    for name in args.names or list(INSTALLERS):
        started = time.monotonic()
        try:
            where = INSTALLERS[name]()
        except EmulatorError as exc:
            print(f"[emulators] {name}: FAILED\n{exc}", file=sys.stderr)
            failed += 1
            continue
        print(f"[emulators] {name}: ok ({where}, {time.monotonic() - started:.1f} s)")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
