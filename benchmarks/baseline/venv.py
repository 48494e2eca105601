"""The baseline's own virtualenv: built once, cached, outside the workspace lock.

``~/.cache/eventkit-bench/baseline-<hash>`` (``$XDG_CACHE_HOME`` honoured), built under a file
lock so concurrent runs build it once, with the pinned versions below (the plain original
stack; FastAPI never enters the workspace's lock). The Python is the one running the benchmark.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
import sys
import uuid
from pathlib import Path

from tests.emulators._common import make_venv, pip_install, venv_python

PINS = (
    "fastapi==0.115.6",
    "pydantic==2.10.4",
    "uvicorn==0.34.0",
    "uvloop==0.21.0",
    "httptools==0.6.4",
    "pyarrow==18.1.0",
    "msgspec==0.19.0",
)


def cache_root() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base).expanduser() / "eventkit-bench"


def baseline_python(log: bool = True) -> Path:
    """The venv's python, building the venv first if it is not there."""
    key = hashlib.sha256(("\n".join(PINS) + sys.version).encode()).hexdigest()[:12]
    root = cache_root()
    final = root / f"baseline-{key}"
    ready = final / ".ready"
    if ready.exists():
        return venv_python(final)
    root.mkdir(parents=True, exist_ok=True)
    with (root / f"baseline-{key}.lock").open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not ready.exists():
            if log:
                print(f"building {final} (once; cached for later runs)", file=sys.stderr)
            shutil.rmtree(final, ignore_errors=True)
            staging = root / f".baseline-{key}.{uuid.uuid4().hex[:8]}"
            try:
                make_venv(sys.executable, staging)
                pip_install(staging, *PINS)
                (staging / ".ready").write_text("ok\n")
                staging.rename(final)
            finally:
                shutil.rmtree(staging, ignore_errors=True)
    return venv_python(final)


if __name__ == "__main__":
    print(baseline_python())
