"""deploy/*.Dockerfile: the recipe's install (``RUN uv sync ...``) and start (``CMD``) commands,
run as written in a fresh venv (no container engine here), give an app that answers /health."""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import subprocess
from pathlib import Path

import httpx
import pytest

from tests.e2e.conftest import free_port, wait_until

ROOT = Path(__file__).parents[2]


def _recipe(app: str) -> tuple[list[str], list[str], dict[str, str]]:
    """(the uv sync argv, the CMD argv, the runtime ENV) of deploy/<app>.Dockerfile."""
    lines = (ROOT / "deploy" / f"{app}.Dockerfile").read_text().splitlines()
    install = [shlex.split(x[4:]) for x in lines if x.startswith("RUN uv sync ")]
    cmd = [json.loads(x[4:]) for x in lines if x.startswith("CMD ")]
    env_lines = [shlex.split(x[4:]) for x in lines if x.startswith("ENV ")]
    assert len(install) == 1, "one `RUN uv sync` line"
    assert len(cmd) == 1, "one CMD line"
    runtime_env = dict(kv.split("=", 1) for kv in env_lines[-1])
    return install[0], cmd[0], runtime_env


@pytest.mark.parametrize(("app", "other"), [("collector", "loader"), ("loader", "collector")])
def test_recipe_installs_and_answers_health(app: str, other: str, tmp_path: Path) -> None:
    install, cmd, runtime_env = _recipe(app)
    assert "--frozen" in install
    assert "--no-dev" in install
    venv = tmp_path / "venv"
    build_env = {k: v for k, v in os.environ.items() if k != "VIRTUAL_ENV"}
    build_env |= {"UV_PROJECT_ENVIRONMENT": str(venv), "UV_PYTHON_DOWNLOADS": "never"}
    uv = os.environ.get("UV", "uv")
    done = subprocess.run(
        [uv, *install[1:]],
        cwd=ROOT,
        env=build_env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert not (venv / "bin" / "pytest").exists(), "dev dependencies in the image"
    assert not (
        venv / "bin" / f"eventkit-{'loader' if app == 'collector' else 'collector'}"
    ).exists()

    data = tmp_path / "data"
    data.mkdir()
    port, health = free_port(), free_port()
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("EVENTKIT_", "GCP_", "VIRTUAL_ENV"))
    }
    env |= {k: v for k, v in runtime_env.items() if k != "PATH"}
    env |= {
        "PATH": f"{venv / 'bin'}:{env.get('PATH', '')}",
        "EVENTKIT_DATA_DIR": str(data),  # /data in the image
        "EVENTKIT_HOST": "127.0.0.1",
        "EVENTKIT_METRICS_HOST": "127.0.0.1",
        "EVENTKIT_PORT": str(port),
        "EVENTKIT_METRICS_PORT": str(health),  # both apps answer /health there
    }
    log = (tmp_path / f"{app}.log").open("wb")
    proc = subprocess.Popen(cmd, cwd=data, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:

        def healthy() -> bool:
            assert proc.poll() is None, (tmp_path / f"{app}.log").read_text()
            with contextlib.suppress(httpx.HTTPError):
                return httpx.get(f"http://127.0.0.1:{health}/health", timeout=2).status_code == 200
            return False

        wait_until(healthy, 90, f"the {app} from the recipe to answer /health")
    finally:
        proc.terminate()
        proc.wait(60)
        log.close()
