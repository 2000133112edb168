"""A machine's anomaly checkpoint is restored only into the settings it was written with: changed
MILLSTREAM_ANOMALY_* settings take effect (the models start afresh, with a warning), and an
unreadable checkpoint or a state the monitor cannot go on from does not crash the stream job."""

from __future__ import annotations

import logging
import time
from typing import Any

import pytest

from schemas.config import TopicSettings
from schemas.serde import Serde
from streams.anomaly.config import AnomalySettings
from streams.config import StreamSettings
from streams.pipeline import ANOMALY_PREFIX, PartitionProcessor

TOPIC = TopicSettings().topic_readings
MACHINE = "m-restore"


def processor(anomaly: AnomalySettings) -> PartitionProcessor:
    return PartitionProcessor(StreamSettings(), Serde(), 0, TOPIC, anomaly=anomaly, anomaly_checkpoint_ms=0)


def feed(proc: PartitionProcessor, start: int, n: int) -> None:
    enc = Serde().encoder("Reading", TOPIC)
    t0 = int(time.time() * 1000) - 3_600_000
    for i in range(start, start + n):
        reading = {
            "plant": "p1", "line": "l1", "machine_id": MACHINE, "sensor": "temperature", "unit": "Cel",
            "event_time": t0 + i * 1000, "value": 20.0 + (i % 7) * 0.1, "quality": "GOOD",
            "gateway_id": "gw", "seq": i, "lot_id": None,
        }  # fmt: skip
        proc.handle(enc(reading), i, MACHINE.encode())


def checkpoint(proc: PartitionProcessor) -> dict[str, Any]:
    return {k: v for k, v in proc.dirty_state().items() if k.startswith(ANOMALY_PREFIX)}


def test_a_checkpoint_resumes_with_the_same_settings_and_starts_afresh_with_others(
    caplog: pytest.LogCaptureFixture,
) -> None:
    first = processor(AnomalySettings())
    feed(first, 0, 50)
    keys = checkpoint(first)
    same = processor(AnomalySettings())
    same.restore(keys, None)
    assert same.anomaly[MACHINE].count == 50  # resumed

    caplog.set_level(logging.WARNING, logger="streams.pipeline")
    changed = processor(AnomalySettings(warmup_hours=24))
    changed.restore(keys, None)
    assert MACHINE not in changed.anomaly  # no stale model: a fresh one at the next reading
    assert "the anomaly settings changed since its checkpoint" in caplog.text
    feed(changed, 50, 1)
    assert changed.anomaly[MACHINE].count == 1 and changed.anomaly[MACHINE].settings.warmup_hours == 24


def test_an_unreadable_checkpoint_or_a_broken_state_does_not_stop_the_job(
    caplog: pytest.LogCaptureFixture,
) -> None:
    first = processor(AnomalySettings())
    feed(first, 0, 50)
    keys = checkpoint(first)
    caplog.set_level(logging.WARNING, logger="streams.pipeline")

    unreadable = {k: {**v, "anomaly": {"kind": "MachineMonitor", "version": 99}} for k, v in keys.items()}
    proc = processor(AnomalySettings())
    proc.restore(unreadable, None)
    assert "its anomaly checkpoint is unreadable" in caplog.text
    feed(proc, 50, 1)  # scored by a fresh monitor
    assert proc.anomaly[MACHINE].count == 1

    broken = {k: {**v, "anomaly": {**v["anomaly"]}} for k, v in keys.items()}  # restores, fails in update
    for v in broken.values():
        v["anomaly"]["windows"] = {"temperature": {**v["anomaly"]["windows"]["temperature"], "buf": []}}
    proc = processor(AnomalySettings())
    proc.restore(broken, None)
    feed(proc, 50, 1)
    assert "its anomaly monitor failed; its models start afresh" in caplog.text
    assert proc.anomaly[MACHINE].count == 1
