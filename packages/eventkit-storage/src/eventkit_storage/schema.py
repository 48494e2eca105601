"""The file and warehouse schema: one definition that Parquet files, BigQuery and DuckDB share.

Columns follow the contracts: snake_case names, typed identity and time columns, and JSON text for
nested maps, for ``extras`` (the top-level fields no other column holds, see
:mod:`eventkit_storage.extras`) and for ``payload`` (the whole original object; null unless the
store keeps it, ``payload="full"``). Timestamps are UTC, microseconds.
"""

from __future__ import annotations

from typing import Final

import pyarrow as pa

_TS = pa.timestamp("us", tz="UTC")

#: Schema of ``events/<stream>/YYYY/MM/DD/HH/<name>.parquet`` and of the ``raw_events`` table.
EVENT_SCHEMA: Final = pa.schema(
    [
        pa.field("message_id", pa.string(), nullable=False),
        pa.field("type", pa.string(), nullable=False),
        pa.field("stream", pa.string(), nullable=False),
        pa.field("user_id", pa.string()),
        pa.field("anonymous_id", pa.string()),
        pa.field("event", pa.string()),
        pa.field("name", pa.string()),
        pa.field("group_id", pa.string()),
        pa.field("previous_id", pa.string()),
        pa.field("timestamp", _TS, nullable=False),
        pa.field("original_timestamp", _TS),
        pa.field("sent_at", _TS),
        pa.field("received_at", _TS, nullable=False),
        pa.field("properties", pa.string()),
        pa.field("traits", pa.string()),
        pa.field("context", pa.string()),
        pa.field("integrations", pa.string()),
        pa.field("payload", pa.string()),
        # Last: a raw table made before extras existed gets it appended (ALTER TABLE ADD
        # COLUMN), so old and new tables and files share the column positions.
        pa.field("extras", pa.string()),
    ]
)

#: Schema of ``dead-letters/<stream>/YYYY/MM/DD/HH/<name>.parquet``.
DEAD_LETTER_SCHEMA: Final = pa.schema(
    [
        pa.field("message_id", pa.string()),
        pa.field("stream", pa.string(), nullable=False),
        pa.field("reason_code", pa.string(), nullable=False),
        pa.field("reason", pa.string(), nullable=False),
        pa.field("payload", pa.string(), nullable=False),
        pa.field("received_at", _TS, nullable=False),
        pa.field("source", pa.string()),
        pa.field("ip", pa.string()),
        pa.field("user_agent", pa.string()),
        pa.field("batch_context", pa.string()),
        pa.field("batch_integrations", pa.string()),
        pa.field("batch_sent_at", pa.string()),
    ]
)

EVENT_COLUMNS: Final = tuple(EVENT_SCHEMA.names)
JSON_COLUMNS: Final = ("properties", "traits", "context", "integrations", "payload", "extras")

#: BigQuery column types for EVENT_SCHEMA (JSON text stays STRING: loads stay simple and cheap;
#: query it with JSON_VALUE / JSON_QUERY).
BIGQUERY_TYPES: Final = {
    name: ("TIMESTAMP" if pa.types.is_timestamp(EVENT_SCHEMA.field(name).type) else "STRING")
    for name in EVENT_COLUMNS
}
