"""``python -m tests.clients install``: prepare every real client the compatibility tests use.

Run from the repository root (``uv run python -m tests.clients install``): one cached venv per Python
SDK, one cached node_modules for the JavaScript packages, and a check that Chromium is installed.
Exits non-zero with what to install when something is missing.
"""

from __future__ import annotations

import argparse
import sys
import time

from tests.clients import PYTHON_CLIENTS, ClientError, chromium, node_modules, python_client


def _install(name: str) -> str:
    if name == "node":
        return str(node_modules())
    if name == "chromium":
        return str(chromium())
    return str(python_client(name))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.clients")
    commands = parser.add_subparsers(dest="command", required=True)
    install = commands.add_parser("install", help="install / check the client libraries")
    choices = [*PYTHON_CLIENTS, "node", "chromium"]
    install.add_argument(
        "names", nargs="*", metavar="NAME", help=f"{', '.join(choices)} (default: all)"
    )
    args = parser.parse_args(argv)
    unknown = sorted(set(args.names) - set(choices))
    if unknown:
        parser.error(f"unknown client(s) {', '.join(unknown)}: choose from {', '.join(choices)}")
    failed = 0
    for name in args.names or choices:
        started = time.monotonic()
        try:
            where = _install(name)
        except ClientError as exc:
            print(f"[clients] {name}: FAILED\n{exc}", file=sys.stderr)
            failed += 1
            continue
        print(f"[clients] {name}: ok ({where}, {time.monotonic() - started:.1f} s)")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
