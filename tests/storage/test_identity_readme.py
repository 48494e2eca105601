"""The README's identity resolution example runs as written and prints what it says."""

from __future__ import annotations

import contextlib
import io
import re
from pathlib import Path

README = Path(__file__).resolve().parents[2] / "README.md"


def test_the_readme_identity_example_runs_as_written() -> None:
    text = README.read_text("utf-8")
    section = text[text.index("## Identity resolution") :]
    code = re.search(r"```python\n(.*?)```", section, re.S)
    assert code is not None
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(code.group(1), "README.md", "exec"), {})
    printed = out.getvalue().splitlines()
    assert printed[0].startswith("[('ann', 'Ann@x.io', 'pro', datetime.datetime(2024, 5, 1, 0, 2")
    assert ", ('bob', None, 'free', " in printed[0]
    assert printed[1] == "[('ann', ['laptop', 'phone'], 3), ('bob', [], 1)]"
    assert printed[2] == "[('limit:user_id', 'laptop', 'm4')]"
