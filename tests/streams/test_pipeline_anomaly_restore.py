"""A machine's anomaly checkpoint is restored only into the settings it was written with: changed
MILLSTREAM_ANOMALY_* settings take effect (the models start afresh, with a warning), and an
unreadable checkpoint or a state the monitor cannot go on from does not crash the stream job."""

from __future__ import annotations

import json
import logging
import time
from typing import Any

import pytest

from schemas.config import TopicSettings
from schemas.serde import Serde
from streams.anomaly.config import AnomalySettings
from streams.anomaly.state import pack, unpack
from streams.config import StreamSettings
from streams.pipeline import ANOMALY_PACKED, ANOMALY_PREFIX, PartitionProcessor

TOPIC = TopicSettings().topic_readings
MACHINE = "m-restore"


def processor(anomaly: AnomalySettings, max_bytes: int | None = None) -> PartitionProcessor:
    return PartitionProcessor(
        StreamSettings(), Serde(), 0, TOPIC, anomaly=anomaly, anomaly_checkpoint_ms=0,
        anomaly_state_max_bytes=max_bytes,
    )  # fmt: skip


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

    for damaged in (pack({"kind": "MachineMonitor", "version": 99}), "not packed at all", pack({})[:40]):
        unreadable = {k: {**v, ANOMALY_PACKED: damaged} for k, v in keys.items()}
        proc = processor(AnomalySettings())
        caplog.clear()
        proc.restore(unreadable, None)
        assert "its anomaly checkpoint is unreadable" in caplog.text
        feed(proc, 50, 1)  # scored by a fresh monitor
        assert proc.anomaly[MACHINE].count == 1

    broken = {}  # restores, fails in update
    for k, v in keys.items():
        state = unpack(v[ANOMALY_PACKED])
        state["windows"] = {"temperature": {**state["windows"]["temperature"], "buf": []}}
        broken[k] = {**v, ANOMALY_PACKED: pack(state)}
    proc = processor(AnomalySettings())
    proc.restore(broken, None)
    feed(proc, 50, 1)
    assert "its anomaly monitor failed; its models start afresh" in caplog.text
    assert proc.anomaly[MACHINE].count == 1


def test_checkpoints_are_packed_and_those_written_before_still_restore() -> None:
    first = processor(AnomalySettings())
    feed(first, 0, 50)
    keys = checkpoint(first)
    (value,) = keys.values()
    state = first.anomaly[MACHINE].snapshot()
    plain = len(json.dumps(state, separators=(",", ":")))
    assert unpack(value[ANOMALY_PACKED]) == json.loads(json.dumps(state))
    assert len(value[ANOMALY_PACKED]) < plain / 2  # the changelog carries less than half
    # a checkpoint in the earlier form (the snapshot as a plain object) resumes as before
    earlier = {k: {"anomaly": state, "last_ts": v["last_ts"]} for k, v in keys.items()}
    proc = processor(AnomalySettings())
    proc.restore(earlier, None)
    assert proc.anomaly[MACHINE].count == 50


def test_a_checkpoint_too_large_for_the_state_store_is_skipped_with_one_error(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Faust's changelog producer refuses records over 1,000,000 bytes, and a refused state write would
    crash the agent on every later record: a machine whose checkpoint exceeds the limit (one with
    hundreds of sensors) is not checkpointed; the job goes on and says so once."""
    caplog.set_level(logging.ERROR, logger="streams.pipeline")
    proc = processor(AnomalySettings(), max_bytes=100)
    feed(proc, 0, 20)
    assert checkpoint(proc) == {}
    feed(proc, 20, 20)
    assert checkpoint(proc) == {}
    errors = [r for r in caplog.records if "anomaly checkpoint is" in r.getMessage()]
    assert len(errors) == 1 and MACHINE in errors[0].getMessage()
    assert proc.anomaly[MACHINE].count == 40  # scoring went on
    roomy = processor(AnomalySettings(), max_bytes=1_000_000)
    feed(roomy, 0, 20)
    assert list(checkpoint(roomy)) == [ANOMALY_PREFIX + MACHINE]
