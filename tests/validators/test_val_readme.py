"""The README's python blocks run as written, and print what their comments say."""

from __future__ import annotations

import re

import pytest

from tests.readme_support import check_block, python_blocks, readme

README = readme("eventkit-validators")
BLOCKS = python_blocks(README)


def test_readme_has_blocks() -> None:
    assert len(BLOCKS) >= 5


@pytest.mark.parametrize("code", BLOCKS, ids=[f"block{i}" for i in range(len(BLOCKS))])
def test_readme_block_runs(code: str) -> None:
    check_block(code, README)


def test_the_rules_file_example_parses_and_applies() -> None:
    from eventkit_core import RawEvent
    from eventkit_validators import RulesAdapter, SegmentSchemaAdapter, parse_rules

    (toml,) = re.findall(r"```toml\n(.*?)```", README.read_text(), re.S)
    rules = parse_rules(toml, source="README")
    assert set(rules.streams) == {"events", "*"}
    adapter = RulesAdapter(SegmentSchemaAdapter(), rules)
    result = adapter.adapt(
        RawEvent(payload={"type": "track", "userId": "u", "event": "e"}, stream="events")
    )
    assert result.error is not None
    assert result.error.code == "rule_failed"
