"""Anomaly detection on pump-rig experiments: 1 reading a second, 8 sensors, one fault per run.

    python -m benchmarks.bench_rig [--seeds N]

NAB (``bench_anomaly --nab``) is univariate and mostly 5-minute data. A test rig is different: a
reading a second, a few sensors that move together (flow, pressure and motor current follow the
pump's speed), runs of 20 minutes, and a fault applied for minutes. This benchmark generates such
runs (our own model of a centrifugal pump rig, below: no real data), replays each through
``detect_file`` (the code of ``millstream detect``) and scores the result:

* faults found: an event opens between the fault's start and 30 s after its end (delay: readings
  from the fault's start to that event);
* false events: events that open anywhere else (in the fault-free runs, anywhere);
* point-wise precision, recall and F1 of ``is_anomaly`` against the fault's readings.

Baseline in the same run: Hotelling's T² over the 8 sensors, fitted on each run's first 400
readings (known to be fault-free: faults start at 450-700), a reading flagged when its T² exceeds
the largest T² of those 400. It is offline and told where normal data is; the streaming detector
is told nothing.

Fault kinds (4 runs each, plus 4 fault-free runs): an outlet valve closing over a minute (flow
-12%, pressure +0.04 bar, current -0.05 A); cavitation (vibration up and noisier, flow fluctuates,
pressure dips); rotor imbalance (vibration x1.1); a leak (pressure falls and current rises slowly);
bearing heat (temperature rises 0.01 K/s faster); a motor fault (current +0.08 A, flow and
pressure unchanged); a stuck flow sensor. A second set repeats the fault kinds in runs of 1,800
readings whose fault lasts from its start to the end (``long_faults``: is a fault still flagged
after many minutes?). A third set (``coarse_logger``) repeats the first as a coarse logger would
write it: pressure in steps of 0.33 bar with a reading noise spanning several steps, flow in whole
units, current and voltage noisier; it runs with the defaults and with ``range_steps=1`` (a range
exceedance counted only beyond one step of the sensor's resolution). A fourth set (``spikes``)
repeats the first with a lone spike now and then on four sensors (1 reading in 500, 4-8 standard
deviations of their noise); it runs with the defaults and with ``range_persist=1`` (a single reading
past a sensor's range opens an event). The first two sets also run with ``likelihood_window_s=60``
(calibration over at least a minute of readings, the plant setting, instead of 10 readings: 10 s
here), and ``fault_free_hours`` counts false events on long fault-free runs (2.6 hours each) with
both. Writes
``benchmarks/results/rig.json``.
"""

from __future__ import annotations

import argparse
import csv
import functools
import json
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from streams.anomaly.backtest import Backtest, judge
from streams.anomaly.config import AnomalySettings
from streams.anomaly.detect import detect_file

RESULTS = Path(__file__).resolve().parent / "results" / "rig.json"
KINDS = ("valve_close", "cavitation", "imbalance", "leak", "bearing_heat", "motor", "stuck_flow", "none")
SENSORS = (
    "Accelerometer1RMS",
    "Accelerometer2RMS",
    "Current",
    "Pressure",
    "Temperature",
    "Thermocouple",
    "Voltage",
    "Volume Flow RateRMS",
)
ROWS = 1200
LONG_ROWS = 1800  # long-fault runs: the fault lasts from its start (450-700) to the end
FREE_ROWS = 9400  # long fault-free runs: 2.6 hours at a reading a second
TRAIN = 400  # the baseline's fault-free fitting rows
GRACE = 30  # an event this many readings after a fault's end still counts as finding it
START_MS = 1_773_050_400_000  # 2026-03-09 10:00:00 UTC


def _ar1(rng: np.random.Generator, n: int, phi: float, sd: float) -> npt.NDArray[Any]:
    e = rng.normal(0.0, sd, n)
    x = np.zeros(n)
    for i in range(1, n):
        x[i] = phi * x[i - 1] + e[i]
    return x


def experiment(
    kind: str, seed: int, n: int = ROWS, long: bool = False
) -> tuple[npt.NDArray[Any], npt.NDArray[Any]]:
    """One run: (n x 8 readings, 0/1 fault label per reading). ``long``: the fault lasts to the end."""
    rng = np.random.default_rng(seed)
    t = np.arange(n)
    start = int(rng.integers(450, 700))
    end = min(n, start + int(rng.integers(150, 450)))
    if long:
        end = n
    label = np.zeros(n, dtype=np.int8)
    if kind != "none":
        label[start:end] = 1
    m = label.astype(bool)
    k = int(m.sum())
    speed = 1 + _ar1(rng, n, 0.98, 0.004)  # the pump's speed wanders a little
    flow = 32 * speed + _ar1(rng, n, 0.6, 0.25)
    pressure = 0.30 * speed**2 + _ar1(rng, n, 0.7, 0.008)
    current = 2.0 * speed + _ar1(rng, n, 0.5, 0.03)
    acc1 = 0.21 + _ar1(rng, n, 0.3, 0.006)
    acc2 = 0.26 + _ar1(rng, n, 0.3, 0.008)
    temp = 68 + 4 * (1 - np.exp(-t / 1500)) + _ar1(rng, n, 0.95, 0.05)  # the motor warms up
    thermo = 28 + 1.5 * (1 - np.exp(-t / 2000)) + _ar1(rng, n, 0.95, 0.03)
    volt = 230 + _ar1(rng, n, 0.3, 0.6)
    ramp = np.clip((t - start) / 60.0, 0, 1)[m]
    if kind == "valve_close":
        flow[m] -= 32 * 0.12 * ramp
        pressure[m] += 0.04 * ramp
        current[m] -= 0.05 * ramp
    elif kind == "cavitation":
        acc1[m] += 0.02 + rng.normal(0, 0.012, k)
        acc2[m] += 0.025 + rng.normal(0, 0.015, k)
        flow[m] += rng.normal(0, 0.6, k)
        pressure[m] -= 0.015
    elif kind == "imbalance":
        acc1[m] *= 1.12
        acc2[m] *= 1.10
    elif kind == "leak":
        grow = np.cumsum(m)[m] / k
        pressure[m] -= 0.03 * grow
        current[m] += 0.04 * grow
    elif kind == "bearing_heat":
        temp[m] += 0.01 * np.cumsum(m)[m]
    elif kind == "motor":
        current[m] += 0.08
    elif kind == "stuck_flow":
        flow[m] = round(float(flow[start - 1]), 2)
    values = np.column_stack([acc1, acc2, current, pressure, temp, thermo, volt, flow])
    return values, label


def coarse(values: npt.NDArray[Any], seed: int) -> npt.NDArray[Any]:
    """The readings as a coarse, noisy logger writes them (the ``coarse_logger`` set)."""
    rng = np.random.default_rng(seed + 4242)
    v = values.copy()
    n = len(v)
    v[:, 3] = np.round((v[:, 3] + rng.normal(0, 0.25, n)) / 0.3279) * 0.3279  # pressure: 0.33-bar steps
    v[:, 7] = np.round(v[:, 7])  # flow: whole units
    v[:, 2] += rng.normal(0, 0.25, n)  # current
    v[:, 6] += rng.normal(0, 8, n)  # voltage
    return v


def spiky(values: npt.NDArray[Any], seed: int) -> npt.NDArray[Any]:
    """The readings with a lone spike now and then on four sensors (the ``spikes`` set)."""
    rng = np.random.default_rng(seed + 99991)
    v = values.copy()
    n = len(v)
    for j, sd in ((0, 0.006), (1, 0.008), (2, 0.03), (7, 0.25)):  # accelerometers, current, flow
        hit = rng.random(n) < 0.002
        v[hit, j] += rng.choice([-1.0, 1.0], int(hit.sum())) * rng.uniform(4, 8, int(hit.sum())) * sd
    return v


def write_csv(path: Path, values: npt.NDArray[Any]) -> None:
    """Semicolon-separated, as rig loggers often write (``detect`` sniffs the delimiter)."""
    with path.open("w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh, delimiter=";")
        w.writerow(["datetime", *SENSORS])
        for i, row in enumerate(values):
            stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime((START_MS + 1000 * i) / 1000))
            w.writerow([stamp, *(f"{v:.5f}" for v in row)])


def hotelling(values: npt.NDArray[Any]) -> npt.NDArray[Any]:
    """0/1 per reading: T² above the largest T² of the first TRAIN readings (fitted on those)."""
    train = values[:TRAIN]
    mu = train.mean(axis=0)
    inv = np.linalg.pinv(np.cov(train, rowvar=False))
    d = values - mu
    t2 = np.einsum("ij,jk,ik->i", d, inv, d)
    flagged: npt.NDArray[Any] = (t2 > t2[:TRAIN].max()).astype(np.int8)
    return flagged


def summarise(runs: list[Backtest]) -> dict[str, Any]:
    total = functools.reduce(Backtest.merge, runs, Backtest())
    return {
        "faults_found": total.found,
        "median_delay_s": total.median_delay_s,
        "false_events": total.false_events,
        "precision": round(total.precision, 3),
        "recall": round(total.recall, 3),
        "f1": round(total.f1, 3),
    }


def run_set(
    seeds: int, rows: int, long: bool, settings: AnomalySettings, logger: bool = False, spikes: bool = False
) -> tuple[dict[str, list[Backtest]], dict[str, list[Backtest]]]:
    """Every fault kind ``seeds`` times through ``detect_file`` and the T² baseline: judged runs per kind."""
    ours: dict[str, list[Backtest]] = {k: [] for k in KINDS}
    base: dict[str, list[Backtest]] = {k: [] for k in KINDS}
    with tempfile.TemporaryDirectory() as tmp:
        for ki, kind in enumerate(KINDS):
            if long and kind == "none":
                continue
            for seed in range(seeds):
                values, label = experiment(kind, 100 * ki + seed, rows, long)
                if logger:
                    values = coarse(values, 100 * ki + seed)
                if spikes:
                    values = spiky(values, 100 * ki + seed)
                src, out = Path(tmp) / f"{kind}_{seed}.csv", Path(tmp) / f"{kind}_{seed}.out.csv"
                write_csv(src, values)
                detect_file(src, out, "datetime", settings=settings)
                with out.open(encoding="utf-8") as fh:
                    pred = np.array([int(r["is_anomaly"]) for r in csv.DictReader(fh)], dtype=np.int8)
                ours[kind].append(judge(pred.tolist(), label.tolist(), grace=GRACE))
                base[kind].append(judge(hotelling(values).tolist(), label.tolist(), grace=GRACE))
    return ours, base


Judged = dict[str, list[Backtest]]


def fault_free_hours(seeds: int, settings: AnomalySettings) -> dict[str, Any]:
    """False events on long fault-free runs (FREE_ROWS readings, 2.6 hours at 1 Hz, ``seeds`` runs)."""
    runs = []
    with tempfile.TemporaryDirectory() as tmp:
        for seed in range(seeds):
            values, label = experiment("none", 1000 + seed, FREE_ROWS)
            src, out = Path(tmp) / f"free_{seed}.csv", Path(tmp) / f"free_{seed}.out.csv"
            write_csv(src, values)
            counts = detect_file(src, out, "datetime", settings=settings, fault_free=True)
            runs.append(counts["backtest"])
    total = functools.reduce(Backtest.merge, runs, Backtest())
    hours = seeds * FREE_ROWS / 3600
    return {
        "false_events": total.false_events,
        "false_events_per_hour": round(total.false_events / hours, 2),
        "flagged_readings": round(total.far, 4),
    }


def variant_set(note: str, ours: Judged, base: Judged, alt_name: str, alt: Judged) -> dict[str, Any]:
    """A set run with the defaults, with one setting changed (``alt``) and through the baseline."""
    return {
        "note": note,
        "millstream": summarise([r for k in KINDS for r in ours[k]]),
        f"millstream_{alt_name}": summarise([r for k in KINDS for r in alt[k]]),
        "baseline_hotelling_t2_fitted_on_first_400": summarise([r for k in KINDS for r in base[k]]),
        "millstream_by_kind": {k: summarise(ours[k]) for k in KINDS},
        f"millstream_{alt_name}_by_kind": {k: summarise(alt[k]) for k in KINDS},
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seeds", type=int, default=4, help="runs per fault kind")
    args = ap.parse_args(argv)
    settings = AnomalySettings()
    t0 = time.perf_counter()
    ours, base = run_set(args.seeds, ROWS, False, settings)
    ours_long, base_long = run_set(args.seeds, LONG_ROWS, True, settings)
    ours_coarse, base_coarse = run_set(args.seeds, ROWS, False, settings, logger=True)
    steps_on = settings.model_copy(update={"range_steps": 1.0})
    ours_coarse_steps, _ = run_set(args.seeds, ROWS, False, steps_on, logger=True)
    ours_spikes, base_spikes = run_set(args.seeds, ROWS, False, settings, spikes=True)
    lone = settings.model_copy(update={"range_persist": 1})
    ours_spikes_lone, _ = run_set(args.seeds, ROWS, False, lone, spikes=True)
    minute = settings.model_copy(update={"likelihood_window_s": 60.0})
    ours_minute, _ = run_set(args.seeds, ROWS, False, minute)
    ours_long_minute, _ = run_set(args.seeds, LONG_ROWS, True, minute)
    free, free_minute = fault_free_hours(args.seeds, settings), fault_free_hours(args.seeds, minute)
    faults = [k for k in KINDS if k != "none"]
    result = {
        "benchmark": "rig",
        "python": platform.python_version(),
        "runs_per_kind": args.seeds,
        "readings_per_run": ROWS,
        "seconds": round(time.perf_counter() - t0, 1),
        "millstream": {
            "all": summarise([r for k in KINDS for r in ours[k]]),
            "by_kind": {k: summarise(ours[k]) for k in KINDS},
        },
        "millstream_likelihood_window_s_60": {
            "note": "calibration over at least 60 s of readings (60 here) instead of 10 readings (the "
            "plant setting LIKELIHOOD_WINDOW_S=60)",
            "all": summarise([r for k in KINDS for r in ours_minute[k]]),
            "by_kind": {k: summarise(ours_minute[k]) for k in KINDS},
            "long_faults": summarise([r for k in KINDS for r in ours_long_minute[k]]),
        },
        "fault_free_hours": {
            "note": f"{args.seeds} fault-free runs of {FREE_ROWS} readings (2.6 hours at 1 Hz): false events",
            "millstream": free,
            "millstream_likelihood_window_s_60": free_minute,
        },
        "baseline_hotelling_t2_fitted_on_first_400": {
            "all": summarise([r for k in KINDS for r in base[k]]),
            "by_kind": {k: summarise(base[k]) for k in KINDS},
        },
        "faults": len(faults) * args.seeds,
        "long_faults": {
            "note": f"the same fault kinds in runs of {LONG_ROWS} readings, each fault lasting from its "
            "start to the run's end",
            "readings_per_run": LONG_ROWS,
            "millstream": summarise([r for k in KINDS for r in ours_long[k]]),
            "baseline_hotelling_t2_fitted_on_first_400": summarise([r for k in KINDS for r in base_long[k]]),
            "millstream_by_kind": {k: summarise(ours_long[k]) for k in faults},
        },
        "coarse_logger": variant_set(
            "the first set as a coarse logger writes it: pressure in 0.33-bar steps with a reading noise "
            "spanning several, flow in whole units, current and voltage noisier",
            ours_coarse, base_coarse, "range_steps_1", ours_coarse_steps,
        ),  # fmt: skip
        "spikes": variant_set(
            "the first set with a lone spike now and then on four sensors (1 reading in 500, 4-8 "
            "standard deviations of their noise)",
            ours_spikes, base_spikes, "range_persist_1", ours_spikes_lone,
        ),  # fmt: skip
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    a, b = result["millstream"]["all"], result["baseline_hotelling_t2_fitted_on_first_400"]["all"]
    print(
        f"millstream: {a['faults_found']}/{result['faults']} faults, {a['false_events']} false events, "
        f"F1 {a['f1']}; Hotelling T2 (offline): {b['faults_found']}/{result['faults']}, "
        f"{b['false_events']} false events, F1 {b['f1']} -> {RESULTS}"
    )
    la, lb = (
        result["long_faults"]["millstream"],
        result["long_faults"]["baseline_hotelling_t2_fitted_on_first_400"],
    )
    print(
        f"long faults: millstream {la['faults_found']}/{len(faults) * args.seeds}, recall {la['recall']}, "
        f"F1 {la['f1']}; Hotelling T2 recall {lb['recall']}, F1 {lb['f1']}"
    )
    c, c0 = result["coarse_logger"]["millstream"], result["coarse_logger"]["millstream_range_steps_1"]
    print(
        f"coarse logger: millstream {c['faults_found']}/{result['faults']}, "
        f"{c['false_events']} false events, F1 {c['f1']}; with range_steps=1: {c0['faults_found']}, "
        f"{c0['false_events']} false events, F1 {c0['f1']}"
    )
    w60 = result["millstream_likelihood_window_s_60"]["all"]
    print(
        f"with likelihood_window_s=60: {w60['faults_found']}/{result['faults']}, {w60['false_events']} false "
        f"events, F1 {w60['f1']}; fault-free 2.6 h runs: {free['false_events']} false events "
        f"({free_minute['false_events']} with likelihood_window_s=60)"
    )
    p, p1 = result["spikes"]["millstream"], result["spikes"]["millstream_range_persist_1"]
    print(
        f"spikes: millstream {p['faults_found']}/{result['faults']}, {p['false_events']} false events, "
        f"F1 {p['f1']}; with range_persist=1: {p1['faults_found']}, {p1['false_events']} false events, "
        f"F1 {p1['f1']}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
