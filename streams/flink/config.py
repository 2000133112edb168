"""Settings of the PyFlink job. Env vars ``MILLSTREAM_FLINK_*``.

Windowing (window, out-of-orderness, lateness, idle timeout) is shared with the Faust job and comes
from :class:`streams.config.StreamSettings`; this class only holds what is specific to Flink.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from schemas.config import NonEmptyPath


class FlinkSettings(BaseSettings):
    """Runtime of the Flink job: parallelism, checkpoints, delivery, Python execution."""

    model_config = SettingsConfigDict(
        env_prefix="MILLSTREAM_FLINK_", frozen=True, extra="ignore", allow_inf_nan=False
    )

    parallelism: int | None = Field(
        None,
        ge=1,
        description="MILLSTREAM_FLINK_PARALLELISM: parallelism of every operator. Unset: 1 on the local "
        "MiniCluster, the cluster's parallelism.default in application mode. Beyond the readings topic's "
        "partition count extra source subtasks read nothing and hold the watermark back until "
        "MILLSTREAM_FLINK_SOURCE_IDLE_TIMEOUT_MS marks them idle (after each start no window closes before "
        "that; a local `run flink` refuses it with the timeout at 0).",
    )
    checkpoint_dir: NonEmptyPath | None = Field(
        None,
        description="MILLSTREAM_FLINK_CHECKPOINT_DIR: where checkpoints go (local MiniCluster). Unset: "
        "$MILLSTREAM_DATA_DIR/flink/checkpoints. In application mode the cluster's "
        "execution.checkpointing.dir wins unless this is set.",
    )
    checkpoint_interval_ms: int = Field(
        10_000,
        ge=0,
        description="MILLSTREAM_FLINK_CHECKPOINT_INTERVAL_MS: exactly-once checkpoint interval. Output "
        "records become visible to read_committed consumers when the checkpoint after them completes, so "
        "this is also the added end-to-end latency. 0 disables checkpoints (and transactions).",
    )
    restore: str = Field(
        "latest",
        description="MILLSTREAM_FLINK_RESTORE: `latest` resumes from the newest completed checkpoint in "
        "the checkpoint directory (if any), `none` starts fresh, anything else is a checkpoint or savepoint "
        "path (a chk-N or savepoint-* directory, or its _metadata file).",
    )
    delivery: Literal["exactly-once", "at-least-once"] = Field(
        "exactly-once",
        description="MILLSTREAM_FLINK_DELIVERY: Kafka sink guarantee. exactly-once writes in Kafka "
        "transactions committed with each checkpoint (needs checkpoints and a broker with transactions); "
        "at-least-once flushes on checkpoints and relies on idempotent writes downstream.",
    )
    transaction_timeout_ms: int = Field(
        300_000,
        ge=1000,
        description="MILLSTREAM_FLINK_TRANSACTION_TIMEOUT_MS: Kafka transaction timeout of the sink; must "
        "not exceed the broker's transaction.max.timeout.ms and should exceed the longest expected outage.",
    )
    source_idle_timeout_ms: int = Field(
        30_000,
        ge=0,
        description="MILLSTREAM_FLINK_SOURCE_IDLE_TIMEOUT_MS: a readings partition without records for "
        "this long stops holding back Flink's watermark (an empty partition would stop it forever). Keep it "
        "well above any pause of a busy partition (catch-up after a restart, backpressure): a partition "
        "marked idle that resumes with older readings finds their windows already closed. Quiet machines "
        "are closed by MILLSTREAM_STREAM_IDLE_TIMEOUT_MS instead. 0 disables.",
    )
    python_mode: Literal["process", "thread", "loopback"] = Field(
        "process",
        description="MILLSTREAM_FLINK_PYTHON_MODE: `process` runs the Python functions in one worker "
        "process per subtask (parallel across subtasks); `thread` embeds them in the JVM (no "
        "serialisation, one GIL per TaskManager); `loopback` (local MiniCluster only) runs them inside the "
        "client process (one GIL; its /metrics then shows the job's own Python metrics).",
    )
    rest_port: int = Field(
        0,
        ge=0,
        le=65535,
        description="MILLSTREAM_FLINK_REST_PORT: REST port of the local MiniCluster; 0 picks a free one.",
    )
    prometheus_port: int | None = Field(
        None,
        ge=1,
        le=65535,
        description="MILLSTREAM_FLINK_PROMETHEUS_PORT: when set, Flink's own PrometheusReporter serves "
        "Flink-native metrics (operators, checkpoints, Kafka clients, the job's user metrics) on this port. "
        "Not on the local MiniCluster, whose plugin path lacks the reporter (a known gap).",
    )
    conf: dict[str, str] = Field(
        default_factory=dict,
        description='MILLSTREAM_FLINK_CONF: extra Flink configuration as JSON, e.g. {"python.fn-execution.'
        'bundle.time": "200"}; applied last.',
    )

    def resolved_checkpoint_dir(self, data_dir: Path) -> Path:
        return (self.checkpoint_dir or data_dir / "flink" / "checkpoints").resolve()

    def extra_conf(self) -> dict[str, Any]:
        return dict(self.conf)
