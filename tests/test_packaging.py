"""Every package builds alone and its wheel installs and imports in a clean venv.

Each distribution is built with ``uv build --package X --no-sources`` (sdist, then the wheel from
it), then installed into a fresh virtualenv with only its declared dependencies. Sibling eventkit
distributions are not published, so they come from the wheels just built (``--find-links``); the
test checks that the versions installed are exactly those.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Dist:
    name: str  # distribution name
    module: str  # top-level import name
    library: bool  # a library must not pull the heavy optional backends
    script: str | None = None  # console script an app installs


DISTS = (
    Dist("eventkit-core", "eventkit_core", library=True),
    Dist("eventkit-validators", "eventkit_validators", library=True),
    Dist("eventkit-ring-buffer", "eventkit_ring_buffer", library=True),
    Dist("eventkit-queues", "eventkit_queues", library=True),
    Dist("eventkit-storage", "eventkit_storage", library=True),
    Dist("eventkit-collector", "eventkit_collector", library=False, script="eventkit-collector"),
    Dist("eventkit-loader", "eventkit_loader", library=False, script="eventkit-loader"),
)

# What a library installed without extras must never bring along.
HEAVY = re.compile(r"^(google-cloud-.*|google-api-core|grpcio.*|litestar.*|uvicorn|duckdb)$")


def _uv() -> str:
    uv = os.environ.get("UV") or shutil.which("uv")
    if not uv:
        pytest.fail("the packaging test needs uv on PATH (python -m pip install uv)", pytrace=False)
    return uv


def _run(argv: Sequence[str], cwd: Path | None = None) -> str:
    env = {**os.environ, "UV_PYTHON_DOWNLOADS": "never"}
    env.pop("VIRTUAL_ENV", None)  # never act on the workspace venv by accident
    done = subprocess.run(list(argv), cwd=cwd, capture_output=True, text=True, env=env, check=False)
    if done.returncode != 0:
        pytest.fail(
            f"command failed (exit {done.returncode}): {' '.join(argv)}\n{done.stdout}\n{done.stderr}",
            pytrace=False,
        )
    return done.stdout


def _dist_file_prefix(name: str) -> str:
    return name.replace("-", "_")


@pytest.fixture(scope="session")
def built_wheels(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Build every distribution once; map its name to its wheel."""
    out = tmp_path_factory.mktemp("dist")
    uv = _uv()
    for dist in DISTS:
        _run(
            [uv, "build", "--quiet", "--package", dist.name, "--no-sources", "--out-dir", str(out)],
            cwd=ROOT,
        )
    wheels: dict[str, Path] = {}
    for dist in DISTS:
        found = sorted(out.glob(f"{_dist_file_prefix(dist.name)}-*.whl"))
        sdists = sorted(out.glob(f"{_dist_file_prefix(dist.name)}-*.tar.gz"))
        assert len(found) == 1, f"expected one wheel for {dist.name}, found {found}"
        assert len(sdists) == 1, f"expected one sdist for {dist.name}, found {sdists}"
        wheels[dist.name] = found[0]
    return wheels


def _wheel_version(wheel: Path) -> str:
    return wheel.name.split("-")[1]


@pytest.mark.parametrize("dist", DISTS, ids=[d.name for d in DISTS])
def test_wheel_installs_alone_and_imports(
    dist: Dist, built_wheels: dict[str, Path], tmp_path: Path
) -> None:
    uv = _uv()
    wheel = built_wheels[dist.name]
    venv = tmp_path / "venv"
    _run([uv, "venv", "--quiet", "--python", sys.executable, str(venv)])
    python = str(venv / "bin" / "python")
    links = str(wheel.parent)
    _run([uv, "pip", "install", "--quiet", "--python", python, "--find-links", links, str(wheel)])

    listed = json.loads(_run([uv, "pip", "list", "--python", python, "--format", "json"]))
    installed = {row["name"].lower(): row["version"] for row in listed}

    # siblings came from the wheels built here, not from anywhere else
    for name, version in installed.items():
        if name.startswith("eventkit-"):
            assert name in built_wheels, f"{dist.name} pulled an unknown eventkit dist {name}"
            assert version == _wheel_version(built_wheels[name]), (name, version)

    if dist.library:
        heavy = sorted(name for name in installed if HEAVY.match(name))
        assert not heavy, f"{dist.name} (no extras) pulls heavy dependencies: {heavy}"
    if dist.name == "eventkit-validators":
        assert set(installed) == {"eventkit-core", "eventkit-validators", "msgspec"}, installed

    code = f"import {dist.module} as m; print(m.__version__)"
    out = _run([python, "-c", code], cwd=tmp_path)  # not the checkout: no source on sys.path
    assert out.strip() == _wheel_version(wheel)

    if dist.script is not None:  # the app's console script is installed and answers --help
        help_text = _run([str(venv / "bin" / dist.script), "--help"], cwd=tmp_path)
        assert dist.script in help_text, help_text
        assert "--data-dir" in help_text, help_text
