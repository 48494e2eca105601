"""local-bigquery: a DuckDB-backed BigQuery emulator, in its own Python 3.13 virtualenv.

Its ``gs://bucket/path`` URIs are read from fake-gcs-server's filesystem root (GCS_LOCAL_ROOT), so
what a test uploads through the GCS client is exactly what a load job reads.

What it supports (probed against local-bigquery 0.4.0 with DuckDB 1.5.5 through the official
google-cloud-bigquery client; the smoke tests keep the parts later work relies on honest):

- load jobs: ``load_table_from_uri`` with PARQUET (also ``gs://bucket/prefix/*.parquet`` wildcards),
  WRITE_APPEND / WRITE_TRUNCATE, into new tables (schema from the file) or existing ones;
- ``client.query(...)``, ``client.get_job(job_id)`` (state DONE, ``output_rows``, destination),
  a fixed ``job_id`` used twice -> 409 ``google.api_core.exceptions.Conflict`` ("Already Exists"),
  an unknown job id -> 404 NotFound;
- ``CREATE VIEW`` / ``CREATE OR REPLACE VIEW`` and API views (``Table.view_query``);
- ``QUALIFY ROW_NUMBER() OVER (PARTITION BY message_id ORDER BY ...) = 1`` (with or without WHERE);
- ``MERGE ... WHEN MATCHED THEN UPDATE ... WHEN NOT MATCHED THEN INSERT (...)`` and ``INSERT ROW``;
- time partitioning + clustering, both through the API (``TimePartitioning(field=...)``,
  ``clustering_fields``) and DDL (``PARTITION BY DATE(ts) CLUSTER BY a, b``); ``get_table`` returns
  them; loads into a partitioned table work (DuckDB does not really partition: it is metadata);
- JSON columns, ``JSON_VALUE``, ``TO_JSON_STRING``, INFORMATION_SCHEMA.TABLES, ``insert_rows_json``.

Known limits:

- object paths with ``key=value`` segments (``.../dt=2024-01-01/x.parquet``) are read with DuckDB's
  hive partitioning: the load gains an extra column (``dt``), which breaks loads into an existing
  table whose schema lacks it. Keep ``=`` out of object paths.
- the BigQuery client retries 5xx answers for 600 s by default: give calls in tests
  ``retry=short_retry()`` and ``job.result(timeout=...)``.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
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
    run_checked,
    start_controllable,
    stderr_log,
    tcp_open,
    venv_python,
)
from tests.emulators.gcs import GcsEmulator

if TYPE_CHECKING:
    from google.api_core.retry import Retry
    from google.cloud import bigquery

LOCAL_BIGQUERY_VERSION = "0.4.0"
# local-bigquery 0.4.0 declares duckdb>=2, whose extensions would be downloaded at run time (no
# network here). DuckDB 1.5.5 works and its extensions ship as PyPI packages, installed in a second
# step (a combined install, or `pip check`, would report the conflict).
DUCKDB_VERSION = "1.5.5"
DUCKDB_EXTENSIONS = ("icu", "ducklake", "spatial")
PYTHON_MINOR = (3, 13)
START_TIMEOUT = 90.0
PYTHON_HINT = (
    "local-bigquery needs Python 3.13: install one (`pyenv install 3.13`, `uv python install "
    "3.13`, or your OS package) or point EVENTKIT_BIGQUERY_PYTHON at its interpreter."
)
_CHECK = "import sys; print(sys.executable if sys.version_info[:2] == (3, 13) else '')"


def _python_candidates() -> list[str]:
    found: list[str] = []
    explicit = os.environ.get("EVENTKIT_BIGQUERY_PYTHON")
    if explicit:
        found.append(explicit)
    roots: list[Path] = []
    if shutil.which("pyenv"):
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            out = subprocess.run(["pyenv", "root"], capture_output=True, text=True, timeout=10)
            if out.returncode == 0 and out.stdout.strip():
                roots.append(Path(out.stdout.strip()))
    if os.environ.get("PYENV_ROOT"):
        roots.append(Path(os.environ["PYENV_ROOT"]))
    roots.append(Path.home() / ".pyenv")
    for root in roots:
        found += [str(p) for p in sorted((root / "versions").glob("3.13*/bin/python3"))]
    for name in ("python3.13",):
        on_path = shutil.which(name)
        if on_path:
            found.append(on_path)
    uv = shutil.which("uv")
    if uv:
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            out = subprocess.run(
                [uv, "python", "find", "3.13"],
                capture_output=True,
                text=True,
                timeout=30,
                env={**os.environ, "UV_PYTHON_DOWNLOADS": "never"},
            )
            if out.returncode == 0 and out.stdout.strip():
                found.append(out.stdout.strip())
    return list(dict.fromkeys(found))


def find_python313() -> tuple[str, str]:
    """(interpreter path, full version) of a working Python 3.13; EmulatorError when none."""
    for candidate in _python_candidates():
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            out = subprocess.run(
                [candidate, "-c", _CHECK + "; print('%d.%d.%d' % sys.version_info[:3])"],
                capture_output=True,
                text=True,
                timeout=30,
            )
            lines = out.stdout.split()
            if out.returncode == 0 and len(lines) == 2:
                return lines[0], lines[1]
    raise EmulatorError(f"no Python 3.13 found. {PYTHON_HINT}")


def _duckdb_home(venv: Path) -> Path:
    return venv / "duckdb-home"


def _build(python: str, staging: Path) -> None:
    make_venv(python, staging)
    pip_install(staging, f"local-bigquery=={LOCAL_BIGQUERY_VERSION}")
    pip_install(
        staging,
        f"duckdb=={DUCKDB_VERSION}",
        *(f"duckdb-extension-{name}=={DUCKDB_VERSION}" for name in DUCKDB_EXTENSIONS),
    )
    python_in_venv = str(venv_python(staging))
    platform = run_checked(
        [
            python_in_venv,
            "-c",
            "import duckdb; print(duckdb.execute('PRAGMA platform').fetchone()[0])",
        ],
        "asking DuckDB for its platform",
    ).strip()
    target = _duckdb_home(staging) / ".duckdb" / "extensions" / f"v{DUCKDB_VERSION}" / platform
    target.mkdir(parents=True)
    for name in DUCKDB_EXTENSIONS:
        pattern = f"lib/python*/site-packages/duckdb_extension_{name}/**/{name}.duckdb_extension"
        files = sorted(staging.glob(pattern))
        if not files:
            raise EmulatorError(
                f"duckdb-extension-{name}=={DUCKDB_VERSION} has no {name}.duckdb_extension"
            )
        shutil.copy2(files[0], target / files[0].name)
    run_checked(
        [
            python_in_venv,
            "-c",
            "import local_bigquery.cli, duckdb; assert duckdb.__version__ == "
            f"{DUCKDB_VERSION!r}, duckdb.__version__",
        ],
        "checking the local-bigquery install",
    )


def install_bigquery(log: bool = True) -> Path:
    """Ensure the cached local-bigquery virtualenv exists; return its directory."""
    python, version = find_python313()
    key = f"bigquery-local-bigquery-{LOCAL_BIGQUERY_VERSION}-duckdb-{DUCKDB_VERSION}-py{version}-r1"
    venv = cached_build(
        key, lambda staging: _build(python, staging), stderr_log if log else lambda _: None
    )
    if not venv_python(venv).exists():  # its base interpreter went away: rebuild
        shutil.rmtree(venv)
        venv = cached_build(key, lambda staging: _build(python, staging), stderr_log)
    return venv


def short_retry(seconds: float = 30.0) -> Retry:
    """A retry policy for tests (the client's default retries 5xx answers for 600 s)."""
    from google.cloud import bigquery

    retry: Retry = bigquery.DEFAULT_RETRY.with_deadline(seconds)
    return retry


@dataclass(frozen=True)
class BigQueryEmulator:
    """A running local-bigquery whose gs:// reads come from ``gcs``'s filesystem root."""

    endpoint: str  # http://127.0.0.1:PORT (client_options api_endpoint)
    port: int
    grpc_port: int  # BigQuery Storage Read/Write API
    data_dir: Path
    gcs: GcsEmulator
    project: str = PROJECT
    #: Stop / restart / pause it: only on an emulator of a test's own (see EmulatorControl).
    control: EmulatorControl | None = field(default=None, compare=False, repr=False)

    @property
    def grpc_address(self) -> str:
        return f"{LOCALHOST}:{self.grpc_port}"

    def client(self) -> bigquery.Client:
        """A google.cloud.bigquery.Client talking to this emulator."""
        from google.cloud import bigquery

        return bigquery.Client(
            project=self.project,
            credentials=anonymous_credentials(),
            client_options={"api_endpoint": self.endpoint},
        )

    @staticmethod
    def new_dataset_id(prefix: str = "test") -> str:
        """A dataset id no other test uses (letters, digits and underscores)."""
        return f"{prefix}_{uuid.uuid4().hex[:16]}"

    def create_dataset(self, dataset_id: str | None = None) -> str:
        """Create a dataset (a fresh id unless given) and return its id."""
        name = dataset_id or self.new_dataset_id()
        with contextlib.closing(self.client()) as client:
            client.create_dataset(name, retry=short_retry())
        return name


_PASSED_ENV = ("PATH", "LANG", "LC_ALL", "TMPDIR", "TZ")


@contextlib.contextmanager
def run_bigquery(workdir: Path, gcs: GcsEmulator) -> Iterator[BigQueryEmulator]:
    """Start local-bigquery on free ports (data in ``workdir``) reading gs:// from ``gcs``."""
    venv = install_bigquery()
    data_dir = workdir / "data"
    data_dir.mkdir(parents=True, exist_ok=True)
    env = {name: os.environ[name] for name in _PASSED_ENV if name in os.environ}
    env |= {
        "HOME": str(_duckdb_home(venv)),  # DuckDB finds the extensions under $HOME/.duckdb
        "DATA_DIR": str(data_dir),
        "GCS_LOCAL_ROOT": str(gcs.root),
        "PYTHONUNBUFFERED": "1",
    }
    code = "import sys; from local_bigquery.cli import main; main(sys.argv[1:])"

    def launch(ports: list[int]) -> EmulatorProcess:
        argv = [
            str(venv_python(venv)),
            *("-c", code, "serve", "--host", LOCALHOST, "--port", str(ports[0])),
            *("--grpc-port", str(ports[1]), "--project", PROJECT, "--data-dir", str(data_dir)),
        ]
        return EmulatorProcess(
            "local-bigquery", argv, workdir / "local-bigquery.log", env=env, cwd=workdir
        )

    def ready(ports: list[int]) -> bool:
        return tcp_open(LOCALHOST, ports[1]) and http_ok(
            f"http://{LOCALHOST}:{ports[0]}/bigquery/v2/projects/{PROJECT}/datasets"
        )

    control = start_controllable(2, launch, ready, START_TIMEOUT)
    port, grpc_port = control.ports
    try:
        yield BigQueryEmulator(
            endpoint=f"http://{LOCALHOST}:{port}",
            port=port,
            grpc_port=grpc_port,
            data_dir=data_dir,
            gcs=gcs,
            control=control,
        )
    finally:
        control.stop()
