"""Rules files: parsing, failures that name file / stream / key, and RulesAdapter."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from eventkit_core import ConfigurationError, RawEvent, SchemaAdapter
from eventkit_validators import (
    GenericAdapter,
    RequiredFieldsValidator,
    RulesAdapter,
    RuleSet,
    SegmentSchemaAdapter,
    load_rules,
    parse_rules,
)

RULES = """
[streams.events]
required = ["userId", "properties.plan"]
types = { "properties.price" = "number", userId = "string", "properties.at" = "timestamp" }

[streams."*"]            # applies to every stream
required = ["anonymousId"]
"""


@pytest.fixture
def rules_file(tmp_path: Path) -> Path:
    path = tmp_path / "rules.toml"
    path.write_text(RULES)
    return path


def track(**fields: Any) -> dict[str, Any]:
    return {"type": "track", "event": "Paid", "anonymousId": "a", "userId": "u", **fields}


def test_load_and_apply(rules_file: Path) -> None:
    rules = load_rules(rules_file)
    assert rules.streams == ("events", "*")
    assert rules.source == str(rules_file)
    adapter = RulesAdapter(SegmentSchemaAdapter(), rules)
    assert isinstance(adapter, SchemaAdapter)

    good = RawEvent(payload=track(properties={"plan": "pro", "price": 9.5}), stream="events")
    assert adapter.adapt(good).ok

    result = adapter.adapt(RawEvent(payload=track(properties={}), stream="events"))
    assert result.error is not None
    assert result.error.code == "rule_failed"
    assert result.error.message == (
        "stream 'events' rule required properties.plan failed: "
        "properties.plan is missing: send properties.plan"
    )

    bad_price = track(properties={"plan": "pro", "price": "9.5"})
    result = adapter.adapt(RawEvent(payload=bad_price, stream="events"))
    assert result.error is not None
    assert "rule types properties.price = number failed" in result.error.message

    bad_time = track(properties={"plan": "pro", "at": "noon"})
    result = adapter.adapt(RawEvent(payload=bad_time, stream="events"))
    assert result.error is not None
    assert "rule types properties.at = timestamp failed" in result.error.message

    # "*" rules apply to every stream, and run first
    no_anon = {"type": "identify", "userId": "u"}
    result = adapter.adapt(RawEvent(payload=no_anon, stream="users"))
    assert result.error is not None
    assert result.error.message.startswith("stream 'users' rule required anonymousId failed")
    assert adapter.adapt(RawEvent(payload={**no_anon, "anonymousId": "a"}, stream="users")).ok


def test_schema_errors_come_before_rules(rules_file: Path) -> None:
    adapter = RulesAdapter(SegmentSchemaAdapter(), load_rules(rules_file))
    result = adapter.adapt(RawEvent(payload={"type": "nope"}, stream="events"))
    assert result.error is not None
    assert result.error.code == "invalid_type"


def test_rules_with_generic_adapter_and_adapt_many(rules_file: Path) -> None:
    adapter = RulesAdapter(GenericAdapter(), load_rules(rules_file))
    results = adapter.adapt_many(
        [RawEvent(payload={"anonymousId": "a"}), RawEvent(payload={"x": 1}, stream="webhooks")]
    )
    assert results[0].ok
    assert results[1].error is not None
    assert results[1].error.code == "rule_failed"


def test_programmatic_rule_set() -> None:
    rules = RuleSet({"events": {"needs plan": RequiredFieldsValidator(["properties.plan"])}})
    adapter = RulesAdapter(SegmentSchemaAdapter(), rules)
    result = adapter.adapt(RawEvent(payload=track(), stream="events"))
    assert result.error is not None
    assert "rule needs plan failed" in result.error.message
    unnamed = RuleSet({"events": [RequiredFieldsValidator(["x"])]})
    error = unnamed.check("events", {})
    assert error is not None
    assert "rule RequiredFieldsValidator failed" in error.message
    assert unnamed.check("other", {}) is None


def test_empty_rules_pass_everything() -> None:
    adapter = RulesAdapter(SegmentSchemaAdapter(), parse_rules(""))
    assert adapter.adapt(RawEvent(payload=track(), stream="events")).ok


@pytest.mark.parametrize(
    ("text", "needles"),
    [
        ("[streams.events\n", ["is not valid TOML"]),
        ("[other]\nx = 1", ["unknown top-level key 'other'"]),
        ("streams = 3", ["'streams' must be a table"]),
        ('[streams."a b"]\nrequired = []', ["stream 'a b'", "invalid"]),
        ("[streams.events]\nrequire = ['x']", ["stream 'events'", "unknown key 'require'"]),
        ("[streams.events]\nrequired = 'userId'", ["stream 'events'", "key 'required'"]),
        ("[streams.events]\nrequired = [1]", ["stream 'events'", "key 'required'"]),
        ("[streams.events]\nrequired = ['a..b']", ["stream 'events'", "key 'required'", "a..b"]),
        ("[streams.events]\ntypes = ['x']", ["stream 'events'", "key 'types'"]),
        (
            "[streams.events]\ntypes = { price = 'float' }",
            ["stream 'events'", "key 'types.price'", "'float' is unknown", "number"],
        ),
        ("[streams]\nevents = 3", ["stream 'events'", "must be a table"]),
    ],
)
def test_bad_files_name_file_stream_and_key(tmp_path: Path, text: str, needles: list[str]) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(ConfigurationError) as info:
        load_rules(path)
    message = str(info.value)
    assert str(path) in message
    for needle in needles:
        assert needle in message
    assert isinstance(info.value, ValueError)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="cannot be read"):
        load_rules(tmp_path / "nope.toml")


def test_invalid_stream_in_rule_set() -> None:
    with pytest.raises(ConfigurationError, match="invalid"):
        RuleSet({"../x": []})
