"""The README's python blocks run as written, and print what their comments say."""

from __future__ import annotations

import pytest

from tests.readme_support import check_block, python_blocks, readme

README = readme("eventkit-validators")
BLOCKS = python_blocks(README)


def test_readme_has_blocks() -> None:
    assert len(BLOCKS) >= 5


@pytest.mark.parametrize("code", BLOCKS, ids=[f"block{i}" for i in range(len(BLOCKS))])
def test_readme_block_runs(code: str) -> None:
    check_block(code, README)
