"""deploy/: the Prometheus alert rules pass ``promtool check rules``, and every metric the rules
and the Grafana dashboard query is exposed by a real collector or loader after real traffic."""

from __future__ import annotations

import contextlib
import json
import re
import shutil
import subprocess
import uuid
from pathlib import Path

import httpx

from tests.e2e.conftest import StartCollector, free_port, wait_until
from tests.loader.ld_support import loader_argv, loader_env

DEPLOY = Path(__file__).parents[2] / "deploy"
RULES = DEPLOY / "prometheus" / "alerts.yml"
DASHBOARD = DEPLOY / "grafana" / "eventkit.json"
METRIC = re.compile(r"\b(eventkit_[a-z0-9_]+)\b")
#: Series Prometheus makes itself, not the apps.
PROMETHEUS_OWN = {"up"}


def _exposed(text: str) -> set[str]:
    return {line.split("{", 1)[0].split(" ", 1)[0] for line in text.splitlines() if line[:1] != "#"}


def _used() -> set[str]:
    exprs = [t["expr"] for p in json.loads(DASHBOARD.read_text())["panels"] for t in p["targets"]]
    rules = RULES.read_text()
    rule_exprs = re.findall(r"expr: (?:\|\n)?((?:.|\n)*?)\n\s+(?:for|labels):", rules)
    return {m for text in [*exprs, *rule_exprs] for m in METRIC.findall(text)}


def test_alert_rules_pass_promtool() -> None:
    promtool = shutil.which("promtool")
    assert promtool, "promtool is missing: apt-get install prometheus (.ci/run installs it)"
    done = subprocess.run(
        [promtool, "check", "rules", str(RULES)], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS: 6 rules found" in done.stdout + done.stderr


def test_every_metric_used_is_exposed_after_traffic(
    collector_server: StartCollector, tmp_path: Path
) -> None:
    used = _used()
    assert len(used) >= 10, used  # the regexes found the queries
    data = tmp_path / "data"
    cp = collector_server(data, EVENTKIT_FLUSH_MAX_AGE="0.3")
    good = {"type": "track", "event": "Bought", "userId": "u-1", "messageId": str(uuid.uuid4())}
    for body in (good, {"type": "track"}):  # one stored, one dead letter
        assert httpx.post(f"{cp.url}/v1/track", json=body, timeout=30).status_code == 200
    wait_until(lambda: any(data.rglob("*.parquet")), 60, "the event file")

    port = free_port()
    env = loader_env(EVENTKIT_LOADER_INTERVAL="0.3", EVENTKIT_METRICS_PORT=str(port))
    log = (tmp_path / "loader.log").open("wb")
    loader = subprocess.Popen(
        loader_argv("run", "--data-dir", str(data)), env=env, stdout=log, stderr=log
    )
    try:
        scraped: dict[str, str] = {}

        def loaded() -> bool:
            with contextlib.suppress(httpx.HTTPError):
                scraped["loader"] = httpx.get(f"http://127.0.0.1:{port}/metrics").text
            return "eventkit_warehouse_loader_rows_loaded_total{" in scraped.get("loader", "")

        wait_until(loaded, 120, "the loader's first load in its metrics")
        collector = httpx.get(f"{cp.metrics_url}/metrics", timeout=10).text
        exposed = _exposed(collector) | _exposed(scraped["loader"]) | PROMETHEUS_OWN
    finally:
        loader.terminate()
        loader.wait(60)
        log.close()
    assert used - exposed == set()
