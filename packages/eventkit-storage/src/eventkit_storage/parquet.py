"""Typed events and dead letters to Arrow tables and Parquet bytes, and back.

Tables are built column by column for a whole batch, never row by row. The JSON columns are
made from the undecoded :class:`msgspec.Raw` bytes the events carry: the bytes are joined once
and become the data buffer of an Arrow string array (no JSON round trip, no per-event str).

Items that can never be stored (a string with a lone surrogate, JSON bytes that are not UTF-8, a
value of the wrong type, a null in a required column: things a hand-built event can hold) make
the conversion raise :class:`UnstorableEventsError` naming them. Only then are the columns that
failed searched, by bisection, for the values Arrow rejects: the happy path does no per-event
checking of its own.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from operator import attrgetter
from typing import Any, Final

import msgspec
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from eventkit_core import ConfigurationError, DeadLetter, EventkitError, TypedEvent

from eventkit_storage.extras import PAYLOAD_MODES, PayloadMode, extras_json
from eventkit_storage.schema import DEAD_LETTER_SCHEMA, EVENT_SCHEMA, JSON_COLUMNS

#: Parquet compression codec and level. On analytics.js-like events (benchmarks/bench_parquet.py),
#: without the repeated ``payload``, level 3 writes as fast as level 1 and ~4 % smaller; level 6 is
#: ~9 % smaller again but takes ~3.5x the write time.
COMPRESSION: Final = "zstd"
COMPRESSION_LEVEL: Final = 3
#: Rows are grouped so that one row group holds about this many uncompressed bytes.
ROW_GROUP_BYTES: Final = 128 * 1024 * 1024
#: Row order of ``sort=True``: similar events side by side compress better.
SORT_KEYS: Final = (
    ("type", "ascending"),
    ("event", "ascending"),
    ("user_id", "ascending"),
    ("anonymous_id", "ascending"),
)
#: Target size of a data page before compression; zstd finds more to share in bigger pages.
DATA_PAGE_BYTES: Final = 8 * 1024 * 1024
#: Columns with few distinct values, stored with a dictionary.
_DICTIONARY_COLUMNS: Final = frozenset(
    {
        "type",
        "stream",
        "event",
        "name",
        "user_id",
        "anonymous_id",
        "group_id",
        "previous_id",
        "integrations",
        "reason_code",
        "reason",
        "source",
        "ip",
        "user_agent",
    }
)

_TS = EVENT_SCHEMA.field("received_at").type
_STRING_COLUMNS: Final = (
    "message_id",
    "type",
    "stream",
    "user_id",
    "anonymous_id",
    "event",
    "name",
    "group_id",
    "previous_id",
)
_TIME_COLUMNS: Final = ("timestamp", "original_timestamp", "sent_at", "received_at")
_RAW_COLUMNS: Final = ("properties", "traits", "context", "integrations")
_JSON: Final = msgspec.json.Encoder()
_NULL_STRING: Final = pa.scalar(None, pa.string())
_ZERO_OFFSET: Final = pa.array([0], pa.int32())
# Largest data buffer of one pa.string() array (32-bit offsets).
_MAX_CHUNK_BYTES: Final = 2**31 - 1
#: What Arrow (and the encoders before it) raise for a value it cannot take. ArrowInvalid is a
#: ValueError, ArrowTypeError a TypeError, UnicodeEncodeError (lone surrogates) a ValueError.
_DATA_ERRORS: Final = (ValueError, TypeError, OverflowError)
#: Longest reason kept per rejected item (Arrow's messages may quote the whole value).
_MAX_REASON: Final = 500


class UnstorableEventsError(EventkitError, ValueError):
    """Some items of a batch can never be written as they are: a data problem, not an I/O one.

    ``rejected`` holds each such item (the object given) with the reason, which names the
    column. Writing the same batch again fails the same way: write the other items and keep
    these elsewhere (:class:`~eventkit_storage.EventLoader` turns them into dead letters with
    ``reason_code`` ``"unstorable"``). A store raising it writes nothing of the batch.
    """

    code = "unstorable"

    def __init__(self, rejected: Sequence[tuple[TypedEvent | DeadLetter, str]]) -> None:
        self.rejected = tuple(rejected)
        first = self.rejected[0][1] if self.rejected else "no reason given"
        super().__init__(
            f"{len(self.rejected)} item(s) cannot be stored as they are (first: {first}): "
            "fix what produces them; an EventLoader with an error_store dead-letters them"
        )


def events_to_table(events: Sequence[TypedEvent], *, payload: PayloadMode = "extras") -> pa.Table:
    """An Arrow table with :data:`EVENT_SCHEMA`, one row per event, in the given order.

    ``extras`` holds the top-level fields no column holds (:mod:`eventkit_storage.extras`);
    ``payload`` is null, or with ``payload="full"`` the whole original object as before.
    Raises :class:`UnstorableEventsError` naming the events that cannot be stored.
    """
    if payload not in PAYLOAD_MODES:
        raise ConfigurationError(f"payload must be one of {PAYLOAD_MODES}, not {payload!r}")
    columns: dict[str, pa.Array | pa.ChunkedArray | None] = {}
    rejected: dict[int, list[str]] = {}
    for name in _STRING_COLUMNS:
        values = list(map(attrgetter(name), events))
        columns[name] = _column(EVENT_SCHEMA, name, values, _string_array, rejected)
    times = _time_columns(events)
    for name in _TIME_COLUMNS:
        made = None if times is None else times[name]
        if made is None or (made.null_count and not EVENT_SCHEMA.field(name).nullable):
            values = list(map(attrgetter(name), events))
            made = _column(EVENT_SCHEMA, name, values, _timestamp_array, rejected)
        columns[name] = made
    for name in _RAW_COLUMNS:
        values = list(map(attrgetter(name), events))
        columns[name] = _column(EVENT_SCHEMA, name, values, raw_to_string_array, rejected)
    columns["extras"] = _column(EVENT_SCHEMA, "extras", list(events), _extras_array, rejected)
    if payload == "full":
        values = list(map(attrgetter("payload"), events))
        columns["payload"] = _column(EVENT_SCHEMA, "payload", values, raw_to_string_array, rejected)
    else:
        columns["payload"] = pa.nulls(len(events), pa.string())
    if rejected:
        raise UnstorableEventsError(
            [(events[i], "; ".join(reasons)) for i, reasons in sorted(rejected.items())]
        )
    return pa.Table.from_pydict(
        {name: columns[name] for name in EVENT_SCHEMA.names}, schema=EVENT_SCHEMA
    )


def _extras_array(events: Sequence[TypedEvent]) -> pa.Array | pa.ChunkedArray:
    return raw_to_string_array(list(map(extras_json, events)))


def _string_array(values: Sequence[Any]) -> pa.Array:
    return pa.array(values, pa.string())


def _timestamp_array(values: Sequence[Any]) -> pa.Array:
    return pa.array(values, _TS)


def _column(
    schema: pa.Schema,
    name: str,
    values: list[Any],
    convert: Callable[[list[Any]], pa.Array | pa.ChunkedArray],
    rejected: dict[int, list[str]],
) -> pa.Array | pa.ChunkedArray | None:
    """``convert(values)``; on a data error, the rejected values are added to ``rejected``.

    Returns None when some value was rejected. Raises the conversion's error when no single
    value can be blamed (then it is not a data problem of an item).
    """
    try:
        array = convert(values)
    except _DATA_ERRORS:
        bad = _bad_values(values, convert)
        if not bad:
            raise
        for index, reason in bad:
            rejected.setdefault(index, []).append(f"column {name!r}: {_reason(reason)}")
        return None
    if array.null_count and not schema.field(name).nullable:
        for index, value in enumerate(values):
            if value is None:
                rejected.setdefault(index, []).append(f"column {name!r}: null in a required column")
        return None
    return array


def _bad_values(
    values: list[Any], convert: Callable[[list[Any]], pa.Array | pa.ChunkedArray]
) -> list[tuple[int, str]]:
    """(index, error) of each value ``convert`` rejects, found by bisection (failure path only)."""
    found: list[tuple[int, str]] = []

    def search(start: int, end: int) -> None:
        if end - start > 1:
            middle = (start + end) // 2
            for part in ((start, middle), (middle, end)):
                try:
                    convert(values[part[0] : part[1]])
                except _DATA_ERRORS:
                    search(*part)
            return
        try:
            convert(values[start:end])
        except _DATA_ERRORS as exc:
            found.append((start, f"{type(exc).__name__}: {exc}"))

    search(0, len(values))
    return found


def _reason(text: str) -> str:
    """``text`` shortened and made storable (no lone surrogates)."""
    if len(text) > _MAX_REASON:
        text = text[: _MAX_REASON - 3] + "..."
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def _time_columns(events: Sequence[TypedEvent]) -> dict[str, pa.Array] | None:
    # All four time columns in one pass: msgspec writes the datetimes as ISO 8601 text in C
    # (much faster than pyarrow converting datetime objects one by one), Arrow splits and
    # parses that text in bulk. Naive datetimes have no zone to parse: those batches take the
    # plain path (None: convert each column), where pyarrow reads naive values as UTC; so do
    # batches holding something that is not a datetime.
    count = len(events)
    if not count:
        return None
    values: list[datetime | None] = []
    for name in _TIME_COLUMNS:
        values.extend(map(attrgetter(name), events))
    try:
        parsed = _parse_iso_list(values)
    except _DATA_ERRORS:
        return None
    return {name: parsed.slice(i * count, count) for i, name in enumerate(_TIME_COLUMNS)}


def _parse_iso_list(values: list[datetime | None]) -> pa.Array:
    text = _JSON.encode(values)  # b'["2024-05-01T12:00:00.5Z",null,...]'
    items = pc.split_pattern(pa.array([text[1:-1].decode()], pa.string()), ",").flatten()
    if len(items) != len(values):
        raise ValueError("unexpected datetime text")
    unquoted = pc.utf8_slice_codeunits(items, 1, -1)
    return pc.if_else(pc.equal(items, "null"), _NULL_STRING, unquoted).cast(_TS)


def raw_to_string_array(values: Sequence[msgspec.Raw | bytes | None]) -> pa.Array | pa.ChunkedArray:
    """A ``pa.string()`` array whose values are the given JSON bytes (``None`` -> null).

    The bytes are joined into one buffer and checked to be UTF-8 (Arrow's vectorised check),
    not parsed.
    """
    try:
        # no nulls: the common case (len(None) raises TypeError)
        sizes = pa.array(list(map(len, values)), pa.int64())  # type: ignore[arg-type]
    except TypeError:
        sizes = pa.array([None if v is None else len(v) for v in values], pa.int64())
    total = pc.sum(sizes).as_py() or 0
    if total > _MAX_CHUNK_BYTES and len(values) > 1:
        half = len(values) // 2
        chunks: list[pa.Array] = []
        for part in (values[:half], values[half:]):
            made = raw_to_string_array(part)
            chunks.extend(made.chunks if isinstance(made, pa.ChunkedArray) else [made])
        return pa.chunked_array(chunks, pa.string())
    ends = pc.cumulative_sum(sizes.fill_null(0)).cast(pa.int32())
    offsets = pa.concat_arrays([_ZERO_OFFSET, ends]).buffers()[1]
    parts = values if sizes.null_count == 0 else [v for v in values if v is not None]
    data = pa.py_buffer(b"".join(parts))  # type: ignore[arg-type]
    validity = sizes.buffers()[0] if sizes.null_count else None
    result = pa.Array.from_buffers(
        pa.string(), len(values), [validity, offsets, data], null_count=sizes.null_count
    )
    result.validate(full=True)
    return result


def dead_letters_to_table(items: Sequence[DeadLetter]) -> pa.Table:
    """An Arrow table with :data:`DEAD_LETTER_SCHEMA`, one row per dead letter.

    Raises :class:`UnstorableEventsError` naming the dead letters that cannot be stored.
    """
    columns: dict[str, Any] = {}
    rejected: dict[int, list[str]] = {}
    for field in DEAD_LETTER_SCHEMA:
        values = list(map(attrgetter(field.name), items))
        convert = _timestamp_array if field.type == _TS else _string_array
        columns[field.name] = _column(DEAD_LETTER_SCHEMA, field.name, values, convert, rejected)
    if rejected:
        raise UnstorableEventsError(
            [(items[i], "; ".join(reasons)) for i, reasons in sorted(rejected.items())]
        )
    return pa.Table.from_pydict(columns, schema=DEAD_LETTER_SCHEMA)


def sort_for_storage(table: pa.Table) -> pa.Table:
    """``table`` with rows ordered by :data:`SORT_KEYS` (when it has those columns)."""
    if table.num_rows < 2 or not {k for k, _ in SORT_KEYS} <= set(table.column_names):
        return table
    return table.take(pc.sort_indices(table, sort_keys=SORT_KEYS))


def table_to_parquet_bytes(
    table: pa.Table,
    *,
    compression_level: int = COMPRESSION_LEVEL,
    sort: bool = False,
    delta_encodings: bool = False,
) -> bytes:
    """Parquet bytes of ``table``, zstd-compressed.

    Low-cardinality text columns are dictionary-encoded, the other columns stored plain (ids,
    JSON and times would not fit a dictionary: trying costs time). No min/max statistics for the
    JSON columns (nobody filters on them; computing them costs time). 8 MiB pages; row groups
    of about :data:`ROW_GROUP_BYTES` uncompressed.

    ``delta_encodings=True`` stores time columns delta-encoded and the other text columns as
    delta-length byte arrays: ~5 % smaller, but not every Parquet reader supports these
    encodings (check yours; the default uses only PLAIN, RLE and RLE_DICTIONARY, which all
    read). ``sort=True`` orders event rows by (type, event, user_id, anonymous_id) first: a few
    per cent smaller, a few tens of per cent slower (``benchmarks/bench_parquet.py``).
    """
    if sort:
        table = sort_for_storage(table)
    row_bytes = max(table.nbytes // max(table.num_rows, 1), 1)
    encodings: dict[str, str] = {}
    dictionary: list[str] = []
    statistics: list[str] = []
    for field in table.schema:
        if field.name not in JSON_COLUMNS:
            statistics.append(field.name)
        if field.name in _DICTIONARY_COLUMNS:
            dictionary.append(field.name)
        elif delta_encodings and pa.types.is_timestamp(field.type):
            encodings[field.name] = "DELTA_BINARY_PACKED"
        elif delta_encodings and pa.types.is_string(field.type):
            encodings[field.name] = "DELTA_LENGTH_BYTE_ARRAY"
    sink = pa.BufferOutputStream()
    pq.write_table(
        table,
        sink,
        compression=COMPRESSION,
        compression_level=compression_level,
        row_group_size=max(1, ROW_GROUP_BYTES // row_bytes),
        data_page_size=DATA_PAGE_BYTES,
        use_dictionary=dictionary,
        column_encoding=encodings or None,
        write_statistics=statistics,
    )
    return bytes(sink.getvalue().to_pybytes())


def read_table(data: bytes, schema: pa.Schema | None = None) -> pa.Table:
    """The table stored in Parquet ``data``."""
    return pq.read_table(pa.BufferReader(data), schema=schema)


def read_events(data: bytes) -> pa.Table:
    """The events table stored in Parquet ``data`` (:data:`EVENT_SCHEMA`)."""
    return read_table(data, EVENT_SCHEMA)


def read_dead_letters(data: bytes) -> list[DeadLetter]:
    """The dead letters stored in Parquet ``data``, as they were written."""
    table = read_table(data, DEAD_LETTER_SCHEMA)
    columns = {name: table.column(name).to_pylist() for name in table.column_names}
    names = list(columns)
    return [DeadLetter(**{name: columns[name][i] for name in names}) for i in range(table.num_rows)]
