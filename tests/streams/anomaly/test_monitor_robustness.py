"""What real telemetry does to a machine's monitor: a sensor that starts reporting late, a reconnect
pause among the first readings, settings that would crash it."""

from __future__ import annotations

import random

import pytest
from pydantic import ValidationError

from streams.anomaly.config import AnomalySettings
from streams.anomaly.monitor import WINDOW_SETTLE, MachineMonitor

T0 = 1_767_225_600_000
MIN = 60_000


def test_a_sensor_that_comes_late_is_not_judged_by_its_tiny_range_at_once() -> None:
    """A retrofitted probe on a running machine: its first readings set 'records' of a range of two or
    three values. Fault-free noise: no event (before, 14 of 20 such runs raised one at once)."""
    events = 0
    for seed in range(8):
        rng = random.Random(seed)
        m = MachineMonitor("m")
        for i in range(3400):
            values = {"a": 10 + rng.gauss(0, 1)}
            if i >= 3000:
                values["b"] = 20 + rng.gauss(0, 1)
            r = m.update(T0 + i * MIN, values)
            events += r.event is not None and r.event.is_open and i >= 3000
    assert events == 0


def test_the_late_sensor_is_judged_by_its_range_after_its_own_warm_up() -> None:
    rng = random.Random(1)
    m = MachineMonitor("m")
    for i in range(3400):
        values = {"a": 10 + rng.gauss(0, 1)}
        if i >= 3000:
            values["b"] = 20 + rng.gauss(0, 1)
        m.update(T0 + i * MIN, values)
    opened = [m.update(T0 + (3400 + k) * MIN, {"a": 10.0, "b": 80.0}).event for k in range(3)]
    assert any(e is not None and e.is_open and e.sensor == "b" for e in opened)  # a step far past its range


def test_the_calibration_window_in_seconds_uses_the_median_gap() -> None:
    """LIKELIHOOD_WINDOW_S=60 at a reading a second: 60 readings, also when a 30-minute reconnect
    pause falls among the first readings (the mean gap made it 10, for the machine's whole life)."""
    m = MachineMonitor("m", AnomalySettings(likelihood_window_s=60))
    t = T0
    for i in range(WINDOW_SETTLE + 5):
        t += 1_800_000 if i == 5 else 1000
        m.update(t, {"a": float(i % 3)})
    assert m.lik_window == 60


@pytest.mark.parametrize(
    "name", ["max_duration_hours", "profile_interval", "likelihood_window_s", "idle_value"]
)
def test_infinite_and_nan_settings_are_refused(name: str) -> None:
    for bad in (float("inf"), float("nan")):
        with pytest.raises(ValidationError, match="finite number"):
            AnomalySettings(**{name: bad})
