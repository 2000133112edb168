"""Settings of the gateway producer core and the plant simulator.

Each field is read from the environment variable named in its description. The producer's
connection (bootstrap servers, security) comes from :class:`schemas.config.KafkaSettings`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

Compression = Literal["none", "gzip", "snappy", "lz4", "zstd"]


class ProducerSettings(BaseSettings):
    """How a gateway writes to Kafka: durability, batching, compression, rate limit, accounting."""

    model_config = SettingsConfigDict(env_prefix="MILLSTREAM_PRODUCER_", frozen=True, extra="ignore")

    compression: Compression = Field(
        "lz4", description="MILLSTREAM_PRODUCER_COMPRESSION: none, gzip, snappy, lz4 or zstd."
    )
    linger_ms: float = Field(
        20.0,
        ge=0,
        description="MILLSTREAM_PRODUCER_LINGER_MS: how long a batch waits to fill before it is sent.",
    )
    batch_bytes: int = Field(
        1_000_000,
        ge=1,
        description="MILLSTREAM_PRODUCER_BATCH_BYTES: largest batch per partition (batch.size).",
    )
    batch_messages: int = Field(
        10_000,
        ge=1,
        description="MILLSTREAM_PRODUCER_BATCH_MESSAGES: most messages per batch (batch.num.messages).",
    )
    queue_max_messages: int = Field(
        100_000,
        ge=1,
        description="MILLSTREAM_PRODUCER_QUEUE_MAX_MESSAGES: local send queue; when it is full the gateway "
        "waits for deliveries (backpressure), it never drops.",
    )
    delivery_timeout_ms: int = Field(
        120_000,
        ge=1000,
        description="MILLSTREAM_PRODUCER_DELIVERY_TIMEOUT_MS: a message not acknowledged within this time "
        "(retries included) is reported failed.",
    )
    delivery_reports: Literal["all", "errors"] = Field(
        "errors",
        description="MILLSTREAM_PRODUCER_DELIVERY_REPORTS: 'errors' (default): only failures call back into "
        "Python and acknowledged = produced - failed - in flight, exact once the queue is flushed; "
        "'all': every acknowledgement calls back and is counted one by one (slower).",
    )
    max_values_per_s: float | None = Field(
        None,
        gt=0,
        description="MILLSTREAM_PRODUCER_MAX_VALUES_PER_S: rate limit in sensor values per second "
        "(token bucket); unset: unlimited.",
    )
    burst_values: int | None = Field(
        None,
        ge=1,
        description="MILLSTREAM_PRODUCER_BURST_VALUES: token-bucket capacity; unset: one second's worth.",
    )
    flush_timeout_s: float = Field(
        30.0,
        gt=0,
        description="MILLSTREAM_PRODUCER_FLUSH_TIMEOUT_S: on close, how long to wait for outstanding "
        "deliveries; what is still queued then is purged and counted failed.",
    )
    poll_every: int = Field(
        1000,
        ge=1,
        description="MILLSTREAM_PRODUCER_POLL_EVERY: serve delivery reports and update metrics every "
        "N messages.",
    )
    extra: dict[str, str] = Field(
        {},
        description="MILLSTREAM_PRODUCER_EXTRA: JSON object of further librdkafka settings, applied last "
        '(e.g. {"socket.keepalive.enable": "true"}).',
    )

    @field_validator("extra", mode="before")
    @classmethod
    def _extra(cls, v: Any) -> Any:
        if isinstance(v, str):
            v = json.loads(v) if v.strip() else {}
        if isinstance(v, dict):
            return {str(k): str(val) for k, val in v.items()}
        return v

    def librdkafka(self) -> dict[str, str | int | float | bool]:
        """Producer settings in librdkafka form (without the connection, see KafkaSettings)."""
        conf: dict[str, str | int | float | bool] = {
            "enable.idempotence": True,
            "acks": "all",
            "compression.type": self.compression,
            "linger.ms": self.linger_ms,
            "batch.size": self.batch_bytes,
            "batch.num.messages": self.batch_messages,
            "queue.buffering.max.messages": self.queue_max_messages,
            "delivery.timeout.ms": self.delivery_timeout_ms,
        }
        if self.delivery_reports == "errors":
            conf["delivery.report.only.error"] = True
        conf.update(self.extra)
        return conf


class SimulatorSettings(BaseSettings):
    """The simulated plant: how many machines and sensors, how fast, how faulty, how reproducible."""

    model_config = SettingsConfigDict(env_prefix="MILLSTREAM_SIM_", frozen=True, extra="ignore")

    machines: int = Field(10, ge=1, description="MILLSTREAM_SIM_MACHINES: number of machines.")
    sensors: int = Field(
        8,
        ge=1,
        description="MILLSTREAM_SIM_SENSORS: sensors per machine; the first 8 are vibration_rms, "
        "temperature, pressure, current, energy, noise, part_count, machine_state, more are auxiliary "
        "signals.",
    )
    rate_hz: float = Field(1.0, gt=0, description="MILLSTREAM_SIM_RATE_HZ: scans per second per machine.")
    fault_probability: float = Field(
        0.002,
        ge=0,
        le=1,
        description="MILLSTREAM_SIM_FAULT_PROBABILITY: chance that a fault starts on a running, healthy "
        "machine in one second of simulated time.",
    )
    seed: int = Field(
        7, description="MILLSTREAM_SIM_SEED: random seed; same seed and settings, same signals."
    )
    labels_path: Path | None = Field(
        None,
        description="MILLSTREAM_SIM_LABELS_PATH: JSONL file for the ground-truth fault labels; unset: "
        "none written.",
    )
    duration_s: float | None = Field(
        None,
        gt=0,
        description="MILLSTREAM_SIM_DURATION_S: stop after this many seconds (wall clock live, event time "
        "when fast-forwarding); unset: run until stopped.",
    )
    max_scans: int | None = Field(
        None, ge=1, description="MILLSTREAM_SIM_MAX_SCANS: stop after this many scans in total."
    )
    start_ms: int | None = Field(
        None,
        description="MILLSTREAM_SIM_START_MS: fast-forward from this event time (epoch ms) without sleeping; "
        "unset: live, event time is the wall clock at each scan.",
    )
    fast_forward: bool = Field(
        False,
        description="MILLSTREAM_SIM_FAST_FORWARD: generate without sleeping, event time starting now "
        "(implied by START_MS).",
    )
    plant: str = Field("p1", description="MILLSTREAM_SIM_PLANT: plant identifier.")
    machines_per_line: int = Field(
        10,
        ge=1,
        description="MILLSTREAM_SIM_MACHINES_PER_LINE: machines m001.. fill lines l1, l2, .. in order.",
    )
    gateway_id: str = Field(
        "sim-1", description="MILLSTREAM_SIM_GATEWAY_ID: gateway id written into every scan."
    )
    parts_per_lot: int = Field(
        200, ge=1, description="MILLSTREAM_SIM_PARTS_PER_LOT: a machine starts a new lot_id every K parts."
    )
    uncertain_probability: float = Field(
        0.002,
        ge=0,
        le=1,
        description="MILLSTREAM_SIM_UNCERTAIN_PROBABILITY: share of values with quality UNCERTAIN.",
    )
    bad_probability: float = Field(
        0.0005, ge=0, le=1, description="MILLSTREAM_SIM_BAD_PROBABILITY: share of values with quality BAD."
    )

    @property
    def fast(self) -> bool:
        """True when event time is generated rather than read from the clock."""
        return self.fast_forward or self.start_ms is not None
