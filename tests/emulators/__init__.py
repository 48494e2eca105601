"""Local emulators for the scale-out backends, started by the test suite itself (no docker).

- GCS: fake-gcs-server (:mod:`tests.emulators.gcs`)
- Pub/Sub: Google's Pub/Sub emulator (:mod:`tests.emulators.pubsub`)
- BigQuery: local-bigquery reading gs:// from fake-gcs-server's files (:mod:`tests.emulators.bigquery`)

Downloaded parts are cached per user outside the checkout (see :func:`cache_root`);
``python -m tests.emulators install`` prepares them up-front.
"""

from tests.emulators._common import PROJECT, EmulatorControl, EmulatorError, cache_root
from tests.emulators.bigquery import BigQueryEmulator, run_bigquery, short_retry
from tests.emulators.gcs import GcsEmulator, run_gcs
from tests.emulators.pubsub import PubSubEmulator, run_pubsub

__all__ = [
    "PROJECT",
    "BigQueryEmulator",
    "EmulatorControl",
    "EmulatorError",
    "GcsEmulator",
    "PubSubEmulator",
    "cache_root",
    "run_bigquery",
    "run_gcs",
    "run_pubsub",
    "short_retry",
]
