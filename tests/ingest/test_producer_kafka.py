"""The producer core against the real broker: nothing lost, keyed per machine, in order, accounted."""

from __future__ import annotations

import uuid
from collections import defaultdict
from typing import Any

import pytest
from confluent_kafka import OFFSET_BEGINNING, TIMESTAMP_CREATE_TIME, Consumer, TopicPartition

from infra.procs import free_port
from ingest.config import ProducerSettings, SimulatorSettings
from ingest.exceptions import ProduceError
from ingest.producer import GatewayProducer
from ingest.simulator import PlantSimulator, run_simulation
from schemas.config import KafkaSettings, TopicSettings
from schemas.serde import Serde, explode_scan


def consume_all(kafka: KafkaSettings, topic: str, expected: int, timeout_s: float = 60.0) -> list[Any]:
    """Every message of ``topic`` (stops at ``expected`` or after ``timeout_s`` without reaching it)."""
    import time

    c = Consumer(
        {
            **kafka.librdkafka(),
            "group.id": f"t-{uuid.uuid4().hex[:6]}",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        }
    )
    partitions = c.list_topics(topic, timeout=10).topics[topic].partitions
    c.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in partitions])  # no group rebalance wait
    out: list[Any] = []
    deadline = time.monotonic() + timeout_s
    try:
        while len(out) < expected and time.monotonic() < deadline:
            for msg in c.consume(5000, 0.5):
                if msg.error():
                    raise AssertionError(str(msg.error()))
                out.append(msg)
        # Anything beyond what was expected would be a duplicate: look a little longer.
        out.extend(m for m in c.consume(5000, 1.0) if not m.error())
    finally:
        c.close()
    return out


@pytest.mark.integration
@pytest.mark.parametrize("reports", ["errors", "all"])
def test_simulated_scans_arrive_complete_keyed_and_in_order(
    kafka: KafkaSettings, topics: TopicSettings, reports: str
) -> None:
    sim = PlantSimulator(
        SimulatorSettings(
            machines=7,
            rate_hz=5.0,
            seed=3,
            start_ms=1_700_000_000_000,
            max_scans=2000,
            fault_probability=0.01,
        )
    )
    settings = ProducerSettings(delivery_reports=reports, linger_ms=5)
    with GatewayProducer(kafka, topics.topic_readings, settings) as producer:
        result = run_simulation(sim, producer)
    report = producer.report()
    assert result.scans == 2000 and result.values == 2000 * 8
    assert report.produced == report.acknowledged == 2000
    assert report.failed == 0 and report.in_flight == 0 and report.values == 16000

    messages = consume_all(kafka, topics.topic_readings, 2000)
    assert len(messages) == 2000
    serde = Serde()
    machine_ids = {m.machine_id for m in sim.machines}
    partition_of: dict[str, int] = {}
    last_seq: dict[str, int] = defaultdict(lambda: -1)
    by_partition: dict[int, list[Any]] = defaultdict(list)
    for msg in messages:
        by_partition[msg.partition()].append(msg)
    readings = 0
    for partition, msgs in by_partition.items():
        msgs.sort(key=lambda m: m.offset())
        for msg in msgs:
            decoded = serde.decode(msg.value())
            assert decoded.name == "millstream.MachineScan"
            rec = decoded.record
            key = msg.key().decode()
            assert key == rec["machine_id"] and key in machine_ids
            assert partition_of.setdefault(key, partition) == partition, "one machine, one partition"
            assert rec["seq"] > last_seq[key], "per-machine seq strictly increasing in partition order"
            last_seq[key] = rec["seq"]
            assert [v["sensor"] for v in rec["values"]] == [s.name for s in sim.sensors]
            assert msg.timestamp() == (TIMESTAMP_CREATE_TIME, rec["event_time"]), "record time = event time"
            readings += len(explode_scan(rec))
    assert readings == 16000
    assert set(last_seq) == machine_ids


@pytest.mark.integration
def test_single_readings_and_scan_dicts(kafka: KafkaSettings, topics: TopicSettings) -> None:
    reading = {
        "plant": "p1",
        "line": "l1",
        "machine_id": "m042",
        "sensor": "temperature",
        "unit": "Cel",
        "event_time": 1_700_000_000_000,
        "value": 61.5,
        "quality": "GOOD",
        "gateway_id": "opc-1",
        "seq": 1,
        "lot_id": None,
    }
    scan = {
        "plant": "p1",
        "line": "l1",
        "machine_id": "m043",
        "event_time": 1_700_000_000_500,
        "gateway_id": "opc-1",
        "seq": 2,
        "lot_id": "L1",
        "values": [{"sensor": "pressure", "unit": "bar", "value": 6.1, "quality": "UNCERTAIN"}],
    }
    with GatewayProducer(kafka, topics.topic_readings) as producer:
        producer.send_record(reading)
        producer.send_record(scan)
    assert producer.report().acknowledged == 2 and producer.report().values == 2
    serde = Serde()
    messages = consume_all(kafka, topics.topic_readings, 2)
    got = {m.key().decode(): serde.decode(m.value()) for m in messages}
    assert sorted(m.timestamp()[1] for m in messages) == [reading["event_time"], scan["event_time"]]
    assert got["m042"].name == "millstream.Reading" and got["m042"].record == reading
    assert got["m043"].name == "millstream.MachineScan" and got["m043"].record == scan
    with pytest.raises(ProduceError, match="closed"):
        producer.send_record(reading)


@pytest.mark.integration
def test_full_queue_waits_instead_of_dropping(kafka: KafkaSettings, topics: TopicSettings) -> None:
    settings = ProducerSettings(queue_max_messages=20, linger_ms=1, poll_every=100_000)
    with GatewayProducer(kafka, topics.topic_readings, settings) as producer:
        m = producer.machine("p1", "l1", "m001", "g", [("temperature", "Cel")])
        for i in range(3000):
            producer.send_scan(m, 1_700_000_000_000 + i, i + 1, None, [float(i)])
    report = producer.report()
    assert report.backpressure_waits > 0
    assert report.produced == report.acknowledged == 3000 and report.failed == 0
    seqs = [
        Serde().decode(msg.value()).record["seq"] for msg in consume_all(kafka, topics.topic_readings, 3000)
    ]
    assert seqs == list(range(1, 3001))  # one key, one partition: exactly the order sent


@pytest.mark.integration
def test_rate_limit_throttles(kafka: KafkaSettings, topics: TopicSettings) -> None:
    # 400 values at 1000 values/s with a 100-value bucket cannot pass without waiting.
    settings = ProducerSettings(max_values_per_s=1000.0, burst_values=100)
    with GatewayProducer(kafka, topics.topic_readings, settings) as producer:
        m = producer.machine("p1", "l1", "m001", "g", [("a", "1"), ("b", "1"), ("c", "1"), ("d", "1")])
        for i in range(100):
            producer.send_scan(m, 1_700_000_000_000 + i, i + 1, None, [1.0, 2.0, 3.0, 4.0])
    report = producer.report()
    assert report.throttled_s > 0 and report.acknowledged == 100


@pytest.mark.parametrize("reports", ["errors", "all"])
def test_undeliverable_messages_are_counted_failed_with_a_reason(reports: str) -> None:
    """A real librdkafka producer pointed at a port nobody listens on: every message fails, none vanish."""
    kafka = KafkaSettings(kafka_bootstrap=f"127.0.0.1:{free_port()}")
    settings = ProducerSettings(
        delivery_timeout_ms=1500,
        delivery_reports=reports,
        flush_timeout_s=10,
    )
    producer = GatewayProducer(kafka, "nowhere", settings)
    m = producer.machine("p1", "l1", "m001", "g", [("temperature", "Cel")])
    for i in range(50):
        producer.send_scan(m, 1_700_000_000_000 + i, i + 1, None, [20.0])
    report = producer.close()
    assert report.produced == 50 and report.failed == 50 and report.acknowledged == 0
    assert report.in_flight == 0
    assert sum(report.errors.values()) == 50 and "_MSG_TIMED_OUT" in report.errors
