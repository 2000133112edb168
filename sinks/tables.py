"""Target tables of the sink: column order and the record → row conversion of each.

A row function validates what ClickHouse would otherwise clamp or refuse (timestamps outside
DateTime64's range, negative counts), or store to harm (a window's NaN or infinite statistic, which
the rollups would sum into their buckets), and raises ValueError/TypeError; the writer turns that into a
dead letter with reason ``invalid_record``. Column lists mirror infra/clickhouse/migrations.
Adding a table: a migration, a row function and a TableSpec here, and a route in :data:`ROUTES`.
The alerts and machines tables are written by :mod:`sinks.alerts` and :mod:`sinks.metadata`.
"""

from __future__ import annotations

import json
import math
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


def _int64(record: dict[str, Any], name: str) -> int:
    value = record[name]
    if isinstance(value, bool) or not isinstance(value, int) or not -(2**63) <= value < 2**63:
        msg = f"{name}={value!r} is not a signed 64-bit integer"
        raise ValueError(msg)
    return value


def _opt_str(record: dict[str, Any], name: str) -> str | None:
    return None if record.get(name) is None else _str(record, name)


def _opt_ts(record: dict[str, Any], name: str) -> int | None:
    return None if record.get(name) is None else _ts(record, name)


def _float(record: dict[str, Any], name: str) -> float:
    value = record[name]
    if isinstance(value, bool) or not isinstance(value, int | float):
        msg = f"{name} must be a number, got {type(value).__name__}"
        raise TypeError(msg)
    return float(value)


def _opt_float(record: dict[str, Any], name: str) -> float | None:
    return None if record.get(name) is None else _float(record, name)


def _finite(record: dict[str, Any], name: str) -> float:
    """A number that must be finite: one NaN or infinity summed into a rollup bucket spoils it for good."""
    value = _float(record, name)
    if not math.isfinite(value):
        msg = f"{name}={value} is not finite"
        raise ValueError(msg)
    return value


def _opt_finite(record: dict[str, Any], name: str) -> float | None:
    return None if record.get(name) is None else _finite(record, name)


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
        _finite(r, "sum"),
        _finite(r, "mean"),
        _finite(r, "min"),
        _finite(r, "max"),
        _finite(r, "std"),
        _ts(r, "first_ts"),
        _ts(r, "last_ts"),
        _finite(r, "first"),
        _finite(r, "last"),
        _opt_finite(r, "p50"),
        _opt_finite(r, "p95"),
        _opt_finite(r, "p99"),
        _opt_finite(r, "slope"),
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
        r.get("payload_json"),
        _str(r, "reason_code"),
        _str(r, "reason"),
        _ts(r, "failed_at"),
    ]


def reading_row(r: dict[str, Any]) -> list[Any]:
    """A Reading record (or one reading of an exploded MachineScan) as a ``readings`` row."""
    return [
        _str(r, "plant"),
        _str(r, "line"),
        _str(r, "machine_id"),
        _str(r, "sensor"),
        _str(r, "unit"),
        _ts(r, "event_time"),
        _float(r, "value"),
        _str(r, "quality"),
        _str(r, "gateway_id"),
        _int64(r, "seq"),
        _opt_str(r, "lot_id"),
    ]


def spc_signal_row(r: dict[str, Any]) -> list[Any]:
    """An SpcSignal record as a ``spc_signals`` row."""
    return [
        _str(r, "plant"),
        _str(r, "line"),
        _str(r, "machine_id"),
        _str(r, "sensor"),
        _str(r, "chart"),
        _str(r, "rule"),
        _int64(r, "point_index"),
        _float(r, "value"),
        _float(r, "center"),
        _opt_float(r, "lcl"),
        _opt_float(r, "ucl"),
        _opt_ts(r, "window_start"),
        _opt_ts(r, "window_end"),
        _ts(r, "emitted_at"),
        _opt_ts(r, "window_start") or 0,  # point_start: part of the identity (migration 0012)
    ]


ANOMALY_STATES = frozenset({"open", "close"})


def anomaly_row(r: dict[str, Any]) -> list[Any]:
    """An AnomalyEvent record as an ``anomalies`` row (state must be open or close)."""
    state = _str(r, "state")
    if state not in ANOMALY_STATES:
        msg = f"state={state!r} is not one of {sorted(ANOMALY_STATES)}"
        raise ValueError(msg)
    features = r["features"]
    if not isinstance(features, dict) or not all(isinstance(k, str) for k in features):
        msg = "features must be a map of string to number"
        raise TypeError(msg)
    return [
        _str(r, "plant"),
        _str(r, "line"),
        _str(r, "machine_id"),
        _str(r, "sensor"),
        state,
        _ts(r, "event_time"),
        _ts(r, "started_at"),
        _float(r, "score"),
        _float(r, "threshold"),
        _str(r, "model_id"),
        {k: _float(features, k) for k in features},
        _ts(r, "emitted_at"),
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
    (
        "stage",
        "topic",
        "partition",
        "offset",
        "key",
        "payload",
        "payload_json",
        "reason_code",
        "reason",
        "failed_at",
    ),
    dead_letter_row,
)

READINGS = TableSpec(
    "readings",
    (
        "plant",
        "line",
        "machine_id",
        "sensor",
        "unit",
        "event_time",
        "value",
        "quality",
        "gateway_id",
        "seq",
        "lot_id",
    ),
    reading_row,
)
SPC_SIGNALS = TableSpec(
    "spc_signals",
    (
        "plant",
        "line",
        "machine_id",
        "sensor",
        "chart",
        "rule",
        "point_index",
        "value",
        "center",
        "lcl",
        "ucl",
        "window_start",
        "window_end",
        "emitted_at",
        "point_start",
    ),
    spc_signal_row,
)
ANOMALIES = TableSpec(
    "anomalies",
    (
        "plant",
        "line",
        "machine_id",
        "sensor",
        "state",
        "event_time",
        "started_at",
        "score",
        "threshold",
        "model_id",
        "features",
        "emitted_at",
    ),
    anomaly_row,
)


@dataclass(frozen=True)
class Route:
    """Where records of one schema go: a table, and how one record becomes rows' records."""

    table: TableSpec
    expand: Callable[[dict[str, Any]], list[dict[str, Any]]] | None = None

    def records(self, record: dict[str, Any]) -> list[dict[str, Any]]:
        return self.expand(record) if self.expand is not None else [record]


def _explode_scan(record: dict[str, Any]) -> list[dict[str, Any]]:
    from schemas.serde import explode_scan

    return explode_scan(record)


# Which table a decoded record goes to, by schema full name.
ROUTES: dict[str, Route] = {
    "millstream.WindowAggregate": Route(WINDOW_AGGREGATES),
    "millstream.DeadLetter": Route(DEAD_LETTERS),
    "millstream.SpcSignal": Route(SPC_SIGNALS),
    "millstream.AnomalyEvent": Route(ANOMALIES),
    "millstream.Reading": Route(READINGS),
    "millstream.MachineScan": Route(READINGS, _explode_scan),
}


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


PAYLOAD_JSON_MAX = 64 * 1024  # a longer JSON rendering is not stored (payload_json NULL)


def payload_json(payload: bytes | str, decode: Callable[[bytes], Any]) -> str | None:
    """A dead letter's payload as JSON text for the ``payload_json`` column, or None.

    ``decode`` turns bytes into the record (the pipeline's schemas); a payload it cannot decode that
    is itself JSON text (an MQTT gateway's message) is kept as it is. Floats that JSON cannot hold
    (NaN, infinities: often why the record was rejected) become the strings "NaN", "Infinity" and
    "-Infinity"; bytes become hex. None when neither works or the text is over 64 KiB."""
    data = payload.encode() if isinstance(payload, str) else payload
    try:
        text = json.dumps(_jsonable(decode(data)), ensure_ascii=False, allow_nan=False)
    except Exception:  # noqa: BLE001 - undecodable (any reason): try it as JSON text
        try:
            text = data.decode()
            json.loads(text)
        except ValueError:  # not UTF-8 or not JSON
            return None
    return text if len(text) <= PAYLOAD_JSON_MAX else None


def _jsonable(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, bytes):
        return value.hex()
    return value
