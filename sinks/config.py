"""Settings of the ClickHouse sink: where ClickHouse is, how the writer batches, how the consumer runs.

Each field is read from the environment variable named in its description (``MILLSTREAM_...``).
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import quote, unquote, urlsplit, urlunsplit

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from schemas.config import NonEmptyPath

DEFAULT_DATABASE = "millstream"


class ClickHouseSettings(BaseSettings):
    """Connection to ClickHouse (embedded chdb by default, or a server) and the writer's batching."""

    model_config = SettingsConfigDict(
        env_prefix="MILLSTREAM_CLICKHOUSE_",
        frozen=True,
        extra="ignore",
        allow_inf_nan=False,
        populate_by_name=True,
    )

    url: str | None = Field(
        None,
        description="MILLSTREAM_CLICKHOUSE_URL: unset = embedded ClickHouse (chdb) in "
        "<MILLSTREAM_DATA_DIR>/clickhouse; 'chdb:///abs/path' = embedded at that path; "
        "'http(s)://user:password@host:8123/database' = a ClickHouse server.",
    )
    data_dir: NonEmptyPath = Field(
        Path(".millstream"),
        validation_alias="MILLSTREAM_DATA_DIR",
        description="MILLSTREAM_DATA_DIR: the local stack's folder; the embedded ClickHouse lives in "
        "its 'clickhouse' sub-folder when MILLSTREAM_CLICKHOUSE_URL is unset.",
    )
    database: str | None = Field(
        None,
        description="MILLSTREAM_CLICKHOUSE_DATABASE: database of the Millstream tables (created when "
        "missing by `millstream migrate` and by a sink that migrates at start). Unset: the database named "
        "in the URL path, else 'millstream'.",
    )
    user: str | None = Field(
        None, description="MILLSTREAM_CLICKHOUSE_USER: server user; overrides the URL's (ignored by chdb)."
    )
    password: SecretStr | None = Field(
        None,
        description="MILLSTREAM_CLICKHOUSE_PASSWORD: server password (secret); overrides the URL's.",
    )
    connect_timeout_s: float = Field(
        10.0, gt=0, description="MILLSTREAM_CLICKHOUSE_CONNECT_TIMEOUT_S: server connect timeout."
    )
    send_receive_timeout_s: float = Field(
        300.0, gt=0, description="MILLSTREAM_CLICKHOUSE_SEND_RECEIVE_TIMEOUT_S: server read/write timeout."
    )
    batch_rows: int = Field(
        5000,
        ge=1,
        description="MILLSTREAM_CLICKHOUSE_BATCH_ROWS: the writer flushes when this many rows are pending.",
    )
    batch_age_ms: int = Field(
        500,
        ge=0,
        description="MILLSTREAM_CLICKHOUSE_BATCH_AGE_MS: ...or when the oldest pending row is this old "
        "(the main part of the window-close to row-visible latency).",
    )
    max_retries: int = Field(
        100,
        ge=0,
        description="MILLSTREAM_CLICKHOUSE_MAX_RETRIES: retries of an insert after a transient error "
        "before the sink gives up (and exits without committing the batch's offsets). With the default "
        "backoff, 100 retries ride out about 16 minutes of a ClickHouse that is restarting or overloaded; "
        "consumption stays paused meanwhile and Kafka keeps the records.",
    )
    retry_backoff_ms: int = Field(
        200, ge=1, description="MILLSTREAM_CLICKHOUSE_RETRY_BACKOFF_MS: first retry delay (doubles each try)."
    )
    retry_backoff_max_ms: int = Field(
        10_000, ge=1, description="MILLSTREAM_CLICKHOUSE_RETRY_BACKOFF_MAX_MS: cap of the retry delay."
    )
    max_partitions_per_insert: int = Field(
        1000,
        ge=0,
        description="MILLSTREAM_CLICKHOUSE_MAX_PARTITIONS_PER_INSERT: max daily partitions one insert may "
        "touch (ClickHouse's default of 100 breaks replays of months of history); 0 = no limit.",
    )

    ttl_readings_days: int = Field(
        7,
        ge=0,
        description="MILLSTREAM_CLICKHOUSE_TTL_READINGS_DAYS: retention of raw readings (by event time); "
        "0 = keep forever. Applied by `millstream migrate` and at sink start.",
    )
    ttl_windows_days: int = Field(
        90,
        ge=0,
        description="MILLSTREAM_CLICKHOUSE_TTL_WINDOWS_DAYS: retention of window_aggregates "
        "(by window_start); 0 = keep forever.",
    )
    ttl_rollup_1m_days: int = Field(
        180,
        ge=0,
        description="MILLSTREAM_CLICKHOUSE_TTL_ROLLUP_1M_DAYS: retention of rollup_1m; 0 = forever.",
    )
    ttl_rollup_1h_days: int = Field(
        730,
        ge=0,
        description="MILLSTREAM_CLICKHOUSE_TTL_ROLLUP_1H_DAYS: retention of rollup_1h; 0 = forever.",
    )
    ttl_rollup_1d_days: int = Field(
        0, ge=0, description="MILLSTREAM_CLICKHOUSE_TTL_ROLLUP_1D_DAYS: retention of rollup_1d; 0 = forever."
    )
    ttl_events_days: int = Field(
        365,
        ge=0,
        description="MILLSTREAM_CLICKHOUSE_TTL_EVENTS_DAYS: retention of spc_signals, anomalies and alerts; "
        "0 = keep forever.",
    )
    ttl_dead_letters_days: int = Field(
        30,
        ge=0,
        description="MILLSTREAM_CLICKHOUSE_TTL_DEAD_LETTERS_DAYS: retention of dead_letters (by failed_at); "
        "0 = keep forever.",
    )

    @field_validator("url")
    @classmethod
    def _scheme(cls, v: str | None) -> str | None:
        if v is None or not v.strip():
            return None
        parts = urlsplit(v.strip())
        scheme = parts.scheme.lower()
        if scheme not in {"chdb", "http", "https", "clickhouse", "clickhouses"}:
            msg = "must start with chdb://, http(s):// or clickhouse(s)://"
            raise ValueError(msg)
        if scheme == "chdb" and parts.netloc not in ("", "memory", ":memory:"):
            msg = (
                f"an embedded database is written chdb:///absolute/path (three slashes); this one names "
                f"{parts.netloc!r} as a host"
            )
            raise ValueError(msg)
        if scheme == "chdb" and not parts.netloc and parts.path and not parts.path.startswith("/"):
            msg = "an embedded database is written chdb:///absolute/path (an absolute path)"
            raise ValueError(msg)
        return v.strip()

    # ------------------------------------------------------------------ derived
    @property
    def embedded(self) -> bool:
        """True when the target is the in-process engine (chdb)."""
        return self.url is None or self.url.lower().startswith("chdb:")

    def embedded_path(self) -> Path | None:
        """Absolute data folder of the embedded engine; None for in-memory or a server."""
        if not self.embedded:
            return None
        if self.url is None:
            return (self.data_dir / "clickhouse").resolve()
        parts = urlsplit(self.url)
        location = parts.netloc or unquote(parts.path)
        if location in ("", "memory", ":memory:"):
            return None
        return Path(location).resolve()

    def resolved_database(self) -> str:
        """The database the tables live in."""
        if self.database:
            return self.database
        if self.url is not None and not self.embedded:
            name = unquote(urlsplit(self.url).path.strip("/").split("/")[0])
            if name:
                return name
        return DEFAULT_DATABASE

    def server_dsn(self) -> str:
        """The server URL without its database path (the database is created, then selected)."""
        if self.url is None or self.embedded:
            msg = "server_dsn() is for server URLs; the embedded engine has no DSN"
            raise ValueError(msg)
        parts = urlsplit(self.url)
        scheme = {"clickhouse": "http", "clickhouses": "https"}.get(parts.scheme.lower(), parts.scheme)
        return urlunsplit((scheme, parts.netloc, "", parts.query, ""))

    def display_url(self) -> str:
        """The target for messages and logs, with any password masked."""
        if self.embedded:
            path = self.embedded_path()
            return f"chdb://{path}" if path else "chdb://memory"
        parts = urlsplit(self.url or "")
        netloc = parts.netloc
        if "@" in netloc:
            creds, host = netloc.rsplit("@", 1)
            user = creds.split(":", 1)[0]
            netloc = f"{quote(unquote(user))}:***@{host}" if ":" in creds else f"{user}@{host}"
        return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


class SinkSettings(BaseSettings):
    """The Kafka side of the sink: consumer group and loop timing."""

    model_config = SettingsConfigDict(
        env_prefix="MILLSTREAM_SINK_", frozen=True, extra="ignore", allow_inf_nan=False
    )

    group_id: str = Field(
        "millstream-sink",
        min_length=1,
        description="MILLSTREAM_SINK_GROUP_ID: consumer group; its committed offsets are the sink's "
        "progress.",
    )
    poll_timeout_ms: int = Field(
        200, ge=1, description="MILLSTREAM_SINK_POLL_TIMEOUT_MS: longest wait for records in one poll."
    )
    fetch_wait_max_ms: int = Field(
        100,
        ge=0,
        description="MILLSTREAM_SINK_FETCH_WAIT_MAX_MS: longest time the broker may hold a fetch for more "
        "data; low values cut end-to-end latency (librdkafka's default of 500 ms adds up to that much).",
    )
    max_poll_records: int = Field(
        1000, ge=1, description="MILLSTREAM_SINK_MAX_POLL_RECORDS: records taken from the consumer per poll."
    )
    auto_offset_reset: str = Field(
        "earliest",
        description="MILLSTREAM_SINK_AUTO_OFFSET_RESET: where a new group starts (earliest or latest).",
    )
    auto_migrate: bool = Field(
        True,
        description="MILLSTREAM_SINK_AUTO_MIGRATE: apply pending ClickHouse migrations at start (false, like "
        "--no-migrate: the database and tables must already exist, from `millstream migrate`).",
    )
    metrics_port: int | None = Field(
        None,
        ge=0,
        le=65535,
        description="MILLSTREAM_SINK_METRICS_PORT: serve /metrics, /healthz, /readyz and the Alertmanager "
        "webhook POST /alertmanager on this port; unset = no endpoint.",
    )
    raw_readings: bool = Field(
        False,
        description="MILLSTREAM_SINK_RAW_READINGS: also consume the readings topic into the readings table "
        "(short TTL: MILLSTREAM_CLICKHOUSE_TTL_READINGS_DAYS).",
    )
    max_pending_rows: int = Field(
        20_000,
        ge=1,
        description="MILLSTREAM_SINK_MAX_PENDING_ROWS: backpressure high-water mark. Above this many rows "
        "buffered or being inserted, consumption pauses (it also pauses while an insert is retried) and "
        "resumes once the backlog is down to half of it.",
    )
    lag_interval_s: float = Field(
        2.0, gt=0, description="MILLSTREAM_SINK_LAG_INTERVAL_S: how often the consumer-lag gauge is updated."
    )

    @field_validator("auto_offset_reset")
    @classmethod
    def _reset(cls, v: str) -> str:
        if v.lower() not in {"earliest", "latest"}:
            msg = "must be earliest or latest"
            raise ValueError(msg)
        return v.lower()
