"""Plant settings of the anomaly monitor: time-based warm-up, ignored sensors, idle scans, stuck sensors.

All of them are off by default (NAB runs the defaults); each test turns one on and checks the
behaviour against a monitor without it on the same input.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pytest

from streams.anomaly.config import AnomalySettings
from streams.anomaly.monitor import MachineMonitor

MIN_MS = 60_000


def _series(n: int, seed: int = 3) -> list[dict[str, float]]:
    rng = np.random.default_rng(seed)
    return [{"a": float(10 + rng.normal(0, 0.2)), "b": float(5 + rng.normal(0, 0.1))} for _ in range(n)]


def test_defaults_leave_the_new_settings_off() -> None:
    s = AnomalySettings()
    # the 6-minute time warm-up only outlasts WARMUP's 150 readings for readings under 2.4 s apart
    assert s.warmup * 2.4 == pytest.approx(s.warmup_hours * 3600)
    assert (s.ignore_sensors, s.idle_sensor, s.flatline) == ("", "", 0)
    assert s.transition_min_levels == 0  # the transition detector is opt-in
    assert not MachineMonitor("m", s).transitions
    assert AnomalySettings(ignore_sensors=" energy, part_count ,").ignored == {"energy", "part_count"}


def test_time_based_warmup_suppresses_alerts_for_that_much_event_time() -> None:
    """A spike 2 hours in alerts without the time warm-up and not with a 3-hour one; after 3 hours
    the same spike alerts again."""
    rows = _series(400)
    # minutes 120 and 300: inside and after a 3-hour warm-up (the second one higher: what the
    # warm-up saw, it has learnt)
    for i, v in ((120, 40.0), (300, 100.0)):
        rows[i] = {"a": v, "b": rows[i]["b"]}

    def opened(settings: AnomalySettings) -> list[int]:
        m = MachineMonitor("m1", settings)
        out = []
        for i, row in enumerate(rows):
            ev = m.update(i * MIN_MS, row).event
            if ev is not None and ev.is_open:
                out.append(i)
        return out

    # range_persist=1: a spike of one reading opens an event (by default it only shows in the score)
    assert 120 in opened(AnomalySettings(warmup=20, range_persist=1))
    with_warmup = opened(AnomalySettings(warmup=20, warmup_hours=3, range_persist=1))
    assert 120 not in with_warmup and 300 in with_warmup
    assert all(i >= 180 for i in with_warmup)


def test_ignored_sensors_are_not_modelled() -> None:
    m = MachineMonitor("m1", AnomalySettings(ignore_sensors="energy"))
    counter = 0.0
    for i, row in enumerate(_series(300)):
        counter += 1.0 + i * 0.01  # a monotone counter sets a new record at every reading
        scored = m.update(i * MIN_MS, {**row, "energy": counter})
        assert "energy" not in scored.scores
    assert "energy" not in m.windows and set(m.windows) == {"a", "b"}


def test_idle_scans_are_neither_scored_nor_learnt() -> None:
    """The stopped machine's levels do not reach the models: a monitor that sees running scans plus
    idle ones ends in the same state as one that sees only the running scans."""
    settings = AnomalySettings(idle_sensor="state")
    rows = _series(300)
    both, running_only = MachineMonitor("m1", settings), MachineMonitor("m1", settings)
    for i, row in enumerate(rows):
        if i % 7 == 3:  # stopped: everything near zero
            scored = both.update(i * MIN_MS, {"a": 0.1, "b": 0.0, "state": 0.0})
            assert scored.scores == {} and scored.event is None and scored.score == 0.0
            continue
        both.update(i * MIN_MS, {**row, "state": 1.0})
        running_only.update(i * MIN_MS, {**row, "state": 1.0})
    assert both.count == running_only.count == sum(1 for i in range(300) if i % 7 != 3)
    assert json.dumps(both.snapshot(), sort_keys=True) == json.dumps(running_only.snapshot(), sort_keys=True)
    # a scan whose state reading is missing (BAD quality) on a machine that has one is not judged either
    assert both.update(301 * MIN_MS, {"a": 0.1, "b": 0.0}).scores == {}


def _stuck_run(flatline: int, stuck_at: int = 200, stuck_for: int = 30) -> tuple[list[int], list[str]]:
    rows = _series(300)
    for i in range(stuck_at, stuck_at + stuck_for):
        rows[i] = {"a": rows[stuck_at]["a"], "b": rows[i]["b"]}
    rows = [{**r, "state": 1.0} for r in rows]  # a state sensor that never changes is not "stuck"
    m = MachineMonitor("m1", AnomalySettings(flatline=flatline))
    opened, sensors = [], []
    for i, row in enumerate(rows):
        ev = m.update(i * MIN_MS, row).event
        if ev is not None and ev.is_open:
            opened.append(i)
            sensors.append(ev.sensor)
    return opened, sensors


def test_a_stuck_sensor_is_flagged_after_flatline_identical_readings() -> None:
    off, _ = _stuck_run(0)
    assert not [i for i in off if 200 <= i < 230], "the other detectors do not see a stuck value"
    opened, sensors = _stuck_run(5)
    # readings 200..204 are the first five identical values: flagged at the fifth
    assert 204 in opened and sensors[opened.index(204)] == "a"
    assert not [i for i in opened if i < 200], "neither the constant state nor the noisy sensors"


def test_flatline_state_survives_snapshot_and_restore() -> None:
    settings = AnomalySettings(flatline=5, warmup_hours=1)
    rows = _series(200)
    a = MachineMonitor("m1", settings)
    for i, row in enumerate(rows[:100]):
        a.update(i * MIN_MS, row)
    b = MachineMonitor.restore(json.loads(json.dumps(a.snapshot())))
    assert b.first_ms == 0 and b.runs == a.runs
    for i, row in enumerate(rows[100:], start=100):
        assert a.update(i * MIN_MS, row) == b.update(i * MIN_MS, row)


def test_a_second_fault_during_an_open_event_is_named_when_it_closes() -> None:
    """Sensor a steps far out of its range and stays there (an event opens on a); while that event
    is open, sensor b gets stuck. One event per machine is open at a time, so b raises no event of
    its own, but the closing record lists the peak of every detector that reached ENTER."""
    settings = AnomalySettings(flatline=5, warmup=20)
    rows = _series(400)
    stuck = rows[219]["b"]  # an ordinary value of b, repeated: only the stuck-sensor check sees it
    for i in range(200, 260):
        rows[i] = {"a": 25.0 + 0.2 * (i % 3), "b": stuck if i >= 220 else rows[i]["b"]}
    m = MachineMonitor("m1", settings)
    events = [e for i, row in enumerate(rows) if (e := m.update(i * MIN_MS, row).event) is not None]
    opened = [e for e in events if e.is_open]
    closed = [e for e in events if not e.is_open]
    # opened at the second reading beyond a's range (RANGE_PERSIST=2)
    assert [e.sensor for e in opened] == ["a"] and opened[0].start_ms == 201 * MIN_MS
    assert len(closed) == 1 and closed[0].start_ms == opened[0].start_ms
    peaks = {k: v for k, v in closed[0].features.items() if k.startswith("peak.")}
    assert peaks["peak.a"] >= settings.enter
    assert peaks["peak.b"] >= settings.enter  # the stuck sensor, not a source of its own event
    assert all(v >= settings.enter for v in peaks.values())
    assert not [k for k in opened[0].features if k.startswith("peak.")]  # only the close has them


@pytest.mark.parametrize("bad", [{"flatline": -1}, {"warmup_hours": -1.0}])
def test_invalid_values_are_refused(bad: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match="greater than or equal"):
        AnomalySettings(**bad)
