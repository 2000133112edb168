"""Simulated plant signals: deterministic per seed, physically sensible, labels true to the signal."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest

from ingest.config import SimulatorSettings
from ingest.signals import DEFAULT_SENSORS, sensor_specs
from ingest.simulator import FaultLabel, PlantSimulator, plant_layout, run_simulation

PRE_S = 60  # seconds of healthy running before a fault used as its baseline


@dataclass
class Run:
    values: npt.NDArray[np.float64]  # (ticks, machines, sensors)
    qualities: npt.NDArray[np.int64]  # (ticks, machines, sensors), 0 GOOD 1 UNCERTAIN 2 BAD
    lots: list[list[str]]
    labels: list[FaultLabel]
    names: list[str]
    machine_ids: list[str]


def simulate(ticks: int, start_ms: int = 0, **overrides: object) -> Run:
    """Fast-forward ``ticks`` scan cycles at 1 Hz; event time k * 1000 ms + start_ms."""
    kw: dict[str, object] = {
        "machines": 6,
        "rate_hz": 1.0,
        "seed": 11,
        "fault_probability": 0.01,
        "start_ms": start_ms,
        **overrides,
    }
    sim = PlantSimulator(SimulatorSettings(**kw))  # type: ignore[arg-type]
    vals, quals, lots = [], [], []
    for k in range(ticks):
        t = sim.tick(start_ms + k * 1000)
        vals.append(t.values)
        quals.append([q if q is not None else [0] * len(sim.sensors) for q in t.qualities])
        lots.append(t.lots)
    labels = sim.finish()
    return Run(
        np.array(vals),
        np.array(quals),
        lots,
        labels,
        [s.name for s in sim.sensors],
        [m.machine_id for m in sim.machines],
    )


@pytest.fixture(scope="module")
def run() -> Run:
    return simulate(5000)


def test_same_seed_same_signals_and_labels_other_seed_differs() -> None:
    a, b, c = simulate(600), simulate(600), simulate(600, seed=12)
    assert np.array_equal(a.values, b.values)
    assert np.array_equal(a.qualities, b.qualities)
    assert a.lots == b.lots and a.labels == b.labels
    assert not np.array_equal(a.values, c.values)


def test_values_do_not_depend_on_event_time() -> None:
    """Live mode (wall-clock event times) and fast-forward produce the same values for a seed."""
    a, b = simulate(300), simulate(300, start_ms=1_700_000_000_000)
    assert np.array_equal(a.values, b.values)
    assert [(x.kind, x.machine_id, x.end_ms - x.start_ms) for x in a.labels] == [
        (x.kind, x.machine_id, x.end_ms - x.start_ms) for x in b.labels
    ]


def test_counters_states_and_duty_cycle(run: Run) -> None:
    v = run.values
    col = run.names.index
    for name in ("energy", "part_count"):
        assert (np.diff(v[:, :, col(name)], axis=0) >= 0).all(), f"{name} must never decrease"
    state = v[:, :, col("machine_state")]
    assert set(np.unique(state)) <= {0.0, 1.0, 2.0}
    assert (state == 0).any() and (state == 1).any()
    running, idle = state == 1, state == 0
    for name in ("vibration_rms", "current", "noise"):
        assert v[:, :, col(name)][running].mean() > 3 * v[:, :, col(name)][idle].mean() / 2
    assert np.isfinite(v).all()


def test_lot_changes_every_k_parts(run: Run) -> None:
    k = SimulatorSettings().parts_per_lot
    parts = run.values[:, :, run.names.index("part_count")]
    for m in range(parts.shape[1]):
        lot_changed = [run.lots[t][m] != run.lots[t - 1][m] for t in range(1, len(run.lots))]
        crossed = list(np.diff(parts[:, m] // k) != 0)
        assert lot_changed == crossed
        assert any(lot_changed)


def test_quality_mostly_good_some_uncertain_and_bad() -> None:
    r = simulate(2000, uncertain_probability=0.01, bad_probability=0.005)
    n = r.qualities.size
    for q, p in ((1, 0.01), (2, 0.005)):
        observed = int((r.qualities == q).sum())
        sd = (n * p * (1 - p)) ** 0.5  # binomial standard deviation
        assert abs(observed - n * p) < 5 * sd
    assert (r.qualities == 0).mean() > 0.98


def _clean_windows(run: Run, kind: str) -> list[tuple[int, FaultLabel, slice, slice]]:
    """(machine, label, pre-fault ticks, fault ticks) for complete faults with a fault-free baseline."""
    out = []
    for lab in run.labels:
        if lab.kind != kind or lab.truncated:
            continue
        m = run.machine_ids.index(lab.machine_id)
        start, end = lab.start_ms // 1000, lab.end_ms // 1000
        before = [
            o
            for o in run.labels
            if o.machine_id == lab.machine_id
            and o is not lab
            and o.end_ms // 1000 >= start - PRE_S
            and o.start_ms < lab.start_ms
        ]
        if start < PRE_S or before:
            continue
        out.append((m, lab, slice(start - PRE_S, start), slice(start, end + 1)))
    return out


def test_fault_labels_match_the_signals(run: Run) -> None:
    v, col = run.values, run.names.index
    state = v[:, :, col("machine_state")]
    checked = dict.fromkeys(("bearing_wear", "overheating", "pressure_leak", "sensor_stuck"), 0)
    for m, lab, pre, during in _clean_windows(run, "bearing_wear"):
        healthy = state[pre, m] == 1
        fault = v[during, m, col("vibration_rms")]
        assert fault[len(fault) // 2 :].mean() > v[pre, m, col("vibration_rms")][healthy].mean() + 1.0, lab
        assert lab.sensors == ["vibration_rms", "noise"]
        checked["bearing_wear"] += 1
    for m, lab, pre, during in _clean_windows(run, "overheating"):
        healthy = state[pre, m] == 1
        assert v[during, m, col("temperature")].mean() > v[pre, m, col("temperature")][healthy].mean() + 5.0
        assert (state[during, m] == 2).any(), "an overheating machine trips"
        checked["overheating"] += 1
    for m, lab, pre, during in _clean_windows(run, "pressure_leak"):
        healthy = state[pre, m] == 1
        fault = v[during, m, col("pressure")]
        assert fault[len(fault) // 4 :].mean() < v[pre, m, col("pressure")][healthy].mean() - 0.5
        checked["pressure_leak"] += 1
    for m, lab, pre, during in _clean_windows(run, "sensor_stuck"):
        (sensor,) = lab.sensors
        stuck = v[during, m, col(sensor)]
        assert (stuck == stuck[0]).all(), f"{sensor} should repeat one value during {lab}"
        assert v[pre, m, col(sensor)].std() > 0
        checked["sensor_stuck"] += 1
    assert all(n >= 1 for n in checked.values()), checked
    # State 2 (fault) happens only inside an overheating label.
    for t, m in zip(*np.nonzero(state == 2), strict=True):
        ms = int(t) * 1000
        assert any(
            lab.kind == "overheating"
            and lab.machine_id == run.machine_ids[m]
            and lab.start_ms <= ms <= lab.end_ms
            for lab in run.labels
        )


class RecordingSink:
    """Keeps (machine, event time, seq) of every scan the simulator sends."""

    def __init__(self) -> None:
        self.scans: list[tuple[str, int, int]] = []

    def machine(self, plant: str, line: str, machine_id: str, gateway_id: str, sensors: object) -> object:
        return machine_id

    def send_scan(
        self,
        m: object,
        event_time: int,
        seq: int,
        lot_id: object,
        values: object,
        qualities: object = None,
    ) -> None:
        self.scans.append((str(m), event_time, seq))

    def tick_encoder(self, layouts: list[object]) -> list[object]:
        return layouts

    def send_scans(
        self, tick: list[object], event_time: int, first_seq: int, lots: object, values: object,
        qualities: object = None,
    ) -> None:  # fmt: skip
        self.scans += [(str(m), event_time, first_seq + i) for i, m in enumerate(tick)]

    def poll(self, timeout: float = 0.0) -> None:
        return None


def test_labels_are_well_formed_and_written_as_jsonl(tmp_path: Path) -> None:
    path = tmp_path / "labels" / "faults.jsonl"
    settings = SimulatorSettings(
        machines=4,
        rate_hz=2.0,
        seed=5,
        fault_probability=0.02,
        start_ms=1_700_000_000_000,
        labels_path=path,
        duration_s=900,
    )
    sink = RecordingSink()
    result = run_simulation(PlantSimulator(settings), sink)  # type: ignore[arg-type]
    assert result.ticks == 1800 and result.scans == 1800 * 4 and result.values == 1800 * 4 * 8
    times = {t for _, t, _ in sink.scans}
    assert min(times) == 1_700_000_000_000 and max(times) == 1_700_000_000_000 + 899_500
    assert [s for _, _, s in sink.scans] == list(range(1, len(sink.scans) + 1))
    lines = [json.loads(x) for x in path.read_text().splitlines()]
    assert len(lines) == result.labels > 0
    for lab in lines:
        assert set(lab) == {
            "plant",
            "line",
            "machine_id",
            "kind",
            "sensors",
            "start_ms",
            "end_ms",
            "truncated",
        }
        assert lab["start_ms"] in times and lab["end_ms"] in times and lab["start_ms"] <= lab["end_ms"]
        assert set(lab["sensors"]) <= {s.name for s in DEFAULT_SENSORS} and lab["sensors"]


def test_sensor_selection_and_naming() -> None:
    assert [s.name for s in sensor_specs(3)] == ["vibration_rms", "temperature", "pressure"]
    ten = sensor_specs(10)
    assert [s.name for s in ten[8:]] == ["aux_01", "aux_02"]
    with pytest.raises(ValueError, match="at least one sensor"):
        sensor_specs(0)
    machines = plant_layout("p1", 25, 10)
    assert [(m.line, m.machine_id) for m in machines[:2]] == [("l1", "m001"), ("l1", "m002")]
    assert (machines[10].line, machines[24].line, machines[24].machine_id) == ("l2", "l3", "m025")
    r = simulate(200, sensors=10, machines=2)
    assert r.values.shape == (200, 2, 10) and np.isfinite(r.values).all()


def test_the_plant_metadata_loads_with_its_spec_limits_and_a_run_writes_it(tmp_path: Path) -> None:
    """``--metadata``: one row per machine and sensor that ``millstream metadata load`` accepts, with the
    simulated process's specification limits (the analog sensors) and none for counters and state."""
    from sinks.metadata import read_csv

    path = tmp_path / "plant" / "machines.csv"
    settings = SimulatorSettings(
        machines=3, sensors=10, machines_per_line=2, metadata_path=path, max_scans=3, fast_forward=True
    )
    sink = RecordingSink()
    run_simulation(PlantSimulator(settings), sink)
    assert len(sink.scans) == 3
    rows = read_csv(path, loaded_at_ms=0)
    by_key = {(r[2], r[3]): r for r in rows}
    assert len(rows) == 3 * 10 and len(by_key) == 30
    assert by_key[("m003", "pressure")][:7] == ["p1", "l2", "m003", "pressure", "bar", 5.0, 7.0]
    assert by_key[("m001", "machine_state")][5:7] == [None, None]
    assert by_key[("m001", "aux_02")][4:7] == ["1", None, None]
    assert [p.name for p in path.parent.iterdir()] == ["machines.csv"]  # no partial file left


def test_metadata_that_cannot_be_written_is_a_clear_error(tmp_path: Path) -> None:
    from ingest.exceptions import LabelWriteError
    from ingest.simulator import write_metadata

    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(LabelWriteError, match=r"cannot write the plant's metadata to .*machines.csv"):
        write_metadata(blocker / "machines.csv", plant_layout("p1", 2, 10), DEFAULT_SENSORS)
