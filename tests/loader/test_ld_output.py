"""Query output: one JSON array for scripts, a table for people."""

from __future__ import annotations

import datetime as dt
import decimal
import io
import json

from eventkit_loader.output import jsonable, rows_as_objects, write_json, write_table
from rich.console import Console


def test_json_is_one_array_of_row_objects() -> None:
    out = io.StringIO()
    when = dt.datetime(2024, 5, 1, 12, 30, tzinfo=dt.UTC)
    write_json(["message_id", "n", "at"], [("a", 1, when), ("b", None, when)], out)
    text = out.getvalue()
    assert text.endswith("\n")
    assert text.count("\n") == 1
    assert json.loads(text) == [
        {"message_id": "a", "n": 1, "at": "2024-05-01T12:30:00+00:00"},
        {"message_id": "b", "n": None, "at": "2024-05-01T12:30:00+00:00"},
    ]


def test_no_rows_is_an_empty_array() -> None:
    out = io.StringIO()
    write_json(["x"], [], out)
    assert json.loads(out.getvalue()) == []


def test_repeated_column_names_stay_apart() -> None:
    assert rows_as_objects(["a", "a", "b"], [(1, 2, 3)]) == [{"a": 1, "a_2": 2, "b": 3}]


def test_warehouse_values_become_json() -> None:
    assert jsonable(decimal.Decimal("3")) == 3
    assert jsonable(decimal.Decimal("1.5")) == 1.5
    assert jsonable(float("nan")) == "nan"
    assert jsonable(b"\x00\x01") == "AAE="
    assert jsonable({"k": [dt.date(2024, 1, 2)]}) == {"k": ["2024-01-02"]}
    assert jsonable(dt.timedelta(seconds=90)) == 90.0


def test_table_shows_values_without_markup_and_counts_rows() -> None:
    console = Console(record=True, width=120, color_system=None)
    write_table(["event", "props"], [("[bold]x[/bold]", {"a": 1}), (None, [1])], console)
    text = console.export_text()
    assert "[bold]x[/bold]" in text
    assert '{"a": 1}' in text
    assert "NULL" in text
    assert "2 rows" in text


def test_wide_rows_are_shown_expanded() -> None:
    console = Console(record=True, width=60, color_system=None)
    columns = [f"column_{i}" for i in range(10)]
    write_table(columns, [tuple(f"value-{i}" for i in range(10))], console)
    text = console.export_text()
    assert "-[ row 1 ]" in text
    assert "column_9 | value-9" in text
    assert "1 row" in text
