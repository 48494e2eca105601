"""deploy/cloudrun and deploy/gke: every manifest parses, names only real settings with valid
values, probes real routes on the right ports, runs the images' programs, keeps GKE's ring
buffer on a volume claim, and is named in the guide. The last tests feed the checks broken
manifests: each check can fail."""

from __future__ import annotations

import copy
import os
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.deploy.manifests import (
    DEPLOY,
    GUIDE,
    Container,
    command_problems,
    containers,
    load_all,
    manifest_files,
    recipe,
    unknown_settings,
)

Docs = dict[str, list[dict[str, Any]]]


def _settings(container: Container, monkeypatch: pytest.MonkeyPatch) -> Any:
    """The app's settings as the container sees them: the image's ENV, then the manifest's."""
    assert container.app is not None
    for name in list(os.environ):
        if name.startswith(("EVENTKIT_", "GCP_")):
            monkeypatch.delenv(name)
    env = {k: v for k, v in recipe(container.app).env.items() if k != "PATH"} | container.env
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    if container.app == "collector":
        from eventkit_collector.publish_ack import ack_mode_problem
        from eventkit_collector.settings import Settings

        settings = Settings()
        problem = ack_mode_problem(settings.eventkit_queue_mode, settings.eventkit_ack_mode)
        assert problem is None, f"{container.where}: {problem}"
        return settings
    from eventkit_loader.settings import load_settings

    loader = load_settings()
    loader.check()
    return loader


def _collector_get_paths(tmp_path: Path) -> set[str]:
    from eventkit_collector.app import create_app
    from eventkit_collector.settings import Settings

    app = create_app(Settings(eventkit_data_dir=tmp_path, eventkit_metrics_enabled=False))
    return {r.path for r in app.routes if "GET" in getattr(r, "methods", ())}


def _loader_answers(path: str) -> bool:
    from eventkit_loader.telemetry import MetricsServer, Telemetry

    server = MetricsServer(Telemetry(), lambda: (True, {}), "127.0.0.1", 0).start()
    try:
        return httpx.get(f"http://127.0.0.1:{server.port}{path}", timeout=5).status_code == 200
    finally:
        server.stop()


def probe_problems(container: Container, settings: Any, collector_paths: set[str]) -> list[str]:
    problems: list[str] = []
    if container.app == "collector":
        http, metrics = settings.eventkit_port, settings.eventkit_metrics_port
    else:
        http, metrics = None, settings.metrics_port
    for name, probe in container.probes():
        where = f"{container.where} {name}"
        if "tcpSocket" in probe:
            if probe["tcpSocket"]["port"] not in {http, metrics}:
                problems.append(f"{where}: port {probe['tcpSocket']['port']} is not served")
            continue
        path, port = probe["httpGet"]["path"], probe["httpGet"]["port"]
        if container.app == "collector" and port == http:
            ok = path in collector_paths
        elif port == metrics:  # both apps' metrics servers answer /health and /metrics
            ok = path in {"/health", "/metrics"} and (
                container.app == "collector" or _loader_answers(path)
            )
        else:
            problems.append(f"{where}: port {port} is neither {http} nor {metrics}")
            continue
        if not ok:
            problems.append(f"{where}: GET {path} on port {port} is no route")
    return problems


def ring_problems(container: Container, settings: Any) -> list[str]:
    """A GKE collector's ring buffer lies on a volume claim of its own."""
    from eventkit_collector.server import FLUSH_GRACE_SECONDS

    problems: list[str] = []
    ring = Path(settings.ring_dir)
    on_claims = [Path(p) for n, p in container.mounts().items() if n in container.claims]
    if not any(ring.is_relative_to(mount) for mount in on_claims):
        problems.append(f"{container.where}: ring buffer {ring} is on no volume claim {on_claims}")
    grace = container.pod.get("terminationGracePeriodSeconds", 30)
    wanted = int(settings.eventkit_shutdown_timeout) + FLUSH_GRACE_SECONDS
    if grace != wanted:
        problems.append(
            f"{container.where}: terminationGracePeriodSeconds {grace}, want {wanted} "
            "(EVENTKIT_SHUTDOWN_TIMEOUT + the final flush)"
        )
    return problems


def all_problems(docs: Docs, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> list[str]:
    paths = _collector_get_paths(tmp_path)
    problems: list[str] = []
    for c in containers(docs):
        found = unknown_settings(c) + command_problems(c)
        if found:
            problems += found
            continue
        settings = _settings(c, monkeypatch)
        problems += probe_problems(c, settings, paths)
        if c.app == "collector" and c.kind == "StatefulSet":
            problems += ring_problems(c, settings)
        # Cloud Run's disk is memory: only Pub/Sub may be what a 200 promises.
        on_cloud_run = c.app == "collector" and c.where.startswith("cloudrun/")
        if on_cloud_run and settings.eventkit_ack_mode != "publish":
            problems.append(f"{c.where}: EVENTKIT_ACK_MODE must be publish on Cloud Run")
    return problems


@pytest.fixture(scope="module")
def docs() -> Docs:
    return load_all()


def test_every_manifest_parses_into_workloads(docs: Docs) -> None:
    assert set(docs) >= {
        "cloudrun/collector.yaml",
        "cloudrun/loader-job.yaml",
        "gke/collector.yaml",
        "gke/loader.yaml",
    }
    kinds = {(c.where.split()[0], c.kind, c.app) for c in containers(docs)}
    assert kinds == {
        ("cloudrun/collector.yaml", "Service", "collector"),
        ("cloudrun/loader-job.yaml", "Job", "loader"),
        ("gke/collector.yaml", "StatefulSet", "collector"),
        ("gke/loader.yaml", "Deployment", "loader"),
    }


def test_manifests_are_consistent_with_the_code(
    docs: Docs, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    assert all_problems(docs, monkeypatch, tmp_path) == []


def test_workload_identity_and_service_accounts(docs: Docs) -> None:
    accounts = {
        d["metadata"]["name"]: d["metadata"]["annotations"]["iam.gke.io/gcp-service-account"]
        for d in docs["gke/serviceaccounts.yaml"]
    }
    for c in containers(docs):
        account = c.pod["serviceAccountName"]
        if c.where.startswith("gke/"):
            assert accounts[account].startswith(f"eventkit-{c.app}@"), c.where
        else:
            assert account.startswith(f"eventkit-{c.app}@"), c.where


def test_the_guide_names_every_manifest() -> None:
    guide = GUIDE.read_text()
    missing = [str(p.relative_to(DEPLOY)) for p in manifest_files()]
    assert [m for m in missing if f"deploy/{m}" not in guide] == []
    assert "deploy/GUIDE.md" in (DEPLOY.parent / "README.md").read_text()


# --- the checks can fail --------------------------------------------------------------------------


def _env(container_doc: dict[str, Any]) -> list[dict[str, Any]]:
    env: list[dict[str, Any]] = container_doc["spec"]["template"]["spec"]["containers"][0]["env"]
    return env


def test_a_misspelt_setting_is_caught(docs: Docs) -> None:
    broken = copy.deepcopy(docs)
    for item in _env(broken["cloudrun/collector.yaml"][0]):
        if item["name"] == "EVENTKIT_ACK_MODE":
            item["name"] = "EVENTKIT_ACK_MDOE"
    problems = [p for c in containers(broken) for p in unknown_settings(c)]
    assert problems == [
        "cloudrun/collector.yaml Service/eventkit-collector: EVENTKIT_ACK_MDOE is not an "
        "eventkit-collector setting"
    ]


def test_a_loader_only_setting_in_the_collector_map_is_caught(docs: Docs) -> None:
    broken = copy.deepcopy(docs)
    broken["gke/configmap.yaml"][0]["data"]["EVENTKIT_LOADER_INTERVAL"] = "60"
    problems = [p for c in containers(broken) for p in unknown_settings(c)]
    assert len(problems) == 1
    assert "EVENTKIT_LOADER_INTERVAL is not an eventkit-collector setting" in problems[0]


def test_a_bad_probe_mount_grace_or_command_is_caught(
    docs: Docs, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    broken = copy.deepcopy(docs)
    gke = next(d for d in broken["gke/collector.yaml"] if d["kind"] == "StatefulSet")
    pod = gke["spec"]["template"]["spec"]
    pod["containers"][0]["readinessProbe"]["httpGet"]["path"] = "/healthz"
    pod["containers"][0]["volumeMounts"][0]["mountPath"] = "/var/lib/eventkit"
    pod["terminationGracePeriodSeconds"] = 30
    job = broken["cloudrun/loader-job.yaml"][0]
    job["spec"]["template"]["spec"]["template"]["spec"]["containers"][0]["command"] = [
        "eventkit-loader",
        "onse",
    ]
    for item in _env(broken["cloudrun/collector.yaml"][0]):
        if item["name"] == "EVENTKIT_ACK_MODE":
            item["value"] = "commit"
    problems = all_problems(broken, monkeypatch, tmp_path)
    text = "\n".join(problems)
    assert "readinessProbe: GET /healthz on port 8000 is no route" in text
    assert "ring buffer /data/ring is on no volume claim" in text
    assert "terminationGracePeriodSeconds 30, want 60" in text
    assert "`eventkit-loader onse` is no loader command" in text
    assert "EVENTKIT_ACK_MODE must be publish on Cloud Run" in text
    assert len(problems) == 5, text
