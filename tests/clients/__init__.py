"""Real client libraries for the compatibility tests: the SDKs people ship, installed unchanged.

Python SDKs each get their own cached virtualenv (their dependency ranges differ and none of them may
leak into the workspace); JavaScript packages share one cached ``node_modules``; browser tests drive
the machine's Chromium. Everything is built once under a lock and reused
(``uv run python -m tests.clients install`` prepares it all, as ``.ci/run`` does). A client that cannot
be installed fails its tests with what to install; nothing is skipped.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
from collections.abc import Mapping
from pathlib import Path

from tests.emulators._common import (
    EmulatorError,
    cached_build,
    make_venv,
    pip_install,
    run_checked,
    stderr_log,
    venv_python,
)


class ClientError(EmulatorError):
    """A client library or browser could not be installed or found; the message says what to do."""


# name -> (distribution, pinned version). Pins keep the tests about *that* SDK version; the README's
# SDK table names the same versions. Bump a pin and the cache key changes, so the venv is rebuilt.
PYTHON_CLIENTS: dict[str, tuple[str, str]] = {
    "segment": ("segment-analytics-python", "2.4.0"),
    "rudderstack": ("rudder-sdk-python", "2.1.9"),
    "posthog": ("posthog", "7.91.1"),
    "amplitude": ("amplitude-analytics", "1.3.0"),
    "snowplow": ("snowplow-tracker", "1.1.0"),
}

# npm package -> pinned version, installed together into one cached node_modules.
NODE_PACKAGES: dict[str, str] = {
    "@segment/analytics-node": "3.1.0",
    "@rudderstack/rudder-sdk-node": "3.0.13",
    "@segment/analytics-next": "1.84.3",
    "posthog-js": "1.449.2",
    "@snowplow/browser-tracker": "4.10.1",
}

CHROMIUM_CANDIDATES = ("/usr/bin/chromium", "/usr/bin/chromium-browser")


def python_client(name: str) -> Path:
    """The python of a cached venv holding only the SDK ``name`` (a key of PYTHON_CLIENTS)."""
    dist, version = PYTHON_CLIENTS[name]
    key = f"client-py-{dist}-{version}-r1"

    def build(staging: Path) -> None:
        make_venv(shutil.which("python3") or "python3", staging)
        pip_install(staging, f"{dist}=={version}")

    try:
        return venv_python(cached_build(key, build, stderr_log))
    except EmulatorError as exc:
        raise ClientError(f"cannot install the {dist}=={version} client: {exc}") from exc


def run_python_client(
    name: str, script: str, env: Mapping[str, str] | None = None, timeout: float = 60.0
) -> subprocess.CompletedProcess[str]:
    """Run ``script`` with the SDK ``name``'s interpreter; raise ClientError when it fails."""
    done = subprocess.run(
        [str(python_client(name)), "-c", script],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
        check=False,
    )
    if done.returncode != 0:
        raise ClientError(
            f"the {name} client script failed (exit {done.returncode}):\n{done.stdout}\n{done.stderr}"
        )
    return done


def node() -> str:
    """The machine's Node.js binary."""
    found = shutil.which("node")
    if found is None:
        raise ClientError("Node.js is not installed: install the nodejs and npm packages")
    return found


def node_modules() -> Path:
    """A cached directory whose ``node_modules`` holds every package of NODE_PACKAGES."""
    pins = " ".join(f"{name}@{version}" for name, version in NODE_PACKAGES.items())
    key = _node_key()

    def build(staging: Path) -> None:
        npm = shutil.which("npm")
        if npm is None:
            raise ClientError("npm is not installed: install the nodejs and npm packages")
        staging.mkdir(parents=True, exist_ok=True)
        manifest = {"name": "eventkit-client-tests", "private": True, "dependencies": NODE_PACKAGES}
        (staging / "package.json").write_text(json.dumps(manifest, indent=2))
        run_checked(
            [
                npm,
                "install",
                "--no-audit",
                "--no-fund",
                "--loglevel=error",
                "--prefix",
                str(staging),
            ],
            f"npm install ({pins})",
            env={**os.environ, "npm_config_cache": str(staging.parent / ".npm-cache")},
        )

    try:
        return cached_build(key, build, stderr_log)
    except EmulatorError as exc:
        raise ClientError(f"cannot install the JavaScript clients: {exc}") from exc


def _node_key() -> str:
    pins = json.dumps(NODE_PACKAGES, sort_keys=True).encode()
    return f"client-node-{hashlib.sha256(pins).hexdigest()[:12]}"


def run_node_script(
    script: str, env: Mapping[str, str] | None = None, timeout: float = 60.0
) -> subprocess.CompletedProcess[str]:
    """Run a CommonJS ``script`` with the cached node_modules on its module path."""
    root = node_modules()
    done = subprocess.run(
        [node(), "-e", script],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=root,
        env={**os.environ, "NODE_PATH": str(root / "node_modules"), **(env or {})},
        check=False,
    )
    if done.returncode != 0:
        raise ClientError(
            f"the node script failed (exit {done.returncode}):\n{done.stdout}\n{done.stderr}"
        )
    return done


def chromium() -> Path:
    """Debian's Chromium (``apt-get install chromium chromium-driver``), for browser tests."""
    for candidate in CHROMIUM_CANDIDATES:
        if Path(candidate).exists():
            return Path(candidate)
    raise ClientError("Chromium is not installed: apt-get install chromium chromium-driver")


# Flags for headless Chromium on a machine with a closed network: without the background-networking
# ones, Chromium keeps trying Google's hosts and its refused connections slow every start.
CHROMIUM_ARGS = (
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
)
