"""Google's Cloud Pub/Sub emulator (a Java program shipped with the Google Cloud CLI)."""

from __future__ import annotations

import contextlib
import shutil
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tests.emulators._common import (
    LOCALHOST,
    PROJECT,
    EmulatorControl,
    EmulatorError,
    EmulatorProcess,
    http_ok,
    start_controllable,
    tcp_open,
)

if TYPE_CHECKING:
    import google.cloud.pubsub_v1 as pubsub_v1

START_TIMEOUT = 90.0  # a JVM on a busy 2-core machine
LAUNCHER = "cloud-pubsub-emulator"
INSTALL_HINT = (
    "Install Google's Pub/Sub emulator and a Java runtime (17+): "
    "`gcloud components install pubsub-emulator`, or on Debian/Ubuntu with Google's apt "
    "repository `apt-get install google-cloud-cli-pubsub-emulator default-jre-headless`."
)
_SDK_ROOTS = (
    "/usr/lib/google-cloud-sdk",
    "/usr/share/google-cloud-sdk",
    "/opt/google-cloud-sdk",
    "~/google-cloud-sdk",
)


def find_pubsub_emulator() -> Path:
    """The emulator's launcher script; EmulatorError (saying how to install it) when absent."""
    candidates: list[Path] = []
    on_path = shutil.which(LAUNCHER)
    if on_path:
        candidates.append(Path(on_path))
    gcloud = shutil.which("gcloud")
    if gcloud:  # <sdk>/bin/gcloud -> <sdk>/platform/pubsub-emulator/bin/...
        sdk = Path(gcloud).resolve().parent.parent
        candidates.append(sdk / "platform" / "pubsub-emulator" / "bin" / LAUNCHER)
    candidates += [
        Path(root).expanduser() / "platform" / "pubsub-emulator" / "bin" / LAUNCHER
        for root in _SDK_ROOTS
    ]
    launcher = next((c for c in candidates if c.is_file()), None)
    if launcher is None:
        looked = ", ".join(str(c) for c in candidates)
        raise EmulatorError(f"Pub/Sub emulator not found (looked at {looked}). {INSTALL_HINT}")
    if shutil.which("java") is None:
        raise EmulatorError(f"found {launcher} but no `java` on PATH. {INSTALL_HINT}")
    return launcher


@dataclass(frozen=True)
class PubSubEmulator:
    """A running Pub/Sub emulator. ``host`` is the value for PUBSUB_EMULATOR_HOST (no scheme)."""

    host: str  # 127.0.0.1:PORT
    port: int
    project: str = PROJECT
    #: Pause / resume (or stop: state is in memory) it: only on an emulator of a test's own.
    control: EmulatorControl | None = field(default=None, compare=False, repr=False)

    def publisher(self, **kwargs: Any) -> pubsub_v1.PublisherClient:
        """A PublisherClient on this emulator (``publisher_options=...`` etc. pass through)."""
        import google.cloud.pubsub_v1 as pubsub_v1
        import grpc  # type: ignore[import-untyped]
        from google.pubsub_v1.services.publisher.transports import PublisherGrpcTransport

        transport = PublisherGrpcTransport(channel=grpc.insecure_channel(self.host))
        return pubsub_v1.PublisherClient(transport=transport, **kwargs)

    def subscriber(self, **kwargs: Any) -> pubsub_v1.SubscriberClient:
        """A SubscriberClient on this emulator."""
        import google.cloud.pubsub_v1 as pubsub_v1
        import grpc  # type: ignore[import-untyped]
        from google.pubsub_v1.services.subscriber.transports import SubscriberGrpcTransport

        transport = SubscriberGrpcTransport(channel=grpc.insecure_channel(self.host))
        return pubsub_v1.SubscriberClient(transport=transport, **kwargs)

    def topic_path(self, topic: str) -> str:
        return f"projects/{self.project}/topics/{topic}"

    def subscription_path(self, subscription: str) -> str:
        return f"projects/{self.project}/subscriptions/{subscription}"

    @staticmethod
    def new_name(prefix: str = "test") -> str:
        """A topic / subscription id no other test uses."""
        return f"{prefix}-{uuid.uuid4().hex[:16]}"


def install_pubsub() -> Path:
    """Nothing to download: check the emulator is on this machine and return its launcher."""
    return find_pubsub_emulator()


@contextlib.contextmanager
def run_pubsub(workdir: Path) -> Iterator[PubSubEmulator]:
    """Start the emulator on a free port (state in memory); stop it after."""
    launcher = find_pubsub_emulator()
    workdir.mkdir(parents=True, exist_ok=True)

    def launch(ports: list[int]) -> EmulatorProcess:
        argv = [str(launcher), f"--host={LOCALHOST}", f"--port={ports[0]}"]
        return EmulatorProcess("Pub/Sub emulator", argv, workdir / "pubsub.log", cwd=workdir)

    def ready(ports: list[int]) -> bool:
        # TCP first (cheap), then a real ListTopics call through the emulator's REST surface.
        return tcp_open(LOCALHOST, ports[0]) and http_ok(
            f"http://{LOCALHOST}:{ports[0]}/v1/projects/{PROJECT}/topics"
        )

    control = start_controllable(1, launch, ready, START_TIMEOUT, hint=INSTALL_HINT)
    (port,) = control.ports
    try:
        yield PubSubEmulator(host=f"{LOCALHOST}:{port}", port=port, control=control)
    finally:
        control.stop()
