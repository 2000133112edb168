"""Settings of the stream job (both engines)."""

from __future__ import annotations

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class StreamSettings(BaseSettings):
    """Windowing and runtime settings of the stream job. Env vars ``MILLSTREAM_STREAM_*``."""

    model_config = SettingsConfigDict(
        env_prefix="MILLSTREAM_STREAM_", frozen=True, extra="ignore", allow_inf_nan=False
    )

    app_id: str = Field(
        "millstream-windows",
        min_length=1,
        description="MILLSTREAM_STREAM_APP_ID: consumer group and state namespace of the job. Changing it "
        "starts from scratch.",
    )
    window: str = Field(
        "tumbling:10s",
        description="MILLSTREAM_STREAM_WINDOW: window spec, e.g. tumbling:10s, hopping:60s/10s, sliding:10s, "
        "session:30s. The ClickHouse rollups, the dashboards' variables and v_data_gaps read tumbling "
        "windows only: with another kind they stay empty (docs/clickhouse.md).",
    )
    out_of_orderness_ms: int = Field(
        2000, ge=0, description="MILLSTREAM_STREAM_OUT_OF_ORDERNESS_MS: watermark = max event time - this."
    )
    allowed_lateness_ms: int = Field(
        5000,
        ge=0,
        description="MILLSTREAM_STREAM_ALLOWED_LATENESS_MS: how long after the watermark passes a window's "
        "end a late reading still updates it (re-emitted with a higher version). Later readings go to the "
        "late topic.",
    )
    idle_timeout_ms: int = Field(
        5000,
        ge=0,
        description="MILLSTREAM_STREAM_IDLE_TIMEOUT_MS: a partition with no input for this long advances its "
        "watermark with the wall clock, so its last windows still close. 0 disables.",
    )
    state_ttl_ms: int = Field(
        30 * 24 * 3_600_000,
        ge=0,
        description="MILLSTREAM_STREAM_STATE_TTL_MS: a sensor or machine whose newest reading is this far "
        "behind its partition's watermark (event time) and whose windows are all purged is forgotten: its "
        "SPC charts (and for a machine its anomaly models and metric series) go, and its keys are deleted "
        "from the changelog (Flink: from its keyed state, by a timer per silent machine, with Flink's "
        "watermark). If it reports again it starts afresh (a new SPC phase I, a new anomaly warm-up). "
        "Decommissioned and renamed machines and sensors otherwise stay in memory and state for ever. "
        "0 keeps everything.",
    )
    max_future_ms: int = Field(
        300_000,
        ge=0,
        description="MILLSTREAM_STREAM_MAX_FUTURE_MS: readings whose event time is further ahead of the wall "
        "clock are dead-lettered (a wrong device clock must not push the watermark).",
    )
    metrics_port: int = Field(
        9101, ge=0, le=65535, description="MILLSTREAM_STREAM_METRICS_PORT: /metrics, /healthz, /readyz."
    )
    state_dir: str = Field(
        ".millstream/faust",
        description="MILLSTREAM_STREAM_STATE_DIR: Faust's local data directory (created with its parents).",
    )
    broker_wait_s: float = Field(
        30.0,
        ge=0,
        description="MILLSTREAM_STREAM_BROKER_WAIT_S: at start-up the stream job (run faust, run flink) "
        "waits this long for the broker (a TCP connection to a bootstrap server), then stops with an error "
        "naming it.",
    )

    @field_validator("window")
    @classmethod
    def _window(cls, v: str) -> str:
        from streams.windows import WindowSpec

        try:
            WindowSpec.parse(v)
        except Exception as exc:
            raise ValueError(str(exc)) from exc
        return v
