"""Domain metrics: the cardinality guard bounds each metric's label sets per process, and a worker
that hands a partition over removes that partition's machines' series."""

from __future__ import annotations

import time
import uuid

from prometheus_client import REGISTRY

from schemas.config import TopicSettings
from schemas.serde import Serde
from sinks.domain_metrics import CardinalityGuard, DomainMetrics
from streams.config import StreamSettings
from streams.pipeline import PartitionProcessor


def last_reading(machine: str) -> float | None:
    return REGISTRY.get_sample_value(
        "millstream_last_reading_timestamp_seconds", {"plant": "p1", "line": "l1", "machine_id": machine}
    )


def dropped(metric: str) -> float:
    return REGISTRY.get_sample_value("millstream_metrics_series_dropped_total", {"metric": metric}) or 0.0


def test_one_guard_bounds_the_series_of_every_partition_of_a_process() -> None:
    run = uuid.uuid4().hex[:8]
    domain = DomainMetrics(CardinalityGuard(max_series=2))
    topic = TopicSettings().topic_readings
    enc = Serde().encoder("Reading", topic)
    before = dropped("millstream_last_reading_timestamp_seconds")
    machines = [f"{run}-m{p}" for p in range(3)]
    now = int(time.time() * 1000)
    for p, machine in enumerate(machines):  # one machine per partition, one processor per partition
        proc = PartitionProcessor(StreamSettings(), Serde(), p, topic, domain=domain)
        reading = {
            "plant": "p1", "line": "l1", "machine_id": machine, "sensor": "temperature", "unit": "Cel",
            "event_time": now, "value": 20.0, "quality": "GOOD", "gateway_id": "gw", "seq": 1, "lot_id": None,
        }  # fmt: skip
        proc.handle(enc(reading), 0, machine.encode())
        assert proc.machine_ids() == {machine}
    exported = [m for m in machines if last_reading(m) is not None]
    assert exported == machines[:2]  # the process's limit, not 2 per partition
    assert dropped("millstream_last_reading_timestamp_seconds") == before + 1

    domain.forget({machines[0]})  # its partition went to another worker
    assert last_reading(machines[0]) is None
    domain.reading("p1", "l1", machines[2], now + 1000)  # the freed place goes to the next machine
    assert last_reading(machines[2]) == (now + 1000) / 1000
