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

from schemas.config import NonEmptyPath

Compression = Literal["none", "gzip", "snappy", "lz4", "zstd"]


class ProducerSettings(BaseSettings):
    """How a gateway writes to Kafka: durability, batching, compression, rate limit, accounting."""

    model_config = SettingsConfigDict(
        env_prefix="MILLSTREAM_PRODUCER_", frozen=True, extra="ignore", allow_inf_nan=False
    )

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

    model_config = SettingsConfigDict(
        env_prefix="MILLSTREAM_SIM_", frozen=True, extra="ignore", allow_inf_nan=False
    )

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
    labels_path: NonEmptyPath | None = Field(
        None,
        description="MILLSTREAM_SIM_LABELS_PATH: JSONL file for the ground-truth fault labels; unset: "
        "none written.",
    )
    metadata_path: NonEmptyPath | None = Field(
        None,
        description="MILLSTREAM_SIM_METADATA_PATH: CSV of the simulated plant's machines and sensors (units, "
        "specification limits) for `millstream metadata load`, written at start; unset: none written.",
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
        "sim-1", min_length=1, description="MILLSTREAM_SIM_GATEWAY_ID: gateway id written into every scan."
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

    quiet_machines: str = Field(
        "",
        description="MILLSTREAM_SIM_QUIET_MACHINES: comma-separated machine ids (m001, ..) that get no "
        "random faults, e.g. as a fault-free reference.",
    )
    fault_schedule: str = Field(
        "",
        description="MILLSTREAM_SIM_FAULT_SCHEDULE: faults at fixed times, comma-separated "
        "MACHINE:KIND:START_S:DURATION_S[:MAGNITUDE or, for sensor_stuck, SENSOR] (START_S in seconds of "
        "simulated time after the first scan; magnitude default: the middle of the kind's range). "
        "Machines named here get only their scheduled faults.",
    )

    @field_validator("fault_schedule")
    @classmethod
    def _schedule(cls, v: str) -> str:
        from ingest.signals import parse_schedule

        parse_schedule(v)  # raises ValueError with the offending entry
        return v

    @property
    def quiet(self) -> tuple[str, ...]:
        """The machine ids of QUIET_MACHINES."""
        return tuple(x.strip() for x in self.quiet_machines.split(",") if x.strip())

    @property
    def fast(self) -> bool:
        """True when event time is generated rather than read from the clock."""
        return self.fast_forward or self.start_ms is not None


FsyncPolicy = Literal["always", "interval", "never"]
OverflowPolicy = Literal["drop-oldest", "block", "drop-newest"]


class SpoolSettings(BaseSettings):
    """The store-and-forward spool: where, how big, how durable, what happens when it is full."""

    model_config = SettingsConfigDict(
        env_prefix="MILLSTREAM_SPOOL_", frozen=True, extra="ignore", allow_inf_nan=False
    )

    dir: NonEmptyPath | None = Field(
        None,
        description="MILLSTREAM_SPOOL_DIR: folder of the spool segments; one gateway per folder (locked). "
        "Unset (and no --spool-dir or spool.dir in the gateway's file): .millstream/spool/<gateway_id>.",
    )
    max_bytes: int = Field(
        1 << 30,
        ge=1024,
        description="MILLSTREAM_SPOOL_MAX_BYTES: size bound of all segments together; beyond it the "
        "overflow policy applies.",
    )
    segment_bytes: int = Field(
        16 << 20,
        ge=256,
        description="MILLSTREAM_SPOOL_SEGMENT_BYTES: a segment file rolls over at this size; a segment is "
        "deleted once every record in it was acknowledged by the broker. At most MAX_BYTES / 2.",
    )
    fsync: FsyncPolicy = Field(
        "always",
        description="MILLSTREAM_SPOOL_FSYNC: 'always': a record is on disk (fsync) before it counts as "
        "spooled; 'interval': fsync every FSYNC_INTERVAL_MS; 'never': leave it to the OS.",
    )
    fsync_interval_ms: int = Field(
        200, ge=1, description="MILLSTREAM_SPOOL_FSYNC_INTERVAL_MS: the period of fsync='interval'."
    )
    overflow: OverflowPolicy = Field(
        "drop-oldest",
        description="MILLSTREAM_SPOOL_OVERFLOW: when the spool is full: 'drop-oldest' deletes the oldest "
        "segment, 'drop-newest' refuses the new record, 'block' stops taking readings from the source "
        "(backpressure) until replay frees space. Dropped records are counted.",
    )

    @field_validator("segment_bytes")
    @classmethod
    def _segment(cls, v: int, info: Any) -> int:
        max_bytes = info.data.get("max_bytes")
        if max_bytes is not None and v * 2 > max_bytes:
            msg = f"segment_bytes ({v}) must be at most half of max_bytes ({max_bytes})"
            raise ValueError(msg)
        return v


class ForwarderSettings(BaseSettings):
    """When the broker counts as unreachable, how it is probed and how the spool is replayed."""

    model_config = SettingsConfigDict(
        env_prefix="MILLSTREAM_FORWARD_", frozen=True, extra="ignore", allow_inf_nan=False
    )

    offline_after_ms: int = Field(
        5000,
        ge=100,
        description="MILLSTREAM_FORWARD_OFFLINE_AFTER_MS: a message unacknowledged for this long (or a local "
        "queue full for this long) means the broker is unreachable: readings go to the spool. A delivery "
        "failure or librdkafka's 'all brokers down' switches at once.",
    )
    probe_interval_ms: int = Field(
        1000,
        ge=50,
        description="MILLSTREAM_FORWARD_PROBE_INTERVAL_MS: while offline, ask the broker for metadata this "
        "often; the first answer ends the outage.",
    )
    replay_window: int = Field(
        5000,
        ge=1,
        description="MILLSTREAM_FORWARD_REPLAY_WINDOW: spool records replayed but not yet acknowledged, at "
        "most.",
    )
    queue_size: int = Field(
        20_000,
        ge=1,
        description="MILLSTREAM_FORWARD_QUEUE_SIZE: readings handed over by the protocol side and not yet "
        "routed; a full queue blocks the source.",
    )
    close_timeout_s: float = Field(
        15.0,
        gt=0,
        description="MILLSTREAM_FORWARD_CLOSE_TIMEOUT_S: on stop, how long to wait for acknowledgements; "
        "what is still unacknowledged then stays in the spool for the next start.",
    )
    reconnect_backoff_max_ms: int = Field(
        1000,
        ge=10,
        description="MILLSTREAM_FORWARD_RECONNECT_BACKOFF_MAX_MS: librdkafka's reconnect backoff cap, so an "
        "outage ends within about this long after the broker is back.",
    )


def load_config_file(path: Path) -> dict[str, Any]:
    """A gateway configuration file: YAML (``.yaml``/``.yml``) or JSON, holding one mapping."""
    from schemas.exceptions import ConfigError

    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        msg = f"cannot read the gateway configuration {path}: {exc}"
        raise ConfigError(msg) from exc
    is_yaml = path.suffix.lower() in (".yaml", ".yml")
    if is_yaml:
        try:
            import yaml
        except ImportError as exc:  # pragma: no cover - depends on the install
            msg = "YAML gateway configurations need PyYAML: pip install 'millstream[gateways]'"
            raise ConfigError(msg) from exc
        errors: tuple[type[Exception], ...] = (ValueError, yaml.YAMLError)
    else:
        errors = (ValueError,)
    try:
        data = yaml.safe_load(text) if is_yaml else json.loads(text)
    except errors as exc:
        msg = f"{path} is not valid {'YAML' if is_yaml else 'JSON'}: {exc}"
        raise ConfigError(msg) from exc
    if data is None:
        data = {}
    if not isinstance(data, dict):
        msg = f"{path} must hold a mapping at the top level, not {type(data).__name__}"
        raise ConfigError(msg)
    return data
