"""Window means of a process that drifts are autocorrelated: the individuals chart, whose sigma comes from
moving ranges, flags most of them (Montgomery ch. 10.4). The moving-centerline EWMA (mcewma) judges each
window mean against the EWMA forecast from the windows before: quiet near the in-control rate on the
simulator's fault-free machines, and it still catches a pressure leak."""

from __future__ import annotations

from typing import Any

import numpy as np

from ingest.signals import FaultKind, PlantSignals, ScheduledFault, sensor_specs
from schemas.serde import Serde
from streams.config import StreamSettings
from streams.pipeline import Outputs, PartitionProcessor
from streams.spc.charts import Subgroup, make_chart
from streams.spc.config import SpcSettings

T0 = 1_700_000_000_000
SENSORS = ("pressure", "machine_state")


def simulated(minutes: int, schedule: tuple[ScheduledFault, ...] = ()) -> list[dict[str, Any]]:
    """Pressure and state readings of one simulated machine at 1 Hz (quiet: no random faults)."""
    specs = sensor_specs(8)
    names = [s.name for s in specs]
    plant = PlantSignals(
        1, specs, 1.0, seed=3, quiet=[] if schedule else [0], schedule=[(0, f) for f in schedule]
    )
    rows = []
    for k in range(minutes * 60):
        values = plant.step().values[0]
        for sensor in SENSORS:
            rows.append({
                "plant": "p1", "line": "l1", "machine_id": "m001", "sensor": sensor, "unit": "1",
                "event_time": T0 + 1000 * k, "value": float(values[names.index(sensor)]), "quality": "GOOD",
                "gateway_id": "gw", "seq": k, "lot_id": None,
            })  # fmt: skip
    return rows


def feed(chart: str, rows: list[dict[str, Any]]) -> Outputs:
    spc = SpcSettings(chart=chart, sensors="pressure", phase1_count=25, idle_sensor="machine_state")
    serde = Serde()
    encode = serde.encoder("Reading", "readings")
    proc = PartitionProcessor(StreamSettings(window="tumbling:10s", idle_timeout_ms=0), serde, 0, "r", spc)
    out = Outputs()
    for i, r in enumerate(rows):
        out.extend(proc.handle(encode(r), i, b"m001", wall_ms=r["event_time"]))
    out.extend(proc.close_all())
    return out


def flagged(out: Outputs) -> set[int]:
    """Window starts of the phase II points a rule of the primary chart fired on."""
    return {s["window_start"] for s in out.spc_signals if s["chart"] != "mr" and s["point_index"] > 25}


def test_drifting_pressure_of_a_fault_free_machine() -> None:
    rows = simulated(90)
    running = {
        w["window_start"]
        for w in feed("imr", rows).windows
        if w["sensor"] == "machine_state" and w["min"] == 1
    }
    assert len(running) > 400
    # The I chart: limits from the moving range of a slowly drifting mean; most windows flagged.
    assert len(flagged(feed("imr", rows))) > 0.5 * len(running)
    # The moving-centerline EWMA: about the in-control rate of the WE rules (1 point in 92).
    assert len(flagged(feed("mcewma", rows))) < 0.03 * len(running)


def test_a_pressure_leak_signals_within_its_first_minute() -> None:
    leak = ScheduledFault("m001", FaultKind.PRESSURE_LEAK, 40 * 60.0, 240.0, magnitude=1.0)
    out = feed("mcewma", simulated(50, (leak,)))
    start = T0 + 40 * 60 * 1000
    assert [t for t in flagged(out) if start <= t < start + 60_000]


def test_the_forecast_fits_the_process() -> None:
    """λ that forecasts best: large for a random walk (the last value), small for white noise (the
    mean); sigma is that of the forecast errors."""
    rng = np.random.default_rng(5)
    walk = np.cumsum(rng.normal(0.0, 1.0, 200)) + rng.normal(0.0, 0.1, 200)
    noise = rng.normal(10.0, 1.0, 200)
    for data, lam_range in ((walk, (0.8, 1.0)), (noise, (0.05, 0.15))):
        chart = make_chart("mcewma")
        chart.fit([Subgroup(1, float(v)) for v in data])
        assert chart.limits is not None
        assert lam_range[0] <= chart.limits["lam"] <= lam_range[1]
        assert 0.85 < chart.limits["sigma"] < 1.2
    # Judged against the forecast: the center line of a point is the EWMA of the values before it.
    chart = make_chart("mcewma")
    chart.fit([Subgroup(1, v) for v in (1.0, 2.0, 3.0, 4.0)])
    assert chart.limits is not None and chart.limits["lam"] == 1.0  # a trend: the last value forecasts best
    points = [chart.judge(Subgroup(1, v)) for v in (1.0, 2.0, 3.0, 9.0)]
    assert [p.center for p in points] == [1.0, 1.0, 2.0, 3.0]
    assert [p.rules for p in points][-1] == ("WE1",)
