"""A local cloud for a laptop: ``python -m tests.emulators up`` / ``env`` / ``down``.

``up`` starts a detached supervisor process (``python -m tests.emulators _serve``) that runs the
suite's own emulators (:func:`run_gcs`, :func:`run_pubsub`, :func:`run_bigquery`) until it gets
SIGTERM, so the emulators outlive the command and are stopped by the same code the tests use.
The supervisor writes ``state.json`` in the state directory once every emulator answers; ``up``
then creates the bucket, topic, subscription, dataset, table and views and prints the
environment to export. ``down`` sends SIGTERM to the supervisor and waits until every recorded
process is gone.
"""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

from tests.emulators._common import PROJECT, EmulatorError, anonymous_credentials, poll
from tests.emulators.bigquery import run_bigquery
from tests.emulators.gcs import run_gcs
from tests.emulators.pubsub import PubSubEmulator, run_pubsub

REPO_ROOT = Path(__file__).resolve().parents[2]
STATE_FILE = "state.json"
BUCKET = "eventkit-local"
DATASET = "events"
TOPIC = "eventkit-events"
SUBSCRIPTION = "eventkit-events-archive"
#: Generous: the first ``up`` may build the emulators' cached installs.
START_TIMEOUT = 600.0
STOP_TIMEOUT = 60.0


def default_state_dir() -> Path:
    """``EVENTKIT_LOCAL_CLOUD_DIR``, else ``.eventkit-local`` in the current directory."""
    return Path(os.environ.get("EVENTKIT_LOCAL_CLOUD_DIR") or ".eventkit-local").resolve()


def _log(message: str) -> None:
    print(f"[local-cloud] {message}", file=sys.stderr, flush=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # a zombie (exited, not reaped yet) counts as gone
    with contextlib.suppress(OSError):
        stat = Path(f"/proc/{pid}/stat").read_text()
        return stat.rsplit(")", 1)[1].split()[0] != "Z"
    return True


def read_state(state_dir: Path) -> dict[str, Any] | None:
    try:
        state: dict[str, Any] = json.loads((state_dir / STATE_FILE).read_text())
    except (OSError, ValueError):
        return None
    return state


def environment(state: dict[str, Any]) -> dict[str, str]:
    """What the collector and the loader need to use the local cloud."""
    return {
        "STORAGE_EMULATOR_HOST": state["gcs_endpoint"],
        "PUBSUB_EMULATOR_HOST": state["pubsub_host"],
        "EVENTKIT_BIGQUERY_API_ENDPOINT": state["bigquery_endpoint"],
        "GCP_PROJECT_ID": PROJECT,
        "GCP_GCS_BUCKET": BUCKET,
        "GCP_BIGQUERY_DATASET": DATASET,
        "EVENTKIT_EVENT_STORE": "gcs",
        "EVENTKIT_QUEUE_MODE": "pubsub",
        "EVENTKIT_PUBSUB_TOPIC": TOPIC,
        "EVENTKIT_PUBSUB_SUBSCRIPTION": SUBSCRIPTION,
        "EVENTKIT_WAREHOUSE": "bigquery",
    }


def export_lines(state: dict[str, Any]) -> str:
    return "\n".join(f"export {k}={shlex.quote(v)}" for k, v in environment(state).items())


# -- the supervisor ------------------------------------------------------------------------------


def serve(state_dir: Path) -> int:
    """Run the three emulators until SIGTERM / SIGINT; publish their addresses in state.json."""
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    work = state_dir / "emulators"
    with contextlib.ExitStack() as stack:
        gcs = stack.enter_context(run_gcs(work / "gcs"))
        pubsub = stack.enter_context(run_pubsub(work / "pubsub"))
        bigquery = stack.enter_context(run_bigquery(work / "bigquery", gcs))
        pids = [c.process.pid for c in (gcs.control, pubsub.control, bigquery.control) if c]
        state = {
            "supervisor_pid": os.getpid(),
            "pids": pids,
            "gcs_endpoint": gcs.endpoint,
            "gcs_root": str(gcs.root),
            "pubsub_host": pubsub.host,
            "bigquery_endpoint": bigquery.endpoint,
        }
        staging = state_dir / f".{STATE_FILE}.tmp"
        staging.write_text(json.dumps(state, indent=2))
        staging.rename(state_dir / STATE_FILE)
        while not stop.wait(1.0):
            pass
    (state_dir / STATE_FILE).unlink(missing_ok=True)
    return 0


# -- up / env / down -----------------------------------------------------------------------------


def _start_supervisor(state_dir: Path) -> dict[str, Any]:
    state_dir.mkdir(parents=True, exist_ok=True)
    (state_dir / STATE_FILE).unlink(missing_ok=True)
    log_path = state_dir / "supervisor.log"
    with log_path.open("ab") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "tests.emulators", "_serve", "--dir", str(state_dir)],
            cwd=REPO_ROOT,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # not stopped by the terminal's Ctrl-C
        )
    _log(f"starting the emulators (supervisor pid {proc.pid}, log {log_path})")
    poll(lambda: proc.poll() is not None or read_state(state_dir) is not None, START_TIMEOUT)
    state = read_state(state_dir)
    if state is None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(proc.pid, signal.SIGTERM)
        tail = "\n".join(log_path.read_text(errors="replace").splitlines()[-40:])
        raise EmulatorError(f"the emulators did not start; {log_path}:\n{tail}")
    return state


def create_resources(state: dict[str, Any]) -> None:
    """Bucket, topic, subscription; dataset, table and views through ``eventkit-loader``."""
    import google.api_core.exceptions as gexc
    import google.cloud.storage as storage

    env = {**os.environ, **environment(state)}
    client = storage.Client(
        project=PROJECT,
        credentials=anonymous_credentials(),
        client_options={"api_endpoint": state["gcs_endpoint"]},
    )
    with contextlib.suppress(gexc.Conflict):
        client.create_bucket(BUCKET)
    pubsub = PubSubEmulator(host=state["pubsub_host"], port=int(state["pubsub_host"].split(":")[1]))
    publisher, subscriber = pubsub.publisher(), pubsub.subscriber()
    topic = publisher.topic_path(PROJECT, TOPIC)
    with contextlib.suppress(gexc.AlreadyExists):
        publisher.create_topic(name=topic)
    with contextlib.suppress(gexc.AlreadyExists):
        subscriber.create_subscription(
            name=subscriber.subscription_path(PROJECT, SUBSCRIPTION), topic=topic
        )
    subscriber.close()
    done = subprocess.run(
        [sys.executable, "-m", "eventkit_loader", "create-table"],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    if done.returncode != 0:
        raise EmulatorError(f"eventkit-loader create-table failed:\n{done.stdout}{done.stderr}")


def up(state_dir: Path) -> int:
    state = read_state(state_dir)
    if state is not None and _alive(int(state["supervisor_pid"])):
        _log(f"already up (state in {state_dir})")
    else:
        state = _start_supervisor(state_dir)
    create_resources(state)
    _log(f"up: bucket {BUCKET}, topic {TOPIC}, subscription {SUBSCRIPTION}, dataset {DATASET}")
    _log('export the environment: eval "$(uv run python -m tests.emulators env)"')
    print(export_lines(state))
    return 0


def env(state_dir: Path) -> int:
    state = read_state(state_dir)
    if state is None:
        _log(f"not up (no {state_dir / STATE_FILE}): run `python -m tests.emulators up`")
        return 1
    print(export_lines(state))
    return 0


def down(state_dir: Path) -> int:
    state = read_state(state_dir)
    if state is None:
        _log("not up: nothing to stop")
        return 0
    supervisor = int(state["supervisor_pid"])
    pids = [supervisor, *(int(p) for p in state["pids"])]
    with contextlib.suppress(ProcessLookupError):
        os.kill(supervisor, signal.SIGTERM)
    if not poll(lambda: not any(_alive(p) for p in pids), STOP_TIMEOUT, 0.1):
        for pid in pids:  # the supervisor did not stop them in time
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
    (state_dir / STATE_FILE).unlink(missing_ok=True)
    _log("down: emulators stopped")
    return 0
