"""Validators and ValidationPipeline over decoded payloads."""

from __future__ import annotations

from typing import Any, Union

import pytest
from eventkit_core import ConfigurationError
from eventkit_validators import (
    RequiredFieldsValidator,
    TimestampValidator,
    TypeCheckValidator,
    ValidationFailure,
    ValidationPipeline,
    Validator,
    lookup,
)


def test_seed_example_runs_as_written() -> None:
    pipeline = ValidationPipeline(
        [
            RequiredFieldsValidator(["type", "userId"]),
            TypeCheckValidator({"type": str, "userId": str}),
            TimestampValidator(),
        ]
    )
    is_valid, error = pipeline.validate({"type": "identify", "userId": "123"})
    assert is_valid is True
    assert error is None


def test_pipeline_is_fail_fast_and_reports_first_failure() -> None:
    calls: list[str] = []

    class Spy:
        def validate(self, payload: Any) -> ValidationFailure | None:
            calls.append("spy")
            return None

    pipeline = ValidationPipeline([RequiredFieldsValidator(["userId"]), Spy()])
    ok, failure = pipeline.validate({"type": "track"})
    assert not ok
    assert failure is not None
    assert failure.code == "missing_field"
    assert failure.field == "userId"
    assert str(failure) == failure.message == "userId is missing: send userId"
    assert calls == []
    assert pipeline.validate({"userId": "u"}) == (True, None)
    assert calls == ["spy"]


def test_pipeline_rejects_non_object() -> None:
    ok, failure = ValidationPipeline([]).validate([1, 2])  # type: ignore[arg-type]
    assert not ok
    assert failure is not None
    assert failure.code == "not_an_object"


def test_builtin_validators_satisfy_protocol() -> None:
    for v in (RequiredFieldsValidator([]), TypeCheckValidator({}), TimestampValidator()):
        assert isinstance(v, Validator)


@pytest.mark.parametrize(
    ("payload", "missing"),
    [
        ({}, "userId"),
        ({"userId": None}, "userId"),
        ({"userId": "u"}, "properties.plan"),
        ({"userId": "u", "properties": "x"}, "properties.plan"),
        ({"userId": "u", "properties": {"plan": None}}, "properties.plan"),
        ({"userId": "u", "properties": {"plan": "pro"}}, None),
        ({"userId": "", "properties": {"plan": 0}}, None),  # empty and zero are present
    ],
)
def test_required_fields(payload: dict[str, Any], missing: str | None) -> None:
    failure = RequiredFieldsValidator(["userId", "properties.plan"]).validate(payload)
    if missing is None:
        assert failure is None
    else:
        assert failure is not None
        assert failure.field == missing
        assert failure.code == "missing_field"


def test_required_fields_rejects_a_bare_string() -> None:
    with pytest.raises(ConfigurationError, match=r"\['userId'\]"):
        RequiredFieldsValidator("userId")


@pytest.mark.parametrize("bad", ["", "a..b", ".a", "a."])
def test_bad_paths_are_configuration_errors(bad: str) -> None:
    with pytest.raises(ConfigurationError, match="field path"):
        RequiredFieldsValidator([bad])


@pytest.mark.parametrize(
    ("spec", "value", "ok"),
    [
        (str, "x", True),
        (str, 1, False),
        (int, 1, True),
        (int, True, False),  # bool is not an int
        (int, 1.5, False),
        (float, 1.5, True),
        ((int, float), 2, True),
        ((int, float), False, False),
        (str | int, 3, True),
        (str | int, "3", True),
        (str | int, [3], False),
        (Union[str, int], 3, True),  # noqa: UP007 - the typing form is supported too
        (bool, True, True),
        (bool, 1, False),
        (dict, {"a": 1}, True),
        (list, [1], True),
        (dict[str, Any], {}, True),
        (str, None, True),  # null counts as absent
    ],
)
def test_type_check(spec: Any, value: Any, ok: bool) -> None:
    failure = TypeCheckValidator({"properties.v": spec}).validate({"properties": {"v": value}})
    assert (failure is None) is ok
    if failure is not None:
        assert failure.code == "wrong_type"
        assert failure.field == "properties.v"
        assert "properties.v must be" in failure.message


def test_type_check_message_names_types() -> None:
    failure = TypeCheckValidator({"userId": str | int}).validate({"userId": True})
    assert failure is not None
    assert failure.message == (
        "userId must be string or integer, got boolean: send userId as string or integer"
    )


def test_type_check_absent_field_passes() -> None:
    assert TypeCheckValidator({"a.b": str}).validate({"a": 1}) is None


def test_type_check_rejects_bad_spec() -> None:
    with pytest.raises(ConfigurationError, match="'x'"):
        TypeCheckValidator({"x": "string"})


@pytest.mark.parametrize(
    ("value", "ok"),
    [
        ("2024-01-31T12:00:00Z", True),
        ("2024-01-31T12:00:00+00:00", True),
        ("2024-01-31T12:00:00.123456Z", True),
        ("2024-01-31T12:00:00.123+02:00", True),
        ("2024-01-31T12:00:00", True),
        (1706702400, True),
        (1706702400123, True),
        (1706702400.5, True),
        ("yesterday", False),
        ("", False),
        (True, False),
        ({"a": 1}, False),
        (float("nan"), False),
        (None, True),
    ],
)
def test_timestamp_validator(value: Any, ok: bool) -> None:
    failure = TimestampValidator().validate({"sentAt": value})
    assert (failure is None) is ok
    if failure is not None:
        assert failure.code == "invalid_timestamp"
        assert failure.field == "sentAt"
        assert "ISO 8601" in failure.message


def test_timestamp_validator_custom_fields() -> None:
    v = TimestampValidator(["properties.when"])
    assert v.validate({"timestamp": "bad"}) is None
    assert v.validate({"properties": {"when": "bad"}}) is not None


def test_lookup() -> None:
    payload = {"a": {"b": {"c": 1}}, "n": None}
    assert lookup(payload, "a.b.c") == 1
    assert lookup(payload, "a.x", "d") == "d"
    assert lookup(payload, "n") is None
    assert lookup(payload, "a.b.c.d", 0) == 0


def test_validation_failure_is_frozen() -> None:
    f = ValidationFailure(code="c", message="m")
    with pytest.raises(AttributeError):
        f.code = "x"  # type: ignore[misc]
