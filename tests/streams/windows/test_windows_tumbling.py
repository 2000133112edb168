"""Tumbling windows against a numpy batch recomputation, plus the record-level rules."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from streams.windows import (
    InvalidValueError,
    LateRecord,
    WindowedAggregator,
    WindowResult,
    WindowSpec,
)


def _batch(keys: np.ndarray, ts: np.ndarray, vals: np.ndarray, size: int) -> dict[tuple[str, int], dict]:
    """Per (key, window start): statistics straight from numpy over the window's records."""
    out: dict[tuple[str, int], dict] = {}
    starts = ts - ts % size
    for key in np.unique(keys):
        for start in np.unique(starts[keys == key]):
            m = (keys == key) & (starts == start)
            t, v = ts[m], vals[m]
            order = np.argsort(t)
            t, v = t[order], v[order]
            out[(str(key), int(start))] = {
                "count": len(v),
                "sum": float(v.sum()),
                "mean": float(v.mean()),
                "min": float(v.min()),
                "max": float(v.max()),
                "std": float(v.std(ddof=1)) if len(v) > 1 else 0.0,
                "first_ts": int(t[0]),
                "last_ts": int(t[-1]),
                "first": float(v[0]),
                "last": float(v[-1]),
                "p50": float(np.percentile(v, 50)),
                "p95": float(np.percentile(v, 95)),
                "p99": float(np.percentile(v, 99)),
                # centred times: polyfit on raw epoch seconds is ill-conditioned
                "slope": float(np.polyfit((t - t[0]) / 1000.0, v, 1)[0]) if len(v) > 1 else None,
            }
    return out


def test_tumbling_matches_numpy_batch() -> None:
    rng = np.random.default_rng(7)
    n, size, ooo = 6000, 10_000, 2_000
    keys = rng.choice(np.array(["m1/temp", "m1/vib", "m2/temp", "m3/press"]), n)
    # distinct timestamps per key: 1.7e12 + unique ms offsets, values with a large offset (sensor-like)
    ts = 1_700_000_000_000 + rng.choice(600_000, n, replace=False).astype(np.int64)
    vals = 1e4 + rng.normal(0, 3, n)
    # arrival order: sorted by ts with a bounded shuffle smaller than the out-of-orderness
    arrival = np.argsort(ts + rng.integers(0, ooo, n))
    op = WindowedAggregator(WindowSpec.parse("tumbling:10s"), out_of_orderness_ms=ooo, allowed_lateness_ms=0)
    got: list[WindowResult] = []
    for i in arrival:
        for e in op.process(str(keys[i]), int(ts[i]), float(vals[i])):
            assert isinstance(e, WindowResult), e
            got.append(e)
    got.extend(op.advance_watermark(2**62))
    want = _batch(keys, ts, vals, size)
    assert {(r.key, r.start) for r in got} == set(want)
    assert len(got) == len(want)  # every window exactly once, version 0
    for r in got:
        w = want[(r.key, r.start)]
        assert r.version == 0 and r.end == r.start + size and r.kind == "tumbling"
        for f in ("count", "min", "max", "first_ts", "last_ts", "first", "last"):
            assert getattr(r, f) == w[f], f
        for f in ("sum", "mean", "std", "p50", "p95", "p99", "slope"):
            assert getattr(r, f) == pytest.approx(w[f], rel=1e-9, abs=1e-9), f
    # deterministic order: by end, then key, then start
    assert [(r.end, r.key, r.start) for r in got] == sorted((r.end, r.key, r.start) for r in got)


def test_duplicates_count_once_and_keep_first_value() -> None:
    op = WindowedAggregator(WindowSpec.parse("tumbling:10s"), out_of_orderness_ms=0, allowed_lateness_ms=0)
    assert op.process("k", 1_000, 1.0) == []
    assert op.process("k", 2_000, 2.0) == []
    assert op.process("k", 1_000, 50.0) == []  # gateway retry with a different payload: ignored
    assert op.process("k", 2_000, 2.0) == []
    (r,) = op.advance_watermark(10_000)
    assert (r.count, r.sum, r.first, r.last, r.max) == (2, 3.0, 1.0, 2.0, 2.0)


def test_single_record_window_has_zero_std_and_no_slope() -> None:
    op = WindowedAggregator(WindowSpec.parse("tumbling:1m"))
    op.process("k", 61_000, 4.25)
    (r,) = op.advance_watermark(2**62)
    got = (r.start, r.end, r.count, r.std, r.slope, r.p50, r.p99)
    assert got == (60_000, 120_000, 1, 0.0, None, 4.25, 4.25)


def test_negative_timestamps_align_to_epoch() -> None:
    op = WindowedAggregator(WindowSpec.parse("tumbling:10s"))
    op.process("k", -1, 1.0)
    (r,) = op.advance_watermark(2**62)
    assert (r.start, r.end) == (-10_000, 0)


def test_non_finite_value_is_rejected() -> None:
    op = WindowedAggregator(WindowSpec.parse("tumbling:10s"))
    for bad in (math.nan, math.inf, -math.inf):
        with pytest.raises(InvalidValueError):
            op.process("k", 0, bad)
    assert list(op.keys()) == []


def test_late_record_reason_names_window_and_delay() -> None:
    spec = WindowSpec.parse("tumbling:10s")
    op = WindowedAggregator(spec, out_of_orderness_ms=0, allowed_lateness_ms=1_000)
    op.process("k", 25_000, 1.0)
    (late,) = op.process("k", 3_000, 2.0)
    assert isinstance(late, LateRecord)
    assert (late.key, late.ts_ms, late.value, late.watermark_ms) == ("k", 3_000, 2.0, 25_000)
    assert "[0, 10000)" in late.reason and "14000 ms ago" in late.reason  # 25000 - (10000 + 1000)
    json.dumps(late.reason)
