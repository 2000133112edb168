"""Window operator throughput vs a numpy batch baseline, and snapshot size per key.

    python -m benchmarks.bench_windows [--keys 10000] [--seconds 60]

Workload: ``--keys`` sensors at 1 Hz for ``--seconds`` seconds, each sensor with its own phase inside the
second; arrival order is event order shuffled by up to 1.5 s (below the 2 s out-of-orderness, so no record
is late). The operator (tumbling 10 s, out-of-orderness 2 s, allowed lateness 5 s) sees records one by one,
as a stream job does; the baseline computes the same statistics for the same windows in one vectorised
numpy pass over the complete data set (no watermark, no lateness, no incremental state): an upper bound on
what a batch job gets, not a like-for-like streaming engine. Both are single-threaded; "per core" is records
divided by the process CPU time of the measured section. Results go to benchmarks/results/windows.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import time
import tracemalloc
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from streams.windows import WindowedAggregator, WindowResult, WindowSpec

RESULTS = Path(__file__).resolve().parent / "results" / "windows.json"
BASE_TS = 1_700_000_000_000
OOO_MS, LATENESS_MS = 2_000, 5_000


def workload(keys: int, seconds: int, seed: int = 1) -> tuple[list[str], list[int], list[float]]:
    """Records in arrival order: (key, event ms, value) as three lists."""
    rng = np.random.default_rng(seed)
    names = np.array([f"plant1/line{k % 7}/m{k}{chr(0x1F)}temp" for k in range(keys)])
    phase = rng.integers(0, 1_000, keys)
    k = np.repeat(np.arange(keys), seconds)
    ts = BASE_TS + np.tile(np.arange(seconds) * 1_000, keys) + phase[k]
    walk = np.cumsum(rng.normal(0, 0.1, (keys, seconds)), axis=1).ravel() + 20.0
    order = np.argsort(ts + rng.integers(0, 1_500, ts.size), kind="stable")
    return names[k[order]].tolist(), ts[order].tolist(), walk[order].tolist()


def run_operator(
    spec: str, keys: list[str], ts: list[int], vals: list[float]
) -> tuple[float, float, list[Any]]:
    op = WindowedAggregator(
        WindowSpec.parse(spec), out_of_orderness_ms=OOO_MS, allowed_lateness_ms=LATENESS_MS
    )
    process = op.process
    results: list[Any] = []
    extend = results.extend
    wall0, cpu0 = time.perf_counter(), time.process_time()
    for key, t, v in zip(keys, ts, vals, strict=True):
        out = process(key, t, v)
        if out:
            extend(out)
    extend(op.advance_watermark(2**62))
    return time.process_time() - cpu0, time.perf_counter() - wall0, results


def numpy_batch(
    keys: list[str], ts_list: list[int], vals_list: list[float], size: int
) -> dict[str, np.ndarray[Any, Any]]:
    """Per (key, tumbling window): count, sum, mean, min, max, std, first/last, p50/p95/p99, slope."""
    names, kid = np.unique(np.array(keys), return_inverse=True)
    ts = np.array(ts_list, dtype=np.int64)
    v = np.array(vals_list)
    win = ts // size
    order = np.lexsort((ts, win, kid))
    kid, win, ts, v = kid[order], win[order], ts[order], v[order]
    cut = np.flatnonzero((np.diff(kid) != 0) | (np.diff(win) != 0)) + 1
    starts = np.r_[0, cut]
    counts = np.diff(np.r_[starts, v.size])
    sums = np.add.reduceat(v, starts)
    means = sums / counts
    dev = v - np.repeat(means, counts)
    m2 = np.add.reduceat(dev * dev, starts)
    std = np.where(counts > 1, np.sqrt(m2 / np.maximum(counts - 1, 1)), 0.0)
    tc = (ts - np.repeat(ts[starts], counts)).astype(float)
    dtc = tc - np.repeat(np.add.reduceat(tc, starts) / counts, counts)
    sxx = np.add.reduceat(dtc * dtc, starts)
    slope = np.where(
        sxx > 0, np.add.reduceat(dtc * dev, starts) / np.where(sxx > 0, sxx, 1.0) * 1000.0, np.nan
    )
    group = np.repeat(np.arange(starts.size), counts)
    sv = v[np.lexsort((v, group))]
    pct = {}
    for q in (50, 95, 99):
        h = (counts - 1) * (q / 100.0)
        lo = np.floor(h).astype(np.int64)
        a = sv[starts + lo]
        b = sv[starts + np.minimum(lo + 1, counts - 1)]
        pct[f"p{q}"] = a + (b - a) * (h - lo)
    last = starts + counts - 1
    return {
        "key": names[kid[starts]],
        "start": win[starts] * size,
        "count": counts,
        "sum": sums,
        "mean": means,
        "min": np.minimum.reduceat(v, starts),
        "max": np.maximum.reduceat(v, starts),
        "std": std,
        "first_ts": ts[starts],
        "last_ts": ts[last],
        "first": v[starts],
        "last": v[last],
        "slope": slope,
        **pct,
    }


def max_abs_diff(results: list[WindowResult], batch: dict[str, np.ndarray[Any, Any]]) -> dict[str, float]:
    index = {(str(k), int(s)): i for i, (k, s) in enumerate(zip(batch["key"], batch["start"], strict=True))}
    assert len(index) == len(results), "operator and batch found different windows"
    diffs: dict[str, float] = {}
    for f in ("count", "mean", "std", "min", "max", "first", "last", "p50", "p95", "p99", "slope"):
        col = batch[f]
        d = 0.0
        for r in results:
            got = getattr(r, f)
            want = float(col[index[(r.key, r.start)]])
            if got is None:
                assert np.isnan(want)
                continue
            d = max(d, abs(got - want))
        diffs[f] = d
    return diffs


def memory_per_key(spec: str, k: list[str], t: list[int], v: list[float]) -> float:
    """Python heap held by the operator's state (tracemalloc) divided by its keys, at the end of the input."""
    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    op = WindowedAggregator(
        WindowSpec.parse(spec), out_of_orderness_ms=OOO_MS, allowed_lateness_ms=LATENESS_MS
    )
    for key, ts, value in zip(k, t, v, strict=True):
        op.process(key, ts, value)
    used = tracemalloc.get_traced_memory()[0] - base
    tracemalloc.stop()
    return round(used / max(1, len(list(op.keys()))), 1)


def snapshot_sizes(spec: str, keys: int = 300, seconds: int = 60) -> dict[str, Any]:
    """JSON bytes of snapshot_key per key, sampled once per second of event time after warm-up."""
    k, t, v = workload(keys, seconds, seed=2)
    op = WindowedAggregator(
        WindowSpec.parse(spec), out_of_orderness_ms=OOO_MS, allowed_lateness_ms=LATENESS_MS
    )
    sizes: list[int] = []
    next_sample = BASE_TS + 20_000
    for key, ts, value in zip(k, t, v, strict=True):
        op.process(key, ts, value)
        if ts >= next_sample:
            next_sample += 1_000
            sizes.extend(len(json.dumps(op.snapshot_key(x), separators=(",", ":"))) for x in op.keys())
    full = len(json.dumps(op.snapshot(), separators=(",", ":")))
    return {
        "memory_bytes_per_key_steady_state": memory_per_key(spec, k, t, v),
        "spec": spec,
        "rate_hz": 1,
        "out_of_orderness_ms": OOO_MS,
        "allowed_lateness_ms": LATENESS_MS,
        "bytes_per_key_mean": round(float(np.mean(sizes)), 1),
        "bytes_per_key_p95": float(np.percentile(sizes, 95)),
        "bytes_per_key_max": int(np.max(sizes)),
        "whole_snapshot_bytes_per_key_end_of_run": round(full / max(1, len(list(op.keys()))), 1),
        "note": "compact JSON (no spaces); state = records of the open window plus the emitted window kept "
        "for allowed lateness, timestamps delta-encoded",
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--keys", type=int, default=10_000)
    ap.add_argument("--seconds", type=int, default=60)
    ap.add_argument(
        "--other-kinds-keys", type=int, default=1_000, help="keys for the hopping/sliding/session runs"
    )
    ap.add_argument("--out", type=Path, default=RESULTS)
    args = ap.parse_args(argv)

    random.seed(0)
    keys, ts, vals = workload(args.keys, args.seconds)
    n = len(ts)
    cpu, wall, results = run_operator("tumbling:10s", keys, ts, vals)
    cpu0 = time.process_time()
    batch = numpy_batch(keys, ts, vals, 10_000)
    batch_cpu = time.process_time() - cpu0
    diffs = max_abs_diff(results, batch)

    other: dict[str, Any] = {}
    ok, ot, ov = workload(args.other_kinds_keys, args.seconds, seed=3)
    for spec in ("hopping:60s/10s", "sliding:10s", "session:30s"):
        c, w, res = run_operator(spec, ok, ot, ov)
        other[spec] = {
            "records": len(ot),
            "updates_per_s_per_core": round(len(ot) / c),
            "windows_emitted": len(res),
        }

    report: dict[str, Any] = {
        "benchmark": "windows",
        "generated_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "machine": platform.machine(),
        "cpus_visible": os.cpu_count(),
        "load_average_1m": os.getloadavg()[0],
        "workload": {
            "keys": args.keys,
            "seconds": args.seconds,
            "rate_hz_per_key": 1,
            "records": n,
            "arrival_jitter_ms": 1_500,
            "out_of_orderness_ms": OOO_MS,
            "allowed_lateness_ms": LATENESS_MS,
        },
        "tumbling_10s": {
            "updates_per_s_per_core": round(n / cpu),
            "cpu_s": round(cpu, 3),
            "wall_s": round(wall, 3),
            "windows_emitted": len(results),
        },
        "numpy_batch_baseline": {
            "records_per_s_per_core": round(n / batch_cpu),
            "cpu_s": round(batch_cpu, 3),
            "what": "same statistics for the same tumbling windows, one vectorised pass over all records",
        },
        "operator_vs_batch_speed": round((n / cpu) / (n / batch_cpu), 3),
        "max_abs_diff_vs_batch": diffs,
        "other_kinds": other,
        "snapshot": snapshot_sizes("tumbling:10s"),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    t = report["tumbling_10s"]
    print(
        f"tumbling 10s, {args.keys} keys, {n} records: {t['updates_per_s_per_core']:,} updates/s/core "
        f"(numpy batch {report['numpy_batch_baseline']['records_per_s_per_core']:,} records/s/core); "
        f"snapshot {report['snapshot']['bytes_per_key_mean']} bytes/key; written to {args.out}"
    )
    for spec, o in other.items():
        print(f"{spec}: {o['updates_per_s_per_core']:,} updates/s/core")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
