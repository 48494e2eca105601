"""The python blocks of eventkit-core's README run as written."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[2] / "packages" / "eventkit-core" / "README.md"
BLOCKS = re.findall(r"```python\n(.*?)```", README.read_text(), re.S)


def test_readme_has_examples() -> None:
    assert len(BLOCKS) >= 2


@pytest.mark.parametrize("code", BLOCKS, ids=[f"block{i}" for i in range(len(BLOCKS))])
def test_readme_block_runs(code: str, capsys: pytest.CaptureFixture[str]) -> None:
    # dont_inherit: run as written, without this module's `from __future__ import annotations`.
    exec(compile(code, str(README), "exec", dont_inherit=True), {"__name__": "readme"})
    out = capsys.readouterr().out
    for expected in re.findall(r"^\s*print\(.*\)  # (.*)$", code, re.M):
        assert expected in out
