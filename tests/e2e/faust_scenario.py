"""What the Faust e2e tests that compare a disturbed worker with an uninterrupted one share: readings
of machines whose temperature mean shifts (anomaly events), one uninterrupted processor per partition
over the same records, and the worker's state changelog as it stands."""

from __future__ import annotations

import json
import random
from collections.abc import Sequence
from typing import Any

from confluent_kafka import Consumer, TopicPartition

from infra.pipeline import LocalPipeline
from schemas.serde import Serde
from streams.anomaly.config import AnomalySettings
from streams.config import StreamSettings
from streams.pipeline import PartitionProcessor
from streams.spc.config import SpcSettings

GROUP = "millstream-windows"  # the app id's consumer group (and the changelog topic's prefix)


def shifted_readings(
    t0: int,
    machines: Sequence[str],
    sensors: Sequence[str],
    steps: int,
    shifts: dict[str, int],
    partitions: int,
) -> list[tuple[int, dict[str, Any]]]:
    """(partition, reading) in produce order: machine n on partition n % ``partitions``, one reading
    per sensor every 200 ms, temperature 12 higher from step ``shifts[machine]`` on; a heartbeat per
    machine at the end closes its windows."""
    rng = random.Random(20261123)
    out = []
    for i in range(steps):
        for n, m in enumerate(machines):
            for k, s in enumerate(sensors):
                shift = 12.0 if s == "temperature" and i >= shifts[m] else 0.0
                out.append((n % partitions, {
                    "plant": "p1", "line": "l1", "machine_id": m, "sensor": s, "unit": "u",
                    "event_time": t0 + i * 200 + k * 97 + rng.randrange(0, 50),
                    "value": round(rng.gauss(50 + shift, 2), 6), "quality": "GOOD", "gateway_id": "gw",
                    "seq": i, "lot_id": None,
                }))  # fmt: skip
    end = t0 + steps * 200 + 10_000
    out += [(n % partitions, {**out[-1][1], "machine_id": m, "sensor": "heartbeat", "event_time": end})
            for n, m in enumerate(machines)]  # fmt: skip
    return out


def reference_processors(
    records: Sequence[tuple[int, bytes, bytes]], pipe: LocalPipeline, partitions: int
) -> list[tuple[PartitionProcessor, list[Any]]]:
    """One uninterrupted processor per partition over the same records, in partition order (the
    operator library run in this process, with the workers' settings), with the outputs it made."""
    env = pipe.env()
    settings = StreamSettings(
        window=env["MILLSTREAM_STREAM_WINDOW"],
        out_of_orderness_ms=int(env["MILLSTREAM_STREAM_OUT_OF_ORDERNESS_MS"]),
        allowed_lateness_ms=int(env["MILLSTREAM_STREAM_ALLOWED_LATENESS_MS"]),
        idle_timeout_ms=0,
    )
    serde = Serde()
    done = []
    for p in range(partitions):
        proc = PartitionProcessor(
            settings, serde, p, pipe.topics.topic_readings, SpcSettings(), AnomalySettings()
        )
        mine = [(key, value) for part, key, value in records if part == p]
        done.append((proc, [proc.handle(value, offset, key) for offset, (key, value) in enumerate(mine)]))
    return done


def changelog_state(pipe: LocalPipeline) -> dict[str, dict[str, Any]]:
    """The worker's state changelog: the last value of every key (``<partition><RS><name>``)."""
    c = Consumer({**pipe.kafka.librdkafka(), "group.id": "millstream-inspect", "enable.auto.commit": False})
    try:
        names = [t for t in c.list_topics(timeout=10).topics if t.startswith(GROUP) and "changelog" in t]
        parts = [
            TopicPartition(t, p, 0) for t in names for p in c.list_topics(t, timeout=10).topics[t].partitions
        ]
        c.assign(parts)
        state: dict[str, dict[str, Any]] = {}
        while msgs := c.consume(500, 1.0):
            for m in msgs:
                if m.error():
                    continue
                key, value = (m.key() or b"").decode(), m.value()
                if value:
                    state[key] = json.loads(value)
                else:
                    state.pop(key, None)
        return state
    finally:
        c.close()
