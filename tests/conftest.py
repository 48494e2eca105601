"""Root fixtures: the emulators (session-scoped, on free ports, stopped at the end) and helpers.

Fixtures (see tests/emulators/ for the objects they yield):

- ``gcs_emulator`` -> :class:`tests.emulators.GcsEmulator` (exports STORAGE_EMULATOR_HOST)
- ``gcs_bucket`` -> ``str``: a fresh, empty bucket for one test
- ``pubsub_emulator`` -> :class:`tests.emulators.PubSubEmulator` (exports PUBSUB_EMULATOR_HOST)
- ``bigquery_emulator`` -> :class:`tests.emulators.BigQueryEmulator` (reads gs:// from gcs_emulator)
- ``bigquery_dataset`` -> ``str``: a fresh dataset id for one test, deleted after it

An emulator that cannot start fails the tests that use it, with a message saying what to install:
never a skip. Tests using them are marked ``@pytest.mark.integration``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, settings

from tests.emulators import (
    BigQueryEmulator,
    EmulatorError,
    GcsEmulator,
    PubSubEmulator,
    run_bigquery,
    run_gcs,
    run_pubsub,
    short_retry,
)

# Hypothesis' default 200 ms deadline per example measures the machine, not the code: one CPU
# stall on a busy CI runner gives "Unreliable test timings" or DeadlineExceeded. No deadline and
# no too_slow health check for every property test; @settings on a test still override the rest.
settings.register_profile(
    "eventkit", deadline=None, suppress_health_check=[HealthCheck.too_slow], print_blob=True
)
settings.load_profile("eventkit")


@contextlib.contextmanager
def _failing_clearly() -> Iterator[None]:
    problem: str | None = None
    try:
        yield
    except EmulatorError as exc:
        problem = str(exc)
    if problem is not None:  # outside the except block: no chained traceback, just the message
        pytest.fail(problem, pytrace=False)


@pytest.fixture(scope="session")
def gcs_emulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GcsEmulator]:
    workdir = tmp_path_factory.mktemp("gcs-emulator")
    with _failing_clearly(), run_gcs(workdir) as emulator, pytest.MonkeyPatch.context() as env:
        env.setenv("STORAGE_EMULATOR_HOST", emulator.endpoint)
        yield emulator


@pytest.fixture
def gcs_bucket(gcs_emulator: GcsEmulator) -> str:
    """A new empty bucket on the GCS emulator (its files: ``gcs_emulator.root / name``)."""
    return gcs_emulator.create_bucket()


@pytest.fixture(scope="session")
def pubsub_emulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PubSubEmulator]:
    workdir = tmp_path_factory.mktemp("pubsub-emulator")
    with _failing_clearly(), run_pubsub(workdir) as emulator, pytest.MonkeyPatch.context() as env:
        env.setenv("PUBSUB_EMULATOR_HOST", emulator.host)
        yield emulator


@pytest.fixture(scope="session")
def bigquery_emulator(
    tmp_path_factory: pytest.TempPathFactory, gcs_emulator: GcsEmulator
) -> Iterator[BigQueryEmulator]:
    workdir = tmp_path_factory.mktemp("bigquery-emulator")
    with _failing_clearly(), run_bigquery(workdir, gcs_emulator) as emulator:
        yield emulator


@pytest.fixture
def bigquery_dataset(bigquery_emulator: BigQueryEmulator) -> Iterator[str]:
    """A new dataset id on the BigQuery emulator, deleted (with its tables) after the test."""
    dataset_id = bigquery_emulator.create_dataset()
    yield dataset_id
    with contextlib.closing(bigquery_emulator.client()) as client:
        client.delete_dataset(
            dataset_id, delete_contents=True, not_found_ok=True, retry=short_retry()
        )
