"""Streaming SPC throughput and state size, against a vectorised numpy baseline in the same run.

    python -m benchmarks.bench_spc [--keys 20000] [--samples 80] [--phase1 25] [--out FILE]

(default FILE: benchmarks/results/spc.json)

Two workloads, each with many keys (one (machine, sensor) monitor per key, records interleaved across
keys the way a partition delivers them, Western Electric rules on):

* ``imr_readings``: I-MR chart fed one reading at a time (``SpcMonitor.update_value``);
* ``xbar_r_windows``: X̄-R chart fed window aggregates of 5 readings (``SpcMonitor.update_window``).

Throughput is updates per CPU second of this single-threaded process (= per core), measured over
phase I (buffering, then the freeze that estimates the limits) and over phase II (steady state)
separately. State is the compact JSON size of ``snapshot()`` per key in phase II. The baseline
computes the same phase I limits and rule 1 (beyond the limits) for all keys at once with numpy;
its signals are checked against the streaming WE1 signals so both sides do the same work.
Goals: >= 100k updates/s/core and <= 1 KB of state per key. Numbers are reported as measured.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from streams.spc.constants import d2
from streams.spc.monitor import MonitorConfig, SpcMonitor
from streams.spc.operator import SpcOperator

GOAL_UPDATES_PER_S = 100_000
GOAL_STATE_BYTES = 1024


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def machine_info() -> dict[str, Any]:
    return {
        "cpu": _cpu_model(),
        "cpu_count": os.cpu_count(),
        "load_avg_1m": os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
        "platform": platform.platform(),
        "python": sys.version.split()[0],
        "numpy": np.__version__,
        "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }


def _timed(fn: Any) -> tuple[float, float, Any]:
    """(cpu seconds, wall seconds, result)."""
    cpu, wall = time.process_time(), time.perf_counter()
    result = fn()
    return time.process_time() - cpu, time.perf_counter() - wall, result


def _best_numpy(fn: Any, repeat: int = 5) -> tuple[float, Any]:
    best, result = math.inf, None
    for _ in range(repeat):
        cpu, _, result = _timed(fn)
        best = min(best, cpu)
    return best, result


def _state_bytes(operator: SpcOperator) -> dict[str, float]:
    sizes = [
        len(json.dumps(m.snapshot(), separators=(",", ":")).encode()) for m in operator.monitors.values()
    ]
    return {"mean": float(np.mean(sizes)), "max": float(np.max(sizes))}


def _snapshot_restore_rate(operator: SpcOperator, limit: int = 5000) -> float:
    monitors = list(operator.monitors.values())[:limit]

    def run() -> None:
        for m in monitors:
            SpcMonitor.from_snapshot(json.loads(json.dumps(m.snapshot())))

    cpu, _, _ = _timed(run)
    return len(monitors) / cpu


def bench_imr(keys: int, samples: int, phase1: int, seed: int) -> dict[str, Any]:
    rng = np.random.default_rng(seed)
    x = rng.normal(50.0, 2.0, (keys, samples))
    x[:, phase1 + (samples - phase1) // 2 :] += 2.5  # a shift in phase II, so signals happen
    names = [(f"machine-{k // 8}", f"sensor-{k % 8}") for k in range(keys)]
    operator = SpcOperator(MonitorConfig(chart="imr", rules="we", phase1_count=phase1))
    for machine, sensor in names:  # create the monitors up front: measured loops are updates only
        operator.monitor(machine, sensor)
    monitors = [operator.monitors[n] for n in names]
    cols = x.T.tolist()  # time-major: interleaved across keys

    def feed(lo: int, hi: int) -> list[tuple[int, int]]:
        hits = []
        for t in range(lo, hi):
            column = cols[t]
            for k, monitor in enumerate(monitors):
                for s in monitor.update_value(column[k]):
                    if s.chart == "i" and s.rule == "WE1":
                        hits.append((k, s.index - 1))
        return hits

    cpu1, wall1, hits1 = _timed(lambda: feed(0, phase1))
    cpu2, wall2, hits2 = _timed(lambda: feed(phase1, samples))
    streaming_hits = sorted(hits1 + hits2)

    def baseline() -> list[tuple[int, int]]:
        base = x[:, :phase1]
        center = base.mean(axis=1)
        sigma = np.abs(np.diff(base, axis=1)).mean(axis=1) / d2(2)
        beyond = (x > (center + 3 * sigma)[:, None]) | (x < (center - 3 * sigma)[:, None])
        return list(zip(*np.nonzero(beyond), strict=True))

    np_cpu, np_hits = _best_numpy(baseline)
    np_hits = sorted((int(k), int(t)) for k, t in np_hits)
    return _result("I-MR chart, one reading per update", keys, samples, phase1, cpu1, wall1, cpu2, wall2,
                   np_cpu, streaming_hits == np_hits, len(streaming_hits), operator)  # fmt: skip


def bench_xbar_windows(keys: int, samples: int, phase1: int, seed: int, n: int = 5) -> dict[str, Any]:
    rng = np.random.default_rng(seed + 1)
    raw = rng.normal(50.0, 2.0, (keys, samples, n))
    raw[:, phase1 + (samples - phase1) // 2 :, :] += 2.0
    mean, std = raw.mean(axis=2), raw.std(axis=2, ddof=1)
    low, high = raw.min(axis=2), raw.max(axis=2)
    names = [(f"machine-{k // 8}", f"sensor-{k % 8}") for k in range(keys)]
    operator = SpcOperator(MonitorConfig(chart="xbar-r", rules="we", phase1_count=phase1))
    for machine, sensor in names:
        operator.monitor(machine, sensor)
    monitors = [operator.monitors[nm] for nm in names]
    windows = [
        [
            {"count": n, "mean": float(mean[k, t]), "std": float(std[k, t]), "min": float(low[k, t]),
             "max": float(high[k, t]), "window_start": 10_000 * t, "window_end": 10_000 * (t + 1)}
            for k in range(keys)
        ]
        for t in range(samples)
    ]  # fmt: skip

    def feed(lo: int, hi: int) -> list[tuple[int, int]]:
        hits = []
        for t in range(lo, hi):
            column = windows[t]
            for k, monitor in enumerate(monitors):
                for s in monitor.update_window(column[k]):
                    if s.chart == "xbar" and s.rule == "WE1":
                        hits.append((k, s.index - 1))
        return hits

    cpu1, wall1, hits1 = _timed(lambda: feed(0, phase1))
    cpu2, wall2, hits2 = _timed(lambda: feed(phase1, samples))
    streaming_hits = sorted(hits1 + hits2)

    def baseline() -> list[tuple[int, int]]:
        center = mean[:, :phase1].mean(axis=1)
        sigma = (high - low)[:, :phase1].mean(axis=1) / d2(n)
        half = 3 * sigma / math.sqrt(n)
        beyond = (mean > (center + half)[:, None]) | (mean < (center - half)[:, None])
        return list(zip(*np.nonzero(beyond), strict=True))

    np_cpu, np_hits = _best_numpy(baseline)
    np_hits = sorted((int(k), int(t)) for k, t in np_hits)
    what = f"X-bar/R chart, one window aggregate (n={n}) per update"
    return _result(what, keys, samples, phase1, cpu1, wall1, cpu2, wall2,
                   np_cpu, streaming_hits == np_hits, len(streaming_hits), operator)  # fmt: skip


def _result(
    what: str, keys: int, samples: int, phase1: int, cpu1: float, wall1: float, cpu2: float, wall2: float,
    np_cpu: float, agree: bool, signals: int, operator: SpcOperator,
) -> dict[str, Any]:  # fmt: skip
    updates1, updates2 = keys * phase1, keys * (samples - phase1)
    phase2_rate = updates2 / cpu2
    overall_rate = (updates1 + updates2) / (cpu1 + cpu2)
    numpy_rate = keys * samples / np_cpu
    state = _state_bytes(operator)
    return {
        "workload": what,
        "keys": keys,
        "samples_per_key": samples,
        "phase1_samples_per_key": phase1,
        "rules": "we",
        "streaming": {
            "phase2_updates_per_s_per_core": round(phase2_rate),
            "phase1_updates_per_s_per_core": round(updates1 / cpu1),
            "overall_updates_per_s_per_core": round(overall_rate),
            "cpu_s": round(cpu1 + cpu2, 3),
            "wall_s": round(wall1 + wall2, 3),
            "state_bytes_per_key_mean": round(state["mean"], 1),
            "state_bytes_per_key_max": state["max"],
            "snapshot_restore_per_s": round(_snapshot_restore_rate(operator)),
        },
        "baseline_numpy": {
            "what": "phase I mean and sigma + rule 1 (beyond limits) for all keys, vectorised",
            "updates_per_s_per_core": round(numpy_rate),
            "cpu_s": round(np_cpu, 4),
        },
        "ratio_streaming_phase2_to_numpy": round(phase2_rate / numpy_rate, 4),
        "rule1_signals": signals,
        "rule1_signals_agree_with_baseline": agree,
        "goals": {
            "updates_per_s_per_core": GOAL_UPDATES_PER_S,
            "met_updates": phase2_rate >= GOAL_UPDATES_PER_S,
            "state_bytes_per_key": GOAL_STATE_BYTES,
            "met_state": state["max"] <= GOAL_STATE_BYTES,
        },
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--keys", type=int, default=20_000)
    parser.add_argument("--samples", type=int, default=80, help="samples per key (phase I + phase II)")
    parser.add_argument("--phase1", type=int, default=25, help="phase I samples per key")
    parser.add_argument("--seed", type=int, default=20240501)
    parser.add_argument("--out", default="benchmarks/results/spc.json")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    results: dict[str, Any] = {
        "benchmark": "spc",
        "machine": machine_info(),
        "imr_readings": bench_imr(args.keys, args.samples, args.phase1, args.seed),
        "xbar_r_windows": bench_xbar_windows(args.keys, args.samples, args.phase1, args.seed),
    }
    results["total_wall_s"] = round(time.perf_counter() - started, 1)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(results, indent=2) + "\n")
    tmp.replace(out)
    for name in ("imr_readings", "xbar_r_windows"):
        r = results[name]
        s = r["streaming"]
        base = r["baseline_numpy"]["updates_per_s_per_core"]
        print(
            f"{r['workload']}: {s['phase2_updates_per_s_per_core']:,} updates/s/core (phase II), "
            f"{s['overall_updates_per_s_per_core']:,} overall; state {s['state_bytes_per_key_mean']:.0f} "
            f"B/key (max {s['state_bytes_per_key_max']:.0f}); numpy baseline {base:,}/s, "
            f"ratio {r['ratio_streaming_phase2_to_numpy']}; "
            f"rule-1 signals agree: {r['rule1_signals_agree_with_baseline']}"
        )
    print(f"wrote {out} in {results['total_wall_s']} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
