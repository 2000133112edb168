"""Snapshot mid-stream, restore in a new process: the scores that follow are exactly the same."""

from __future__ import annotations

import csv
import json
import math
import random
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from streams.anomaly import state
from streams.anomaly.config import AnomalySettings
from streams.anomaly.exceptions import SnapshotError
from streams.anomaly.monitor import MachineMonitor

REPO = Path(__file__).resolve().parents[3]

CONTINUE = """
import json, sys
from streams.anomaly import state
monitor = state.loads(open(sys.argv[1], "rb").read())
out = []
for ts, values in json.load(open(sys.argv[2])):
    r = monitor.update(ts, values)
    out.append([r.score, r.is_anomaly, r.source, r.scores, r.event.to_dict() if r.event else None])
print(json.dumps(out))
"""


def pump_readings(n: int = 2400, seed: int = 3) -> list[tuple[int, dict[str, float | None]]]:
    """Three pump sensors at 1 reading/min with a daily rhythm; pressure steps up mid-stream."""
    rng = random.Random(seed)
    t0 = 1_700_000_000_000
    out: list[tuple[int, dict[str, float | None]]] = []
    for i in range(n):
        day = math.sin(2 * math.pi * i / 1440)
        pressure = 4.0 + 0.2 * day + rng.gauss(0, 0.03) + (1.0 if 1150 <= i < 1400 else 0.0)
        values: dict[str, float | None] = {
            "pressure": pressure,
            "current": 12 + day + rng.gauss(0, 0.1),
            "temperature": None if i % 97 == 0 else 60 + 2 * day + rng.gauss(0, 0.2),  # gaps
        }
        out.append((t0 + i * 60_000, values))
    return out


def continue_in_new_process(tmp_path: Path, blob: bytes, rest: list[Any]) -> list[Any]:
    snap, data = tmp_path / "snapshot.json", tmp_path / "rest.json"
    snap.write_bytes(blob)
    data.write_text(json.dumps(rest))
    proc = subprocess.run(
        [sys.executable, "-c", CONTINUE, str(snap), str(data)],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(proc.stdout)  # type: ignore[no-any-return]


def continue_here(monitor: MachineMonitor, rest: list[Any]) -> list[Any]:
    out = []
    for ts, values in rest:
        r = monitor.update(ts, values)
        out.append([r.score, r.is_anomaly, r.source, r.scores, r.event.to_dict() if r.event else None])
    result: list[Any] = json.loads(
        json.dumps(out)
    )  # same JSON round trip as the other process (exact floats)
    return result


@pytest.mark.parametrize("backend", ["compact", "river"])
def test_restore_in_a_new_process_continues_exactly(tmp_path: Path, backend: str) -> None:
    readings = pump_readings()
    cut = 1250  # inside the pressure fault: an event is open when the snapshot is taken
    monitor = MachineMonitor("pump-7", AnomalySettings(hst_backend=backend))
    for ts, values in readings[:cut]:
        monitor.update(ts, values)
    assert monitor.open_event is not None
    blob = state.dumps(monitor)
    rest = [[ts, v] for ts, v in readings[cut:]]
    theirs = continue_in_new_process(tmp_path, blob, rest)
    ours = continue_here(monitor, rest)
    assert theirs == ours
    closes = [r[4] for r in ours if r[4] and r[4]["end_ms"] is not None]
    assert closes and closes[0]["start_ms"] < readings[cut][0]  # the event opened before the cut closed after


def test_restore_on_a_nab_file(tmp_path: Path, shared_dir: Path) -> None:
    path = shared_dir / "datasets/nab/data/realKnownCause/machine_temperature_system_failure.csv"
    with path.open() as fh:
        rows = list(csv.DictReader(fh))[:6000]
    from streams.anomaly.nab_run import to_epoch_ms

    readings: list[Any] = [[to_epoch_ms(r["timestamp"]), {"value": float(r["value"])}] for r in rows]
    monitor = MachineMonitor("machine_temperature")
    for ts, values in readings[:2500]:
        monitor.update(ts, values)
    theirs = continue_in_new_process(tmp_path, state.dumps(monitor), readings[2500:])
    assert theirs == continue_here(monitor, readings[2500:])


def test_restore_continues_the_relation_detector_exactly(tmp_path: Path) -> None:
    """A reading a second, flow/pressure/current tied by the pump's speed; the snapshot is taken inside
    a current shift that only the relation detector sees (its covariance and inverse travel exactly)."""
    from tests.streams.anomaly.test_relation import T0, pump

    readings: list[Any] = [[T0 + 1000 * i, x] for i, x in enumerate(pump(900, 7, shift_from=600, shift=0.1))]
    monitor = MachineMonitor("rig")
    for ts, values in readings[:620]:
        monitor.update(ts, values)
    assert monitor.open_event is not None and monitor.open_event.sensor == "current"
    assert monitor.relation is not None and monitor.relation.since > 0  # between two refreshes of P
    rest = readings[620:]
    theirs = continue_in_new_process(tmp_path, state.dumps(monitor), rest)
    assert theirs == continue_here(monitor, rest)


def test_corrupt_or_foreign_snapshots_are_refused() -> None:
    monitor = MachineMonitor("m")
    for ts, values in pump_readings(300):
        monitor.update(ts, values)
    blob = state.dumps(monitor)
    doc = json.loads(blob)
    doc["state"]["count"] += 1
    with pytest.raises(SnapshotError, match="checksum"):
        state.loads(json.dumps(doc))
    doc = json.loads(blob)
    doc["version"] = 99
    with pytest.raises(SnapshotError, match="version 99"):
        state.loads(json.dumps(doc))
    with pytest.raises(SnapshotError, match="not JSON"):
        state.loads(b"\x80garbage")
    with pytest.raises(SnapshotError, match="not a MachineMonitor"):
        MachineMonitor.restore({"kind": "Other"})


def test_snapshot_of_an_earlier_release_without_transition_detectors_restores() -> None:
    """Snapshots written before the transition detector existed restore with fresh ones (they learn
    from the restore on); the other detectors continue exactly."""
    monitor = MachineMonitor("m", AnomalySettings(transition_min_levels=5))
    readings = pump_readings(400)
    for ts, values in readings[:300]:
        monitor.update(ts, values)
    twin = MachineMonitor.restore(json.loads(json.dumps(monitor.snapshot())))  # a current snapshot: exact
    old = monitor.snapshot()
    del old["transitions"]
    restored = MachineMonitor.restore(json.loads(json.dumps(old)))
    assert (
        sorted(restored.transitions) == sorted(monitor.transitions) == ["current", "pressure", "temperature"]
    )
    assert all(d.prev is None for d in restored.transitions.values())
    for ts, values in readings[300:]:
        ours, theirs = monitor.update(ts, values), restored.update(ts, values)
        assert theirs.scores["machine"] == ours.scores["machine"]
        assert twin.update(ts, values) == ours
