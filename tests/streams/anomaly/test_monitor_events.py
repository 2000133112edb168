"""How the monitor's scores become events: one reported alert per burst, but the event gate judges
the score itself."""

from __future__ import annotations

import numpy as np

from streams.anomaly.config import AnomalySettings
from streams.anomaly.monitor import MachineMonitor

MIN_MS = 60_000


def test_a_burst_that_turns_red_below_enter_and_then_climbs_opens_an_event() -> None:
    """A value a little beyond the sensor's range (red, below ENTER), then one far beyond it. The
    reported score marks the burst once, at its first red reading; the event opens at the second,
    whose own score is past ENTER (before, the lowered report kept the event from ever opening, so a
    fault that grows, such as a valve closing, raised none)."""
    s = AnomalySettings()
    rng = np.random.default_rng(5)
    m = MachineMonitor("m1", s)
    for i in range(300):
        assert m.update(i * MIN_MS, {"a": float(10 + rng.normal(0, 0.2))}).event is None
    w = m.windows["a"]
    first = m.update(300 * MIN_MS, {"a": w.hi + 0.08 * (w.hi - w.lo)})
    assert s.red <= first.score < s.enter and not first.is_anomaly  # red, not yet an event
    second = m.update(301 * MIN_MS, {"a": w.hi + 0.6 * (w.hi - w.lo)})
    assert second.score == s.yellow  # the burst was already reported at its first red reading
    assert second.is_anomaly
    assert second.event is not None and second.event.is_open
    assert second.event.sensor == "a" and second.event.score >= s.enter  # the score that opened it
    assert second.event.start_ms == 301 * MIN_MS


def _run(settings: AnomalySettings, rows: list[float]) -> list[bool]:
    m = MachineMonitor("m1", settings)
    return [m.update(i * 1000, {"a": v}).is_anomaly for i, v in enumerate(rows)]


def test_an_event_lasts_as_long_as_its_sensor_stays_off_its_normal() -> None:
    """A sensor read once a second steps 8 spreads up for 300 readings, then returns. The event
    opens at the step and stays open through it (HOLD), closing within a few readings of the
    return; scored on its own, the calibrated score settles as its calibrator learns the new
    level, and the event closes long before the fault ends."""
    rng = np.random.default_rng(12)
    rows = [float(10 + rng.normal(0, 0.2)) for _ in range(1100)]
    for i in range(500, 800):
        rows[i] += 1.6 + 0.5 * (i % 2)  # 8-10 spreads: a mean absolute deviation is 0.16
    held = _run(AnomalySettings(), rows)
    assert not any(held[:500])
    assert held[500] or held[501]  # found at once
    assert sum(held[500:800]) >= 295  # open for the whole fault
    assert not any(held[800 + AnomalySettings().exit_duration + 1 :])  # and closed once it is over
    unheld = _run(AnomalySettings(hold=0), rows)
    assert unheld[500] or unheld[501]
    assert sum(unheld[500:800]) < 150
