"""The bad input both engines' e2e tests feed a stream job (test_crash_faust_bad_input.py,
test_flink_bad_input.py): one record of every class that must end in exactly one dead letter."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Any

from schemas.serde import Serde

YEAR_1800_MS = -5_364_662_400_000


def reading(ts: int, seq: int, machine: str = "m1", value: float | None = None) -> dict[str, Any]:
    """A valid Reading record of sensor `temperature` (value seq % 7 unless given)."""
    return {
        "plant": "p1", "line": "l1", "machine_id": machine, "sensor": "temperature", "unit": "Cel",
        "event_time": ts, "value": float(seq % 7) if value is None else value, "quality": "GOOD",
        "gateway_id": "gw", "seq": seq, "lot_id": None,
    }  # fmt: skip


def window_aggregate(serde: Serde, t0: int, window_ms: int) -> bytes:
    """A valid record of another schema (WindowAggregate): not a reading."""
    return serde.encode(
        "millstream.WindowAggregate",
        "windows",
        {
            "plant": "p1", "line": "l1", "machine_id": "m1", "sensor": "temperature", "unit": "Cel",
            "window_kind": "tumbling", "window_start": t0, "window_end": t0 + window_ms, "count": 1,
            "sum": 1.0, "mean": 1.0, "min": 1.0, "max": 1.0, "std": 0.0, "first_ts": t0, "last_ts": t0,
            "first": 1.0, "last": 1.0, "p50": None, "p95": None, "p99": None, "slope": None, "version": 0,
            "emitted_at": t0,
        },
    )  # fmt: skip


def bad_records(serde: Serde, t0: int, window_ms: int) -> list[tuple[str, bytes | None]]:
    """(reason code, value) of every bad-input class: undecodable, empty, null (tombstone), a value
    over a produce request (its dead letter keeps DEAD_LETTER_PAYLOAD_MAX bytes), another schema,
    NaN, inf, an empty id, an id holding the state-key separator, event times in 1800, at the smallest
    Avro long and an hour ahead, and a NaN reading with a 600 KB id (its dead letter once quoted the
    id in its reason: over a produce request)."""
    enc: Callable[[dict[str, Any]], bytes] = serde.encoder("Reading", "readings")
    return [
        ("decode_error", b"\x07 not Avro at all"),
        ("decode_error", b""),
        ("decode_error", None),
        ("decode_error", b"\x07" * 1_020_000),  # over Faust's 1,000,000-byte produce request limit
        ("unknown_schema", window_aggregate(serde, t0, window_ms)),
        ("invalid_record", enc(reading(t0 + 10, 900, value=math.nan))),
        ("invalid_record", enc(reading(t0 + 20, 901, value=math.inf))),
        ("invalid_record", enc(reading(t0 + 30, 902, machine=""))),
        ("invalid_record", enc(reading(t0 + 40, 903, machine="m1\x1ftemperature"))),
        ("invalid_record", enc(reading(YEAR_1800_MS, 904))),
        ("invalid_record", enc(reading(-(2**63), 905))),
        ("invalid_record", enc(reading(int(time.time() * 1000) + 3_600_000, 906))),
        ("invalid_record", enc(reading(t0 + 50, 907, machine="m" * 600_000, value=math.nan))),
    ]
