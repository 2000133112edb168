"""A real Faust worker forgets a machine that stopped reporting (MILLSTREAM_STREAM_STATE_TTL_MS): its
keys are deleted from the compacted changelog (tombstones) and its metric series are removed, while
the machine that goes on reporting keeps its state."""

from __future__ import annotations

import time
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition

from infra.pipeline import LocalPipeline, PipelineOptions
from infra.procs import wait_until
from schemas.serde import Serde

pytestmark = pytest.mark.integration

TTL_MS = 20_000
CHANGELOG = "millstream-windows-window-state-changelog"


def reading(machine: str, ts: int, seq: int) -> dict[str, Any]:
    return {
        "plant": "p1", "line": "l1", "machine_id": machine, "sensor": "temperature", "unit": "Cel",
        "event_time": ts, "value": 50.0 + seq % 5, "quality": "GOOD", "gateway_id": "gw", "seq": seq,
        "lot_id": None,
    }  # fmt: skip


def latest(pipe: LocalPipeline) -> dict[bytes, bytes | None]:
    """The changelog as compaction leaves it: the last value of each key (None: deleted)."""
    c = Consumer({**pipe.kafka.librdkafka(), "group.id": "ttl-inspect", "enable.auto.commit": False})
    try:
        _, hi = c.get_watermark_offsets(TopicPartition(CHANGELOG, 0), timeout=10)
        c.assign([TopicPartition(CHANGELOG, 0, 0)])
        out: dict[bytes, bytes | None] = {}
        seen = 0
        deadline = time.monotonic() + 20
        while seen < hi and time.monotonic() < deadline:
            for m in c.consume(500, 0.5):
                key, offset = m.key(), m.offset()
                if not m.error() and key is not None and offset is not None:
                    out[key] = m.value()
                    seen = offset + 1
        return out
    finally:
        c.close()


def machines(state: dict[bytes, bytes | None]) -> set[str]:
    names = set()
    for key, value in state.items():
        name = key.decode().split("\x1e", 1)[1]
        if value is not None and name != "__meta__":
            names.add(name.removeprefix("__anomaly__\x1f").split("\x1f", 1)[0])
    return names


def alive(pipe: LocalPipeline) -> bool:
    pipe.check_alive()  # raises with the worker's log when it died
    return True


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    opts = PipelineOptions(
        data_dir=tmp_path_factory.mktemp("ttl"), window="tumbling:1000ms", out_of_orderness_ms=100,
        allowed_lateness_ms=300, idle_timeout_ms=0, partitions=1,
        extra_env={"MILLSTREAM_STREAM_STATE_TTL_MS": str(TTL_MS), "MILLSTREAM_SPC_PHASE1_COUNT": "5"},
    )  # fmt: skip
    t0 = (int(time.time() * 1000) // 1000) * 1000 - 600_000
    enc = Serde().encoder("Reading", "readings")
    with LocalPipeline(opts) as pipe:
        pipe.start_stack()
        producer = Producer({**pipe.kafka.librdkafka(), "acks": "all"})
        pipe.start_worker()
        records = [reading("retired", t0 + 1000 * s, s) for s in range(3)]
        records += [reading("live", t0 + 1000 * s, s) for s in range(3)]
        for r in records:
            producer.produce(pipe.topics.topic_readings, enc(r), key=r["machine_id"].encode())
        producer.flush(30)
        wait_until(lambda: alive(pipe) and machines(latest(pipe)) == {"retired", "live"},
                   90, "both machines in the changelog", 1.0)  # fmt: skip
        before = urllib.request.urlopen(f"http://127.0.0.1:{pipe.ports['windows']}/metrics", timeout=5)  # noqa: S310
        before_text = before.read().decode()
        for s in range(3, 3 + 2 * TTL_MS // 1000):
            r = reading("live", t0 + 1000 * s, s)
            producer.produce(pipe.topics.topic_readings, enc(r), key=b"live")
        producer.flush(30)
        wait_until(lambda: alive(pipe) and machines(latest(pipe)) == {"live"},
                   90, "the retired machine's keys deleted", 1.0)  # fmt: skip
        after = urllib.request.urlopen(f"http://127.0.0.1:{pipe.ports['windows']}/metrics", timeout=5)  # noqa: S310
        yield {"before": before_text, "after": after.read().decode(), "state": latest(pipe)}


def test_the_silent_machine_is_deleted_from_the_changelog(run: dict[str, Any]) -> None:
    state = run["state"]
    assert machines(state) == {"live"}
    retired = [k for k in state if b"retired" in k]
    assert retired and all(state[k] is None for k in retired)  # tombstones: compaction drops them


def test_its_metric_series_are_removed(run: dict[str, Any]) -> None:
    assert 'machine_id="retired"' in run["before"]
    assert 'machine_id="retired"' not in run["after"]
    assert 'machine_id="live"' in run["after"]
