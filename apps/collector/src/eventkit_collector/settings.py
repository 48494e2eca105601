"""Every setting of the collector, read from the environment here and nowhere else.

Names follow the contracts: the original service's ``GCP_*`` and ``EVENTKIT_*`` names where it has
them, every other one ``EVENTKIT_*``. Command-line options win over the environment (the CLI
passes them as keyword arguments, which pydantic-settings ranks above environment variables).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any, Literal

from eventkit_core import DEFAULT_TYPE_STREAMS, ConfigurationError, validate_stream
from eventkit_validators.endpoints import VENDOR_PEEKS
from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

KiB = 1024
MiB = 1024 * 1024


def _split_list(value: Any) -> Any:
    """``"a,b , c"`` (or a JSON array) -> ``["a", "b", "c"]``; empty items dropped."""
    if value is None:
        return []
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("["):
            try:
                return [str(v).strip() for v in json.loads(text) if str(v).strip()]
            except ValueError:
                pass
        return [part.strip() for part in text.split(",") if part.strip()]
    return value


class Settings(BaseSettings):
    """Collector settings. Field ``eventkit_data_dir`` is env ``EVENTKIT_DATA_DIR``, and so on."""

    model_config = SettingsConfigDict(
        case_sensitive=False, extra="ignore", env_file=None, validate_default=True
    )

    # --- Google Cloud (the original service's names) -------------------------------------
    gcp_project_id: str | None = None
    gcp_gcs_bucket: str | None = None
    gcp_bigquery_dataset: str | None = None
    gcp_bigquery_table: str = "raw_events"

    # --- Backends ---------------------------------------------------------------------------
    eventkit_event_store: Literal["local", "gcs"] = "local"
    eventkit_queue_mode: Literal["async", "pubsub"] = "async"
    #: Used by the loader app; accepted here so one environment serves both apps.
    eventkit_warehouse_enabled: bool = False
    eventkit_data_dir: Path = Path("./eventkit-data")
    eventkit_gcs_prefix: str = ""
    #: What the Parquet ``payload`` column holds: ``extras`` (null; the top-level fields no
    #: column holds are in ``extras``) or ``full`` (the whole original object as well).
    eventkit_parquet_payload: Literal["extras", "full"] = "extras"
    eventkit_pubsub_topic: str = "eventkit-events"
    eventkit_pubsub_subscription: str = "eventkit-events-archive"
    #: Create the topic and subscription when missing (needs the Pub/Sub admin permission).
    eventkit_pubsub_create: bool = True
    #: When a request is answered 200: ``commit`` (after the local ring-buffer commit) or
    #: ``publish`` (Pub/Sub mode only: once Pub/Sub confirmed its events; no ring buffer).
    eventkit_ack_mode: Literal["commit", "publish"] = "commit"
    #: ``publish`` mode: longest a request waits for its publish before it is answered 503.
    eventkit_ack_timeout: float = Field(default=10.0, gt=0, le=300)

    # --- HTTP server ------------------------------------------------------------------------
    eventkit_host: str = "127.0.0.1"
    eventkit_port: int = Field(default=8000, ge=0, le=65535)
    #: Server processes sharing the port; each owns one ring-buffer shard (ring/<n>.db).
    eventkit_workers: int = Field(default=1, ge=1, le=64)
    eventkit_log_level: Literal["debug", "info", "warning", "error"] = "info"
    #: Answer the ingest POSTs with the raw-ASGI front (same code; measured ~1.45x the
    #: single-event rate); false serves every request through the Litestar app.
    eventkit_ingest_front: bool = True
    eventkit_write_keys: Annotated[list[str], NoDecode] = Field(default_factory=list)
    eventkit_cors_origins: Annotated[list[str], NoDecode] = Field(default_factory=lambda: ["*"])
    #: Peers whose X-Forwarded-For is believed: IPs or CIDRs, or ``*`` for any.
    eventkit_trusted_proxies: Annotated[list[str], NoDecode] = Field(default_factory=list)

    #: How browsers reach the collector (``https://collect.example.com``): the ``apiHost`` and
    #: ``protocol`` of the analytics.js settings document; unset, taken from each request.
    eventkit_public_url: str | None = None
    #: A copy of @segment/analytics-next's ``dist/umd``: served as the analytics.js script and
    #: its chunk bundles; unset, the site hosts them itself.
    eventkit_segment_bundles_dir: Path | None = None

    # --- Request limits ---------------------------------------------------------------------
    eventkit_max_event_bytes: int = Field(default=32 * KiB, ge=1)
    eventkit_max_batch_bytes: int = Field(default=500 * KiB, ge=1)
    eventkit_max_batch_events: int = Field(default=2500, ge=1)
    #: Request line and headers of one request, in bytes (431 / 414 past it).
    eventkit_max_header_bytes: int = Field(default=16 * KiB, ge=1 * KiB, le=1 * MiB)
    #: Headers in one request (431 past it).
    eventkit_max_headers: int = Field(default=100, ge=8, le=10_000)
    #: The User-Agent header copied into context.userAgent is cut to this many characters.
    eventkit_max_user_agent_bytes: int = Field(default=1024, ge=0)

    # --- Connection timeouts (seconds) -------------------------------------------------------
    #: From the first byte of a request (or the connection) to the end of its headers (408).
    eventkit_header_timeout: float = Field(default=10.0, gt=0)
    #: From the end of the headers to the end of the body (408).
    eventkit_body_timeout: float = Field(default=30.0, gt=0)
    #: An idle keep-alive connection is closed after this long.
    eventkit_keep_alive_timeout: float = Field(default=5.0, gt=0)

    # --- Routing and validation ------------------------------------------------------------
    #: Segment call type -> stream, JSON object; merged over the defaults.
    eventkit_type_streams: dict[str, str] = Field(
        default_factory=lambda: dict(DEFAULT_TYPE_STREAMS)
    )
    eventkit_rules_file: Path | None = None
    #: Per source (``posthog``, ``amplitude``): a stream for all its events, or a JSON object of
    #: call type -> stream merged over ``eventkit_type_streams``.
    eventkit_source_streams: Annotated[dict[str, str | dict[str, str]], NoDecode] = Field(
        default_factory=dict
    )

    # --- Snowplow ---------------------------------------------------------------------------
    #: With write keys on, the app ids (``aid``) whose Snowplow events are accepted (Snowplow
    #: trackers send no key); others get 401. Unused while write keys are off.
    eventkit_snowplow_app_ids: Annotated[list[str], NoDecode] = Field(default_factory=list)
    #: Call type -> stream for Snowplow events, JSON object; merged over EVENTKIT_TYPE_STREAMS.
    eventkit_snowplow_type_streams: dict[str, str] = Field(default_factory=dict)

    # --- Pipeline ---------------------------------------------------------------------------
    eventkit_partitions: int = Field(default=8, ge=1, le=1024)
    eventkit_queue_max_depth: int = Field(default=2_000, ge=1)
    eventkit_queue_max_batch: int = Field(default=1000, ge=1)
    eventkit_flush_max_events: int = Field(default=10_000, ge=1)
    eventkit_flush_max_bytes: int = Field(default=32 * MiB, ge=1)
    eventkit_flush_max_age: float = Field(default=5.0, gt=0)
    #: Seconds between reloads of the suppression list (``eventkit-loader forget``).
    eventkit_suppression_reload_seconds: float = Field(default=60.0, gt=0)
    eventkit_max_buffered_events: int = Field(default=30_000, ge=1)
    eventkit_ring_durability: Literal["normal", "full"] = "normal"
    eventkit_ring_max_entries: int = Field(default=1_000_000, ge=1)
    eventkit_ring_max_bytes: int = Field(default=1 << 30, ge=1)
    #: Accepted requests waiting to be handed to the queue before new ones get 503.
    eventkit_max_pending_requests: int = Field(default=20_000, ge=1)
    #: ...or bytes of request bodies (decompressed) waiting, before new ones get 503.
    eventkit_max_pending_bytes: int = Field(default=16 * MiB, ge=1)
    eventkit_shutdown_timeout: float = Field(default=30.0, gt=0)

    # --- Live debugger (/debugger) ------------------------------------------------------------
    #: Serve the live event debugger at /debugger.
    eventkit_debugger: bool = True
    #: Required (?token= or Authorization: Bearer) when set; with write keys set and no token,
    #: the debugger answers 401.
    eventkit_debugger_token: str | None = None
    # --- Privacy and rate limits -------------------------------------------------------------
    #: ``context.ip`` of every stream: ``full``, ``truncate`` (IPv4 /24, IPv6 /48) or ``drop``.
    eventkit_ip_mode: Literal["full", "truncate", "drop"] = "full"
    #: Per stream, over EVENTKIT_IP_MODE: ``web:truncate,server:drop`` (or a JSON object).
    eventkit_stream_ip_mode: Annotated[dict[str, Literal["full", "truncate", "drop"]], NoDecode] = (
        Field(default_factory=dict)
    )
    #: Requests per second per write key (per client IP without write keys); 0: no limit.
    eventkit_rate_limit: float = Field(default=0.0, ge=0)
    #: Requests a bucket holds (a burst); unset: one second's worth (at least 1).
    eventkit_rate_limit_burst: float | None = Field(default=None, ge=1)
    #: Per write key (or its id): ``KEY:RATE[:BURST],...``; a rate of 0 is no limit.
    eventkit_rate_limit_keys: str = ""

    # --- Metrics ----------------------------------------------------------------------------
    eventkit_metrics_enabled: bool = True
    eventkit_metrics_port: int = Field(default=9090, ge=0, le=65535)
    eventkit_metrics_host: str = "127.0.0.1"

    @field_validator(
        "eventkit_write_keys",
        "eventkit_cors_origins",
        "eventkit_trusted_proxies",
        "eventkit_snowplow_app_ids",
        mode="before",
    )
    @classmethod
    def _lists(cls, value: Any) -> Any:
        return _split_list(value)

    @field_validator("eventkit_stream_ip_mode", mode="before")
    @classmethod
    def _stream_ip_mode(cls, value: Any) -> Any:
        from eventkit_collector.anonymise import parse_stream_modes

        return parse_stream_modes(value)

    @field_validator("eventkit_type_streams", mode="before")
    @classmethod
    def _type_streams(cls, value: Any) -> Any:
        if isinstance(value, str):
            value = json.loads(value) if value.strip() else {}
        if not isinstance(value, dict):
            return value
        merged = dict(DEFAULT_TYPE_STREAMS)
        merged.update(value)
        for stream in merged.values():
            validate_stream(stream)
        return merged

    @field_validator("eventkit_snowplow_type_streams", mode="before")
    @classmethod
    def _snowplow_type_streams(cls, value: Any) -> Any:
        if isinstance(value, str):
            value = json.loads(value) if value.strip() else {}
        if isinstance(value, dict):
            for stream in value.values():
                validate_stream(stream)
        return value

    @property
    def snowplow_type_streams(self) -> dict[str, str]:
        """Call type -> stream of Snowplow events: EVENTKIT_TYPE_STREAMS with the overrides."""
        return {**self.eventkit_type_streams, **self.eventkit_snowplow_type_streams}

    @field_validator("eventkit_source_streams", mode="before")
    @classmethod
    def _source_streams(cls, value: Any) -> Any:
        if isinstance(value, str):
            value = json.loads(value) if value.strip() else {}
        return value

    @field_validator("eventkit_source_streams")
    @classmethod
    def _check_source_streams(
        cls, value: dict[str, str | dict[str, str]]
    ) -> dict[str, str | dict[str, str]]:
        for source, streams in value.items():
            if source not in VENDOR_PEEKS:
                known = ", ".join(sorted(VENDOR_PEEKS))
                raise ConfigurationError(
                    f"EVENTKIT_SOURCE_STREAMS names source {source!r}: use one of {known}"
                )
            for stream in [streams] if isinstance(streams, str) else streams.values():
                validate_stream(stream)
        return value

    def source_type_streams(self) -> dict[str, dict[str, str]]:
        """Per source in ``eventkit_source_streams``: its whole call type -> stream table."""
        out: dict[str, dict[str, str]] = {}
        for source, streams in self.eventkit_source_streams.items():
            if isinstance(streams, str):
                out[source] = dict.fromkeys(self.eventkit_type_streams, streams)
            else:
                out[source] = {**self.eventkit_type_streams, **streams}
        return out

    @model_validator(mode="after")
    def _backends(self) -> Settings:
        if self.eventkit_event_store == "gcs" and not self.gcp_gcs_bucket:
            raise ConfigurationError(
                "EVENTKIT_EVENT_STORE=gcs needs GCP_GCS_BUCKET (the bucket name)"
            )
        if self.eventkit_queue_mode == "pubsub" and not self.gcp_project_id:
            raise ConfigurationError("EVENTKIT_QUEUE_MODE=pubsub needs GCP_PROJECT_ID")
        return self

    @property
    def auth_enabled(self) -> bool:
        return bool(self.eventkit_write_keys)

    @property
    def rate_limit_path(self) -> Path:
        """The rate-limit table the ``--workers`` processes share."""
        return self.eventkit_data_dir / "ratelimit" / "buckets.bin"

    @property
    def ring_dir(self) -> Path:
        return self.eventkit_data_dir / "ring"
