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
