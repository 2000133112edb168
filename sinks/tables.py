"""Target tables of the sink: column order and the record → row conversion of each.

A row function validates what ClickHouse would otherwise clamp or refuse (timestamps outside
DateTime64's range, negative counts) and raises ValueError/TypeError; the writer turns that into a
dead letter with reason ``invalid_record``. Column lists mirror infra/clickhouse/migrations.
Adding a table: a migration, a row function and a TableSpec here, and a route in sinks.runner.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

# DateTime64(3) holds 1900-01-01 .. 2299-12-31; outside that ClickHouse would clamp silently.
TS_MIN_MS = -2_208_988_800_000
TS_MAX_MS = 10_413_791_999_999


@dataclass(frozen=True)
class Source:
    """Where a row came from: its Kafka record."""

    topic: str
    partition: int
    offset: int
    key: bytes | None = None
    payload: bytes = b""


@dataclass(frozen=True)
class TableSpec:
    """A target table: its column order and how a decoded record becomes a row (raises ValueError)."""

    name: str
    columns: tuple[str, ...]
    to_row: Callable[[dict[str, Any]], list[Any]]
    latency_column: str | None = None  # epoch-ms column END_TO_END_LATENCY is measured from

    @property
    def latency_column_index(self) -> int | None:
        return self.columns.index(self.latency_column) if self.latency_column else None


def _ts(record: dict[str, Any], name: str) -> int:
    value = record[name]
    if isinstance(value, bool) or not isinstance(value, int):
        msg = f"{name} must be epoch milliseconds (int), got {type(value).__name__}"
        raise TypeError(msg)
    if not TS_MIN_MS <= value <= TS_MAX_MS:
        msg = f"{name}={value} is outside DateTime64's range (years 1900-2299)"
        raise ValueError(msg)
    return value


def _str(record: dict[str, Any], name: str) -> str:
    value = record[name]
    if not isinstance(value, str):
        msg = f"{name} must be a string, got {type(value).__name__}"
        raise TypeError(msg)
    return value


def _uint(record: dict[str, Any], name: str, bits: int) -> int:
    value = record[name]
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < 2**bits:
        msg = f"{name}={value!r} is not an unsigned {bits}-bit integer"
        raise ValueError(msg)
    return value


def _float(record: dict[str, Any], name: str) -> float:
    return float(record[name])


def _opt_float(record: dict[str, Any], name: str) -> float | None:
    value = record.get(name)
    return None if value is None else float(value)


def window_row(r: dict[str, Any]) -> list[Any]:
    """A WindowAggregate record as a ``window_aggregates`` row (order of WINDOW_AGGREGATES.columns)."""
    start, end = _ts(r, "window_start"), _ts(r, "window_end")
    if end < start:
        msg = f"window_end {end} is before window_start {start}"
        raise ValueError(msg)
    return [
        _str(r, "plant"),
        _str(r, "line"),
        _str(r, "machine_id"),
        _str(r, "sensor"),
        _str(r, "unit"),
        _str(r, "window_kind"),
        start,
        end,
        _uint(r, "count", 64),
        _float(r, "sum"),
        _float(r, "mean"),
        _float(r, "min"),
        _float(r, "max"),
        _float(r, "std"),
        _ts(r, "first_ts"),
        _ts(r, "last_ts"),
        _float(r, "first"),
        _float(r, "last"),
        _opt_float(r, "p50"),
        _opt_float(r, "p95"),
        _opt_float(r, "p99"),
        _opt_float(r, "slope"),
        _uint(r, "version", 32),
        _ts(r, "emitted_at"),
    ]


def dead_letter_row(r: dict[str, Any]) -> list[Any]:
    """A DeadLetter record as a ``dead_letters`` row."""
    key = r.get("key")
    if key is not None and not isinstance(key, bytes | str):
        msg = f"key must be bytes or null, got {type(key).__name__}"
        raise TypeError(msg)
    payload = r["payload"]
    if not isinstance(payload, bytes | str):
        msg = f"payload must be bytes, got {type(payload).__name__}"
        raise TypeError(msg)
    partition, offset = r["partition"], r["offset"]
    if not isinstance(partition, int) or not isinstance(offset, int):
        msg = "partition and offset must be integers"
        raise TypeError(msg)
    return [
        _str(r, "stage"),
        _str(r, "topic"),
        partition,
        offset,
        key,
        payload,
        _str(r, "reason_code"),
        _str(r, "reason"),
        _ts(r, "failed_at"),
    ]


WINDOW_AGGREGATES = TableSpec(
    "window_aggregates",
    (
        "plant",
        "line",
        "machine_id",
        "sensor",
        "unit",
        "window_kind",
        "window_start",
        "window_end",
        "count",
        "sum",
        "mean",
        "min",
        "max",
        "std",
        "first_ts",
        "last_ts",
        "first",
        "last",
        "p50",
        "p95",
        "p99",
        "slope",
        "version",
        "emitted_at",
    ),
    window_row,
    latency_column="window_end",
)
DEAD_LETTERS = TableSpec(
    "dead_letters",
    ("stage", "topic", "partition", "offset", "key", "payload", "reason_code", "reason", "failed_at"),
    dead_letter_row,
)


def dead_letter_record(
    stage: str, reason_code: str, reason: str, source: Source, failed_at_ms: int
) -> dict[str, Any]:
    """A DeadLetter record (schema millstream.DeadLetter) for a Kafka record that could not be handled."""
    return {
        "stage": stage,
        "topic": source.topic,
        "partition": source.partition,
        "offset": source.offset,
        "key": source.key,
        "payload": source.payload,
        "reason_code": reason_code,
        "reason": reason,
        "failed_at": failed_at_ms,
    }
