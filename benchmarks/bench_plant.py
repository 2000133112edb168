"""The deployed anomaly settings on the plant simulator at a scan a second: faults found, false events.

    python -m benchmarks.bench_plant [--hours H]

The plant settings of the Kubernetes deployment (k8s/base, docs/anomaly.md "In the pipeline") were
first measured at a scan a minute, which the end-to-end test also uses. The simulator's default,
and many gateways', is a scan a second. This benchmark feeds the simulator's scans at 1 Hz straight
into the monitors (as ``streams/pipeline.py`` does): 4 machines, a day of warm-up, then scheduled
faults of every kind on three machines (a pressure leak, a stuck temperature, an overheating, a
bearing wearing in over an hour, a second leak, a stuck noise sensor) while m002 stays fault-free.
A fault counts as found when an event opens between its start and 10 minutes after its end; every
other event is false. Baseline in the same run: the deployed settings without
``LIKELIHOOD_WINDOW_S`` (the calibrators average 10 readings, 10 s at this rate). Writes
``benchmarks/results/plant.json``.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path
from typing import Any

from infra.k8s_sync import deployed_config
from ingest.signals import PlantSignals, ScheduledFault, parse_schedule, sensor_specs
from streams.anomaly.config import AnomalySettings
from streams.anomaly.monitor import MachineMonitor

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results" / "plant.json"
MACHINES = ("m001", "m002", "m003", "m004")
QUIET = "m002"
WARMUP_H = 24
SCHEDULE = (  # after the warm-up (86,400 s)
    "m001:pressure_leak:90000:3600,m003:sensor_stuck:91800:1800:temperature,m004:overheating:93600:1800,"
    "m001:bearing_wear:97200:3600,m003:pressure_leak:97200:3600,m004:sensor_stuck:99000:1800:noise"
)
GRACE_S = 600  # an event this long after a fault's end still counts as finding it
SEED = 11


def deployed_settings() -> dict[str, str]:
    """The MILLSTREAM_ANOMALY_* literals of the Kubernetes deployment's config map, by field name."""
    prefix = "MILLSTREAM_ANOMALY_"
    return {k.removeprefix(prefix).lower(): v for k, v in deployed_config(prefix).items()}


def run(settings: AnomalySettings, hours: float, schedule: list[ScheduledFault]) -> dict[str, Any]:
    sig = PlantSignals(
        len(MACHINES),
        sensor_specs(8),
        1.0,
        SEED,
        quiet=[MACHINES.index(QUIET)],
        schedule=[(MACHINES.index(f.machine), f) for f in schedule],
    )
    monitors = [MachineMonitor(m, settings) for m in MACHINES]
    found: set[int] = set()
    false: list[dict[str, Any]] = []
    for k in range(int(hours * 3600)):
        step = sig.step()
        for i, mon in enumerate(monitors):
            r = mon.update(k * 1000, dict(zip(sig.names, map(float, step.values[i]), strict=True)))
            if r.event is None or not r.event.is_open:
                continue
            hits = [
                j
                for j, f in enumerate(schedule)
                if f.machine == MACHINES[i] and f.start_s <= k < f.start_s + f.duration_s + GRACE_S
            ]
            if hits:
                found.update(hits)
            else:
                false.append({"machine": MACHINES[i], "hour": round(k / 3600, 2), "sensor": r.event.sensor})
    judged_h = hours - WARMUP_H
    return {
        "faults_found": len(found),
        "faults": len(schedule),
        "missed": [f"{f.machine}:{f.kind}" for j, f in enumerate(schedule) if j not in found],
        "false_events": len(false),
        "false_events_per_machine_hour": round(len(false) / (len(MACHINES) * judged_h), 2),
        "false_events_on_the_fault_free_machine": sum(1 for f in false if f["machine"] == QUIET),
        "false_event_list": false,
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--hours", type=float, default=28.0, help="simulated hours (the first 24 are warm-up)")
    args = ap.parse_args(argv)
    deployed = deployed_settings()
    schedule = parse_schedule(SCHEDULE)
    t0 = time.perf_counter()
    ours = run(AnomalySettings.model_validate(deployed), args.hours, schedule)
    without = {k: v for k, v in deployed.items() if k != "likelihood_window_s"}
    base = run(AnomalySettings.model_validate(without), args.hours, schedule)
    result = {
        "benchmark": "plant",
        "python": platform.python_version(),
        "scans_per_second": 1.0,
        "machines": len(MACHINES),
        "hours": args.hours,
        "warmup_hours": WARMUP_H,
        "seed": SEED,
        "schedule": SCHEDULE,
        "deployed_settings": deployed,
        "seconds": round(time.perf_counter() - t0, 1),
        "millstream_deployed": ours,
        "baseline_deployed_without_likelihood_window_s": base,
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    for name, r in (("deployed settings", ours), ("without LIKELIHOOD_WINDOW_S", base)):
        print(
            f"{name}: {r['faults_found']}/{r['faults']} faults found, {r['false_events']} false events "
            f"({r['false_events_per_machine_hour']} per machine-hour; "
            f"{r['false_events_on_the_fault_free_machine']} on the fault-free machine)"
        )
    print(f"-> {RESULTS}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
