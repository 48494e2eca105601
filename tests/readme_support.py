"""Running a package README's python blocks as written, and checking what they print."""

from __future__ import annotations

import contextlib
import io
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# A comment that shows output: after a print on the same line, or on the line after a print /
# an asyncio.run (the block's output as a whole).
_INLINE = re.compile(r"^\s*print\(.*\)\s+# (.*)$")
_SHOWS_OUTPUT = ("print(", "asyncio.run(")


def readme(package: str) -> Path:
    return ROOT / "packages" / package / "README.md"


def python_blocks(path: Path) -> list[str]:
    return re.findall(r"```python\n(.*?)```", path.read_text(), re.S)


def expected_output(code: str) -> list[str]:
    """What the block's comments say it prints."""
    out: list[str] = []
    lines = code.splitlines()
    for i, line in enumerate(lines):
        inline = _INLINE.match(line)
        if inline:
            out.append(inline.group(1))
        elif line.startswith("# ") and i > 0 and lines[i - 1].startswith(_SHOWS_OUTPUT):
            out.append(line[2:])
    return out


def run_block(code: str, source: Path) -> str:
    """Run ``code`` as a script of its own (no future imports inherited); what it printed."""
    buffer = io.StringIO()
    with contextlib.redirect_stdout(buffer):
        exec(compile(code, str(source), "exec", dont_inherit=True), {"__name__": "__main__"})
    return buffer.getvalue()


def check_block(code: str, source: Path) -> None:
    printed = run_block(code, source)
    for expected in expected_output(code):
        assert expected in printed, f"{source}: expected {expected!r} in the output:\n{printed}"
