"""The README's python blocks run as written, and print what their comments say."""

from __future__ import annotations

import contextlib
import io
import re
from pathlib import Path

import pytest

README = Path(__file__).parents[2] / "packages" / "eventkit-validators" / "README.md"
BLOCKS = re.findall(r"```python\n(.*?)```", README.read_text(), re.S)


def expected_output(code: str) -> list[str]:
    """Comments that show a print's output: ``print(x)  # out`` or a ``# out`` line after it."""
    out: list[str] = []
    lines = code.splitlines()
    for i, line in enumerate(lines):
        inline = re.match(r"\s*print\(.*\)\s+# (.*)$", line)
        if inline:
            out.append(inline.group(1))
        elif line.startswith("# ") and i > 0 and lines[i - 1].startswith("print("):
            out.append(line[2:])
    return out


def test_readme_has_blocks() -> None:
    assert len(BLOCKS) >= 5


@pytest.mark.parametrize("code", BLOCKS, ids=[f"block{i}" for i in range(len(BLOCKS))])
def test_readme_block_runs(code: str) -> None:
    buffer = io.StringIO()
    with contextlib.redirect_stdout(buffer):
        # dont_inherit: run as written, without this module's `from __future__ import annotations`.
        exec(compile(code, str(README), "exec", dont_inherit=True), {"__name__": "readme"})
    printed = buffer.getvalue()
    for expected in expected_output(code):
        assert expected in printed
