"""eventkit-storage's README: the five-minute example, Parquet, extras, DuckDB and replacement
blocks run as written."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.readme_support import check_block, python_blocks, readme, run_block

README = readme("eventkit-storage")
BLOCKS = python_blocks(README)


def test_the_examples_run_in_order_and_print_what_the_readme_shows(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert len(BLOCKS) == 5
    monkeypatch.chdir(tmp_path)  # the examples write ./eventkit-data
    printed = run_block(BLOCKS[0], README)
    shown = README.read_text().split("prints (the file name and its date folders vary):", 1)[1]
    for line in ("durable: [(4,)]", "durable: [(1, 2, 3)]", 'invalid_type {"type":42}'):
        assert line in shown
        assert line in printed
    assert (tmp_path / "eventkit-data" / "events" / "events").is_dir()
    check_block(BLOCKS[1], README)  # Parquet round trip (asserts inside)
    check_block(BLOCKS[2], README)  # extras and the normalised event (prints checked)
    check_block(BLOCKS[3], README)  # DuckDB: loads the files of the first example
    assert (tmp_path / "eventkit-data" / "warehouse.duckdb").is_file()
    check_block(BLOCKS[4], README)  # crash-safe replacement (prints checked)
