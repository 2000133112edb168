"""Anomaly models restored from checkpoints older than the window state learn the records in between
(PartitionProcessor.learn) and go on exactly as if uninterrupted: the same events, the same scores,
the same model state. Without it they miss those readings (what a SIGKILLed Faust worker did)."""

from __future__ import annotations

import random
import time
from typing import Any

from schemas.config import TopicSettings
from schemas.serde import Serde
from streams.anomaly.config import AnomalySettings
from streams.anomaly.state import unpack
from streams.config import StreamSettings
from streams.pipeline import ANOMALY_PACKED, ANOMALY_PREFIX, PartitionProcessor

TOPIC = TopicSettings().topic_readings
MACHINES = ("m0", "m1")
SENSORS = ("temperature", "vibration_rms")
STEPS = 260
SHIFT_AT = 180  # the temperature of both machines shifts by 6 sigma here: an event each
EVENT_KEY = ("machine_id", "sensor", "state", "started_at", "event_time", "score", "threshold")


def records() -> list[bytes]:
    """Readings of two machines, interleaved as a gateway would send them; one bad record."""
    enc = Serde().encoder("Reading", TOPIC)
    rng = random.Random(7)
    t0 = int(time.time() * 1000) - 3_600_000
    out = []
    for i in range(STEPS):
        for m in MACHINES:
            for k, s in enumerate(SENSORS):
                shift = 12.0 if s == "temperature" and i >= SHIFT_AT else 0.0
                out.append(enc({
                    "plant": "p1", "line": "l1", "machine_id": m, "sensor": s, "unit": "u",
                    "event_time": t0 + i * 200 + k * 97, "value": round(rng.gauss(50 + shift, 2), 6),
                    "quality": "GOOD", "gateway_id": "gw", "seq": i, "lot_id": None,
                }))  # fmt: skip
    out.insert(len(out) // 2, b"not a reading")  # dead-lettered: teaches nothing, handled or learnt
    return out


def processor() -> PartitionProcessor:
    return PartitionProcessor(
        StreamSettings(), Serde(), 0, TOPIC, anomaly=AnomalySettings(warmup_hours=0, warmup=100),
        anomaly_checkpoint_ms=0,
    )  # fmt: skip


def events(out: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
    return [tuple(a[k] for k in EVENT_KEY) for a in out]


def models(proc: PartitionProcessor) -> dict[str, Any]:
    return {m: proc.anomaly[m].snapshot() for m in MACHINES}


def run_crashed(data: list[bytes], saved: dict[str, int], crash: int, learn: bool) -> tuple[list[Any], Any]:
    """Handle ``data`` with a crash before offset ``crash``: each machine's model resumes from its
    checkpoint written after offset ``saved[machine] - 1``, the rest of the state is at ``crash``."""
    first, anomalies = processor(), []
    checkpoints: dict[str, Any] = {}
    for offset, value in enumerate(data[:crash]):
        anomalies += first.handle(value, offset, None).anomalies
        for k, v in first.dirty_state().items():
            machine = k[len(ANOMALY_PREFIX) :]
            if k.startswith(ANOMALY_PREFIX) and offset < saved[machine]:
                checkpoints[k] = v
    second = processor()
    second.restore(checkpoints, None)
    if learn:
        for offset in range(min(saved.values()), crash):
            second.learn(data[offset], offset, saved)
    for offset in range(crash, len(data)):
        anomalies += second.handle(data[offset], offset, None).anomalies
    return anomalies, second


def test_restored_models_learn_what_they_missed_and_go_on_as_if_uninterrupted() -> None:
    data = records()
    ref = processor()
    expected = [a for offset, value in enumerate(data) for a in ref.handle(value, offset, None).anomalies]
    assert {e[0] for e in events(expected)} == set(MACHINES), "each machine's shift opens an event"
    # m0's checkpoint before the bad record, m1's after it; the crash before both shifts
    saved, crash = {"m0": 500, "m1": 560}, 600
    assert crash < SHIFT_AT * len(MACHINES) * len(SENSORS)
    got, proc = run_crashed(data, saved, crash, learn=True)
    assert events(got) == events(expected)
    assert models(proc) == models(ref)

    lost, stale = run_crashed(data, saved, crash, learn=False)  # what restarts did before
    assert models(stale) != models(ref)
    assert events(lost) != events(expected)


def test_models_from_is_the_first_reading_not_checkpointed() -> None:
    data = records()
    proc = PartitionProcessor(
        StreamSettings(), Serde(), 0, TOPIC, anomaly=AnomalySettings(), anomaly_checkpoint_ms=3_600_000
    )
    proc.handle(data[0], 0, None)
    assert proc.models_from(1) == 0  # learnt, not saved
    saved = proc.dirty_state()  # the first checkpoint is written at once
    assert unpack(saved[ANOMALY_PREFIX + "m0"][ANOMALY_PACKED])["count"] == 1
    assert proc.models_from(1) == 1
    for offset in range(1, 5):
        proc.handle(data[offset], offset, None)
        proc.dirty_state()  # m0 saved an hour ago at the earliest: not again; m1 new: saved
    assert proc.models_from(5) == 1  # m0's readings since offset 1 are in no checkpoint
    proc.save_models()
    proc.dirty_state()
    assert proc.models_from(5) == 5
