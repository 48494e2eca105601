"""The python blocks of eventkit-core's README run as written and print what they say."""

from __future__ import annotations

import pytest

from tests.readme_support import check_block, expected_output, python_blocks, readme

README = readme("eventkit-core")
BLOCKS = python_blocks(README)


def test_readme_has_examples_that_show_their_output() -> None:
    assert len(BLOCKS) >= 3
    assert "2024-01-01 00:00:05+00:00" in expected_output(BLOCKS[0])


@pytest.mark.parametrize("code", BLOCKS, ids=[f"block{i}" for i in range(len(BLOCKS))])
def test_readme_block_runs(code: str) -> None:
    check_block(code, README)
