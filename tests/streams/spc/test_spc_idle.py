"""A machine that stops is another process: with MILLSTREAM_SPC_IDLE_SENSOR the stream job charts only
the windows in which the machine ran, so the idle level (pressure 0.6 bar instead of 6) neither sets nor
breaks the limits of the running process."""

from __future__ import annotations

from typing import Any

from ingest.signals import PlantSignals, sensor_specs
from schemas.serde import Serde
from streams.config import StreamSettings
from streams.pipeline import Outputs, PartitionProcessor
from streams.spc.config import SpcSettings

T0 = 1_700_000_000_000
STATE = "machine_state"


def reading(machine: str, sensor: str, ts: int, value: float, seq: int) -> dict[str, Any]:
    return {
        "plant": "p1", "line": "l1", "machine_id": machine, "sensor": sensor, "unit": "1",
        "event_time": ts, "value": value, "quality": "GOOD", "gateway_id": "gw", "seq": seq, "lot_id": None,
    }  # fmt: skip


def feed(spc: SpcSettings, rows: list[dict[str, Any]]) -> Outputs:
    return run(spc, rows)[0]


def run(spc: SpcSettings, rows: list[dict[str, Any]]) -> tuple[Outputs, PartitionProcessor]:
    serde = Serde()
    encode = serde.encoder("Reading", "readings")
    proc = PartitionProcessor(StreamSettings(window="tumbling:10s", idle_timeout_ms=0), serde, 0, "r", spc)
    out = Outputs()
    for i, r in enumerate(rows):
        out.extend(proc.handle(encode(r), i, r["machine_id"].encode(), wall_ms=r["event_time"]))
    out.extend(proc.close_all())
    return out, proc


def simulated(minutes: int, sensors: tuple[str, ...]) -> list[dict[str, Any]]:
    """Readings of one fault-free simulated machine at 1 Hz (it runs and stops by its duty cycle)."""
    specs = sensor_specs(8)
    names = [s.name for s in specs]
    plant = PlantSignals(1, specs, 1.0, seed=3, quiet=[0])
    rows = []
    for k in range(minutes * 60):
        step = plant.step()
        for sensor in sensors:
            rows.append(reading("m001", sensor, T0 + 1000 * k, float(step.values[0, names.index(sensor)]), k))
    return rows


def state_of(out: Outputs) -> dict[int, float]:
    """window_start -> lowest machine_state in the window (0: it stood still at some point)."""
    return {w["window_start"]: w["min"] for w in out.windows if w["sensor"] == STATE}


def test_a_quiet_machine_that_stops_is_charted_only_while_it_runs() -> None:
    rows = simulated(60, ("noise", STATE))  # acoustic noise: white noise around 74-82 dB, 50 dB stopped
    mixed = feed(SpcSettings(sensors="noise", phase1_count=25), rows)
    gated = feed(SpcSettings(sensors="noise", phase1_count=25, idle_sensor=STATE), rows)
    state = state_of(gated)
    stopped = {start for start, low in state.items() if low == 0.0}
    assert 10 <= len(stopped) <= len(state) // 2  # the machine does stop in this hour
    # One chart of both regimes: the windows of the stopped machine signal (and so do others).
    assert any(s["window_start"] in stopped for s in mixed.spc_signals)
    assert len({s["point_index"] for s in mixed.spc_signals}) > 40
    # Charted only while running: no stopped window is judged, and the fault-free current signals at
    # about the in-control rate of the Western Electric rules (1 point in 92).
    assert not any(s["window_start"] in stopped for s in gated.spc_signals)
    points = {s["point_index"] for s in gated.spc_signals if s["chart"] == "i"}
    assert len(points) <= 0.03 * (len(state) - len(stopped))
    assert {w["sensor"] for w in gated.windows} == {"noise", STATE}  # every window still comes out


def test_state_reading_order_and_machines_without_a_state_sensor() -> None:
    """Whether the state reading comes before or after the charted one in a scan, a stopped window is
    skipped; a machine that reports no state is charted as before; a window whose state reading is
    missing is charted (its state is unknown)."""
    rows = []
    for k in range(200):
        ts = T0 + 1000 * k
        idle = 100 <= k < 130  # windows 10, 11, 12 stopped
        press = (0.6 if idle else 6.0) + (0.01 if k % 2 else -0.01) + 0.001 * (k % 7)
        scan = [reading("m1", "pressure", ts, press, k)]
        if not 150 <= k < 160:  # window 15: no state reading at all
            state = reading("m1", STATE, ts, 0.0 if idle else 1.0, k)
            scan = [state, *scan] if k % 2 else [*scan, state]
        rows += scan
        rows.append(reading("m2", "pressure", ts, press, k))  # m2 reports no state
    spc = SpcSettings(sensors="pressure", phase1_count=5, idle_sensor=STATE, rules="none")
    out = feed(spc, rows)
    signalled = {(s["machine_id"], (s["window_start"] - T0) // 10_000) for s in out.spc_signals}
    assert signalled & {("m2", 10), ("m2", 11), ("m2", 12)}
    assert not signalled & {("m1", 10), ("m1", 11), ("m1", 12)}
    # Every window of m1 but the three stopped ones was judged, window 15 (no state) included.
    _, proc = run(spc, rows)
    assert proc.spc.monitors[("m1", "pressure")].chart.count == 20 - 3
    assert proc.spc.monitors[("m2", "pressure")].chart.count == 20
