"""The relation detector: a sensor that leaves what the machine's other sensors predict."""

from __future__ import annotations

import random

from streams.anomaly.config import AnomalySettings
from streams.anomaly.detector import RelationDetector
from streams.anomaly.monitor import MachineMonitor

T0 = 1_773_050_400_000  # 10:00 UTC


def pump(n: int, seed: int, shift_from: int = -1, shift: float = 0.0) -> list[dict[str, float]]:
    """A reading a second: flow, pressure and current follow the pump's wandering speed; voltage is
    independent. From ``shift_from`` on, current reads ``shift`` higher while the others do not."""
    rng = random.Random(seed)
    speed = 1.0
    out = []
    for i in range(n):
        speed = 1 + 0.98 * (speed - 1) + rng.gauss(0, 0.004)
        out.append(
            {
                "flow": 32 * speed + rng.gauss(0, 0.25),
                "pressure": 0.3 * speed**2 + rng.gauss(0, 0.008),
                "current": 2 * speed + rng.gauss(0, 0.03) + (shift if 0 <= shift_from <= i else 0.0),
                "voltage": 230 + rng.gauss(0, 0.6),
            }
        )
    return out


def test_the_broken_relation_scores_and_independent_sensors_are_left_alone() -> None:
    det = RelationDetector(["current", "flow", "pressure", "voltage"])
    readings = pump(900, 1, shift_from=800, shift=0.1)
    normal: list[dict[str, float]] = []
    for x in readings[:800]:
        normal.append(det.raw_scores(x))
        det.learn_one(x)
    assert all(r["voltage"] == 0.0 for r in normal[100:])  # nothing predicts voltage: never judged
    broken = [det.raw_scores(x)["current"] for x in readings[800:]]  # not learnt
    # current 0.1 A up (2 of its own standard deviations) with flow and pressure unchanged: about
    # 3 standard deviations of what they predict, every reading
    mean_normal = sum(r["current"] for r in normal[100:]) / 700
    assert sum(broken) / 100 > 5 * mean_normal
    assert min(broken) > 0.0
    assert det.raw_scores({"current": 2.0, "flow": 32.0}) == {}  # a sensor missing: no judgement


def test_monitor_finds_a_current_shift_only_the_relation_shows() -> None:
    """Readings a second apart; from reading 600 the current is 0.1 A higher while flow and pressure
    say the pump is unchanged. Each value stays within its usual swing."""

    def events(settings: AnomalySettings) -> list[tuple[int, str]]:
        m = MachineMonitor("rig", settings)
        out = []
        for i, x in enumerate(pump(900, 7, shift_from=600, shift=0.1)):
            r = m.update(T0 + 1000 * i, x)
            if r.event is not None and r.event.is_open:
                out.append((i, r.event.sensor))
        return out

    with_relation = events(AnomalySettings())
    assert not [e for e in with_relation if 300 <= e[0] < 600], with_relation  # quiet once settled
    found = [e for e in with_relation if e[0] >= 600]
    assert found and found[0][1] == "current" and found[0][0] < 630, with_relation
    without = events(AnomalySettings(relation_alpha=0))
    assert not [e for e in without if e[0] >= 600 and e[1] == "current"], without
