"""Query results for people (a table) and for scripts (one JSON array of row objects)."""

from __future__ import annotations

import base64
import datetime as dt
import decimal
import json
import math
import uuid
from collections.abc import Mapping, Sequence
from typing import Any, TextIO

from rich.console import Console
from rich.table import Table
from rich.text import Text


def jsonable(value: Any) -> Any:
    """A JSON-ready version of a value a warehouse returns."""
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if isinstance(value, dt.datetime | dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, dt.timedelta):
        return value.total_seconds()
    if isinstance(value, decimal.Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, bytes | bytearray | memoryview):
        return base64.b64encode(bytes(value)).decode()
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, Sequence | set | frozenset):
        return [jsonable(v) for v in value]
    return str(value)


def rows_as_objects(columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> list[dict[str, Any]]:
    """Rows as objects keyed by column name (a repeated name gets ``_2``, ``_3``, ...)."""
    keys: list[str] = []
    seen: dict[str, int] = {}
    for name in columns:
        count = seen.get(name, 0) + 1
        seen[name] = count
        keys.append(name if count == 1 else f"{name}_{count}")
    return [{k: jsonable(v) for k, v in zip(keys, row, strict=True)} for row in rows]


def write_json(columns: Sequence[str], rows: Sequence[Sequence[Any]], out: TextIO) -> None:
    """Exactly one JSON array of row objects, then a newline."""
    json.dump(rows_as_objects(columns, rows), out, ensure_ascii=False)
    out.write("\n")


def _cell(value: Any) -> str:
    if value is None:
        return "NULL"
    shown = jsonable(value)
    if isinstance(shown, dict | list):
        return json.dumps(shown, ensure_ascii=False)
    return str(shown)


def write_table(
    columns: Sequence[str], rows: Sequence[Sequence[Any]], console: Console, max_width: int = 60
) -> None:
    """A rich table, long cells cut to ``max_width`` characters, with a row count below.

    When the columns cannot fit the console (``select *``), each row is printed as a block of
    ``column: value`` lines instead (like psql's expanded display).
    """
    cells = [[_cell(v) for v in row] for row in rows]
    widths = [
        min(max_width, max([len(name), *(len(r[i]) for r in cells)]))
        for i, name in enumerate(columns)
    ]
    if sum(w + 3 for w in widths) + 1 > console.width and len(columns) > 1:
        _write_expanded(columns, cells, console, max_width)
    else:
        table = Table(show_lines=False, header_style="bold")
        for name in columns:
            table.add_column(Text(name), overflow="ellipsis", max_width=max_width, no_wrap=True)
        for row in cells:
            table.add_row(*(Text(c) for c in row))
        console.print(table)
    console.print(f"{len(rows)} row{'s' if len(rows) != 1 else ''}", style="dim")


def _write_expanded(
    columns: Sequence[str], cells: Sequence[Sequence[str]], console: Console, max_width: int
) -> None:
    label = max(len(c) for c in columns)
    room = max(20, console.width - label - 3)
    for n, row in enumerate(cells, 1):
        console.print(
            Text(f"-[ row {n} ]" + "-" * max(0, min(console.width, 60) - 12)), style="dim"
        )
        for name, value in zip(columns, row, strict=True):
            shown = value if len(value) <= room else value[: room - 1] + "…"
            console.print(Text(f"{name:<{label}} | ") + Text(shown), soft_wrap=True)
