"""Event-time window operators: tumbling, hopping, sliding and session windows per key, with
watermarks, allowed lateness, de-duplication and JSON snapshots. No engine imports here; the Faust and
PyFlink adapters create one ``WindowedAggregator`` per input partition.

    spec = WindowSpec.parse("tumbling:10s")
    op = WindowedAggregator(spec, out_of_orderness_ms=2_000, allowed_lateness_ms=5_000)
    for item in op.process("m1/temp", ts_ms, 21.5, now_ms=wall):
        ...  # WindowResult (closed or late-updated window) or LateRecord

Semantics are documented in ``streams.windows.operator`` and ``streams.windows.spec``.
"""

from __future__ import annotations

from streams.windows.aggregates import Aggregator, Stats, WindowStats, percentile
from streams.windows.exceptions import InvalidValueError, SnapshotError, WindowError, WindowSpecError
from streams.windows.operator import MIN_WATERMARK, WindowedAggregator
from streams.windows.results import LateRecord, WindowResult
from streams.windows.spec import WindowSpec, parse_duration_ms

__all__ = [
    "MIN_WATERMARK",
    "Aggregator",
    "InvalidValueError",
    "LateRecord",
    "SnapshotError",
    "Stats",
    "WindowError",
    "WindowResult",
    "WindowSpec",
    "WindowSpecError",
    "WindowStats",
    "WindowedAggregator",
    "parse_duration_ms",
    "percentile",
]
