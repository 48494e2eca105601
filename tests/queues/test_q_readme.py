"""eventkit-queues' README: the AsyncQueue and Pub/Sub examples run as written."""

from __future__ import annotations

import pytest

from tests.emulators import PubSubEmulator
from tests.readme_support import check_block, python_blocks, readme

README = readme("eventkit-queues")
BLOCKS = python_blocks(README)
ASYNC = [b for b in BLOCKS if "PubSubQueue" not in b]
PUBSUB = [b for b in BLOCKS if "PubSubQueue" in b]


def test_readme_has_both_examples() -> None:
    assert (len(ASYNC), len(PUBSUB)) == (1, 1)


@pytest.mark.parametrize("code", ASYNC, ids=["asyncqueue"])
def test_the_asyncqueue_example_runs(code: str) -> None:
    check_block(code, README)


@pytest.mark.integration
@pytest.mark.parametrize("code", PUBSUB, ids=["pubsub"])
def test_the_pubsub_example_runs_on_the_emulator(
    code: str, pubsub_emulator: PubSubEmulator
) -> None:
    check_block(code, README)
