"""Simulator options for detection tests: quiet machines and faults scheduled at fixed times."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import pytest

from infra.cli import main
from ingest.config import SimulatorSettings
from ingest.signals import FaultKind, parse_schedule
from ingest.simulator import FaultLabel, PlantSimulator

START = 1_700_000_000_000


def _run(ticks: int, **kw: object) -> tuple[npt.NDArray[np.float64], list[FaultLabel], list[str]]:
    settings = SimulatorSettings(**{"machines": 3, "rate_hz": 1.0, "seed": 11, "start_ms": START, **kw})  # type: ignore[arg-type]
    sim = PlantSimulator(settings)
    values = np.array([sim.tick(START + k * 1000).values for k in range(ticks)])
    return values, sim.finish(), [s.name for s in sim.sensors]


def test_quiet_machines_get_no_random_faults_others_still_do() -> None:
    _, labels, _ = _run(3000, fault_probability=0.01)
    assert {lab.machine_id for lab in labels} == {"m001", "m002", "m003"}  # the baseline has faults
    _, quiet, _ = _run(3000, fault_probability=0.01, quiet_machines="m002")
    assert quiet and "m002" not in {lab.machine_id for lab in quiet}


def test_default_behaviour_is_unchanged_without_the_options() -> None:
    a, la, _ = _run(600, fault_probability=0.01)
    b, lb, _ = _run(600, fault_probability=0.01, quiet_machines="", fault_schedule="")
    assert np.array_equal(a, b) and la == lb


def test_a_scheduled_fault_happens_when_and_where_it_is_scheduled() -> None:
    values, labels, names = _run(
        900,
        fault_probability=0.0,
        fault_schedule="m002:pressure_leak:300:200:2.5, m003:sensor_stuck:100:50:noise",
    )
    by_machine = {lab.machine_id: lab for lab in labels}
    assert set(by_machine) == {"m002", "m003"}
    leak, stuck = by_machine["m002"], by_machine["m003"]
    assert (leak.kind, leak.start_ms, leak.end_ms) == ("pressure_leak", START + 300_000, START + 499_000)
    assert (stuck.kind, stuck.sensors, stuck.start_ms) == ("sensor_stuck", ["noise"], START + 100_000)
    p = values[:, 1, names.index("pressure")]
    # from a quarter of the fault on, pressure is the running level minus the magnitude (2.5 bar)
    assert p[360:500].mean() < p[200:300].mean() - 2.0
    noise = values[100:150, 2, names.index("noise")]
    assert (noise == noise[0]).all()


def test_scheduled_machines_get_only_their_scheduled_faults() -> None:
    _, labels, _ = _run(3000, fault_probability=0.01, fault_schedule="m001:overheating:1000:60")
    assert [lab.kind for lab in labels if lab.machine_id == "m001"] == ["overheating"]
    assert {lab.machine_id for lab in labels} > {"m001"}  # the others still have random faults


@pytest.mark.parametrize(
    ("schedule", "error"),
    [
        ("m001:bogus:0:60", "not a valid FaultKind"),
        ("m001:overheating:0", "expected MACHINE:KIND"),
        ("m001:overheating:-5:60", "START_S must be >= 0"),
        ("m001:overheating:0:60,m001:pressure_leak:30:60", "overlap"),
    ],
)
def test_bad_schedules_are_refused(schedule: str, error: str) -> None:
    with pytest.raises(ValueError, match=error):
        SimulatorSettings(fault_schedule=schedule)


def test_parse_schedule() -> None:
    got = parse_schedule("m001:bearing_wear:10:20:4.5,m002:sensor_stuck:0:5")
    assert [(f.machine, f.kind, f.start_s, f.duration_s, f.magnitude, f.sensor) for f in got] == [
        ("m001", FaultKind.BEARING_WEAR, 10.0, 20.0, 4.5, None),
        ("m002", FaultKind.SENSOR_STUCK, 0.0, 5.0, None, None),
    ]


def test_cli_refuses_unknown_or_contradictory_machines(capsys: pytest.CaptureFixture[str]) -> None:
    assert (
        main(["gateway", "simulate", "--machines", "2", "--quiet-machines", "m007", "--max-scans", "1"]) == 1
    )
    assert "unknown machine(s) m007" in capsys.readouterr().err
    args = ["gateway", "simulate", "--machines", "2", "--quiet-machines", "m001", "--max-scans", "1"]
    assert main([*args, "--fault", "m001:overheating:0:60"]) == 1
    assert "quiet and have scheduled faults" in capsys.readouterr().err
