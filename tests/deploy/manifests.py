"""Reading deploy/cloudrun and deploy/gke, and the checks tests/deploy runs on them.

Each check returns the problems it found (empty: fine), so a test can also feed it a broken
manifest and see the problem reported.
"""

from __future__ import annotations

import json
import shlex
import string
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import yaml

ROOT = Path(__file__).parents[2]
DEPLOY = ROOT / "deploy"
GUIDE = DEPLOY / "GUIDE.md"
#: The ${NAME} placeholders the guide tells users to export, with sample values.
PLACEHOLDERS: Final = {
    "PROJECT_ID": "my-project",
    "REGION": "europe-west1",
    "BUCKET": "my-project-events",
    "IMAGE_TAG": "0.1.0",
    "BQ_LOCATION": "EU",
}
APPS: Final = ("collector", "loader")


def manifest_files() -> list[Path]:
    return sorted([*DEPLOY.glob("cloudrun/*.yaml"), *DEPLOY.glob("gke/*.yaml")])


def load(path: Path) -> list[dict[str, Any]]:
    """The documents of one manifest, placeholders filled in (an unknown one raises KeyError)."""
    text = string.Template(path.read_text()).substitute(PLACEHOLDERS)
    return [doc for doc in yaml.safe_load_all(text) if doc is not None]


@dataclass(frozen=True)
class Recipe:
    """What deploy/<app>.Dockerfile says: the CMD and the runtime stage's ENV."""

    cmd: list[str]
    env: dict[str, str]


def recipe(app: str) -> Recipe:
    lines = (DEPLOY / f"{app}.Dockerfile").read_text().splitlines()
    cmd = [json.loads(x[4:]) for x in lines if x.startswith("CMD ")]
    env_lines = [shlex.split(x[4:]) for x in lines if x.startswith("ENV ")]
    return Recipe(cmd[-1], dict(kv.split("=", 1) for kv in env_lines[-1]))


@dataclass
class Container:
    where: str  # "gke/collector.yaml StatefulSet/eventkit-collector"
    kind: str
    app: str | None  # from the image name; None: not one of ours
    argv: list[str]
    env: dict[str, str]
    spec: dict[str, Any]
    pod: dict[str, Any]
    claims: set[str] = field(default_factory=set)  # volumeClaimTemplates names

    def mounts(self) -> dict[str, str]:
        return {m["name"]: m["mountPath"] for m in self.spec.get("volumeMounts", [])}

    def probes(self) -> Iterator[tuple[str, dict[str, Any]]]:
        for name in ("startupProbe", "readinessProbe", "livenessProbe"):
            if name in self.spec:
                yield name, self.spec[name]


def _pod_spec(doc: dict[str, Any]) -> dict[str, Any] | None:
    kind, spec = doc.get("kind"), doc.get("spec", {})
    if kind == "Service" and str(doc.get("apiVersion", "")).startswith("serving.knative.dev"):
        return dict(spec["template"]["spec"])
    if kind == "Job" and str(doc.get("apiVersion", "")).startswith("run.googleapis.com"):
        return dict(spec["template"]["spec"]["template"]["spec"])
    if kind in {"StatefulSet", "Deployment"}:
        return dict(spec["template"]["spec"])
    return None


def app_of(image: str) -> str | None:
    name = image.rsplit("/", 1)[-1].split(":", 1)[0]
    return name.removeprefix("eventkit-") if name in {f"eventkit-{a}" for a in APPS} else None


def containers(docs_by_file: Mapping[str, list[dict[str, Any]]]) -> list[Container]:
    """Every container of every workload, its env resolved (ConfigMaps of the same manifests)."""
    all_docs = [doc for docs in docs_by_file.values() for doc in docs]
    maps = {
        d["metadata"]["name"]: {k: str(v) for k, v in d.get("data", {}).items()}
        for d in all_docs
        if d.get("kind") == "ConfigMap"
    }
    out: list[Container] = []
    for file, docs in docs_by_file.items():
        for doc in docs:
            pod = _pod_spec(doc)
            if pod is None:
                continue
            claims = {t["metadata"]["name"] for t in doc["spec"].get("volumeClaimTemplates", [])}
            for spec in pod["containers"]:
                app = app_of(spec["image"])
                env: dict[str, str] = {}
                for source in spec.get("envFrom", []):
                    env |= maps.get(source["configMapRef"]["name"], {})
                env |= {e["name"]: str(e["value"]) for e in spec.get("env", [])}
                argv = [*spec.get("command", []), *spec.get("args", [])]
                if not argv and app is not None:
                    argv = recipe(app).cmd
                where = f"{file} {doc['kind']}/{doc['metadata']['name']}"
                out.append(Container(where, doc["kind"], app, argv, env, spec, pod, claims))
    return out


def load_all() -> dict[str, list[dict[str, Any]]]:
    return {str(p.relative_to(DEPLOY)): load(p) for p in manifest_files()}


# --- the settings each app reads ---------------------------------------------------------------


def collector_setting_names() -> set[str]:
    from eventkit_collector.settings import Settings

    return {name.upper() for name in Settings.model_fields}


def loader_setting_names() -> set[str]:
    from eventkit_loader.settings import LoaderSettings
    from pydantic import AliasChoices

    names: set[str] = set()
    for info in LoaderSettings.model_fields.values():
        alias = info.validation_alias
        if isinstance(alias, AliasChoices):
            names |= {c for c in alias.choices if isinstance(c, str)}
        elif isinstance(alias, str):
            names.add(alias)
    return names


def unknown_settings(container: Container) -> list[str]:
    """Env names that are no setting of the container's app (the app would ignore them)."""
    if container.app is None:
        return [f"{container.where}: image {container.spec['image']!r} is not eventkit's"]
    known = collector_setting_names() if container.app == "collector" else loader_setting_names()
    return [
        f"{container.where}: {name} is not an eventkit-{container.app} setting"
        for name in sorted(container.env)
        if name not in known
    ]


def command_problems(container: Container) -> list[str]:
    """The command is the image's program; a loader subcommand must parse."""
    if container.app is None:
        return [f"{container.where}: not an eventkit image"]
    cmd = recipe(container.app).cmd
    if container.argv[:1] != cmd[:1]:
        return [f"{container.where}: runs {container.argv} but the image's program is {cmd[0]}"]
    if container.app == "collector":
        return [] if container.argv == cmd else [f"{container.where}: {container.argv} != {cmd}"]
    from eventkit_loader.cli import build_parser

    try:
        build_parser().parse_args(container.argv[1:])
    except SystemExit:
        return [f"{container.where}: `{shlex.join(container.argv)}` is no loader command"]
    return []
