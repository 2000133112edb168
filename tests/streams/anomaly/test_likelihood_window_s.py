"""LIKELIHOOD_WINDOW_S (a plant setting): the calibrators average at least that many seconds of
readings, so a scan a second is calibrated over a minute, not over 10 s; a scan a minute is not
touched. What it does to false alarms at a scan a second: ``python -m benchmarks.bench_plant``."""

from __future__ import annotations

import math
import random
from pathlib import Path
from typing import Any

from streams.anomaly import state
from streams.anomaly.config import AnomalySettings
from streams.anomaly.monitor import MAX_WINDOW, WINDOW_SETTLE, MachineMonitor
from tests.streams.anomaly.test_anomaly_restart import continue_here, continue_in_new_process


def readings(n: int, gap_s: float, seed: int = 4) -> list[list[Any]]:
    rng = random.Random(seed)
    t0 = 1_700_000_000_000
    out = []
    for i in range(n):
        speed = 1 + 0.01 * math.sin(i / 50)
        out.append(
            [
                t0 + round(i * gap_s * 1000),
                {
                    "flow": 32 * speed + rng.gauss(0, 0.2),
                    "pressure": 0.3 * speed**2 + rng.gauss(0, 0.005) + (0.05 if i > 700 else 0.0),
                    "temperature": 60 + rng.gauss(0, 0.2),
                },
            ]
        )
    return out


def windows(m: MachineMonitor) -> set[int]:
    return {lik.window for lik in m._calibrators()}


def test_a_scan_a_second_is_calibrated_over_a_minute() -> None:
    m = MachineMonitor("fast", AnomalySettings(likelihood_window_s=60))
    data = readings(WINDOW_SETTLE + 5, 1.0)
    for ts, values in data[: WINDOW_SETTLE - 1]:
        m.update(ts, values)
    assert windows(m) == {10}
    m.update(*data[WINDOW_SETTLE - 1])  # the interval is measured: every calibrator, also the relation's
    assert m.rel_liks
    assert windows(m) == {60}
    assert m.lik_window == 60
    assert m._likelihood().window == 60  # and a sensor that appears later
    slow = MachineMonitor("fast", AnomalySettings(likelihood_window_s=60 * MAX_WINDOW * 10))
    for ts, values in data:
        slow.update(ts, values)
    assert windows(slow) == {MAX_WINDOW}


def test_a_scan_a_minute_is_not_touched() -> None:
    """10 readings a minute apart are longer than 60 s: the scores are those without the setting."""
    data = readings(600, 60.0)
    on, off = MachineMonitor("m", AnomalySettings(likelihood_window_s=60)), MachineMonitor("m")
    assert [on.update(ts, v).scores for ts, v in data] == [off.update(ts, v).scores for ts, v in data]
    assert windows(on) == {10}


def test_the_longer_window_survives_a_restart(tmp_path: Path) -> None:
    data = readings(900, 1.0)
    m = MachineMonitor("fast", AnomalySettings(likelihood_window_s=60, warmup=100, warmup_hours=0))
    for ts, values in data[:720]:
        m.update(ts, values)
    assert m.lik_window == 60
    rest = data[720:]
    theirs = continue_in_new_process(tmp_path, state.dumps(m), rest)
    assert theirs == continue_here(m, rest)
    assert any(row[0] > 0 for row in theirs)  # scored after the warm-up: the check can fail
