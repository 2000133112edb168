"""Kafka side of ``millstream replay`` (and of the engine benchmark): the broker, fresh topics,
producing with exact end offsets, and reading every committed output record back."""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from schemas.config import KafkaSettings, TopicSettings
from streams.replay import ReplayError

logger = logging.getLogger(__name__)


@dataclass
class Produced:
    """What the broker acknowledged: per partition, the offset after the last record."""

    end_offsets: dict[int, int] = field(default_factory=dict)
    max_ts: dict[int, int] = field(default_factory=dict)  # newest Kafka timestamp per partition
    count: int = 0

    def add(self, partition: int, offset: int, ts: int) -> None:
        self.end_offsets[partition] = max(self.end_offsets.get(partition, 0), offset + 1)
        self.max_ts[partition] = max(self.max_ts.get(partition, ts), ts)
        self.count += 1


@contextmanager
def broker(workdir: Path) -> Iterator[KafkaSettings]:
    """The configured broker, or a local one (stopped afterwards) when MILLSTREAM_KAFKA_BOOTSTRAP is unset."""
    import os

    if os.environ.get("MILLSTREAM_KAFKA_BOOTSTRAP"):
        yield KafkaSettings()
        return
    from infra.stack import LocalBroker

    local = LocalBroker(workdir).start()
    try:
        yield KafkaSettings(kafka_bootstrap=local.bootstrap)
    finally:
        local.stop()


def fresh_topics(kafka: KafkaSettings, base: TopicSettings | None = None) -> TopicSettings:
    """A new set of pipeline topics with unique names."""
    from infra.stack import create_topics

    base = base or TopicSettings()
    suffix = f"replay-{uuid.uuid4().hex[:10]}"
    names = {
        name: f"{value}.{suffix}"
        for name, value in base
        if name.startswith("topic_") and isinstance(value, str)
    }
    topics = base.model_copy(update=names)
    create_topics(kafka, topics)
    return topics


def delete_topics(kafka: KafkaSettings, topics: TopicSettings, extra: Iterable[str] = ()) -> None:
    from confluent_kafka.admin import AdminClient

    try:
        admin = AdminClient(dict(kafka.librdkafka()))
        for fut in admin.delete_topics([*topics.all_topics(), *extra], operation_timeout=10).values():
            fut.result(15)
    except Exception as exc:  # cleanup is best effort
        logger.warning("could not delete the replay topics: %s", exc)


def produce(
    kafka: KafkaSettings,
    topic: str,
    records: Iterable[dict[str, Any]],
    produced: Produced,
    on_progress: Any = None,
    partition: int | None = None,
) -> Produced:
    """Produce Reading records (key machine id, timestamp event time); waits for every acknowledgement."""
    from confluent_kafka import Producer

    from schemas.serde import Serde

    encode = Serde().encoder("Reading", topic)
    errors: list[str] = []

    def delivered(err: Any, msg: Any) -> None:
        if err is not None:
            errors.append(str(err))
        else:
            produced.add(msg.partition(), msg.offset(), msg.timestamp()[1])
            if on_progress is not None:
                on_progress(1)

    producer = Producer({**kafka.librdkafka(), "enable.idempotence": True, "acks": "all", "linger.ms": 20})
    extra: dict[str, Any] = {} if partition is None else {"partition": partition}
    for r in records:
        while True:
            try:
                producer.produce(
                    topic,
                    encode(r),
                    key=r["machine_id"].encode(),
                    timestamp=int(r["event_time"]),
                    on_delivery=delivered,
                    **extra,
                )
                break
            except BufferError:
                producer.poll(0.1)
        producer.poll(0)
    if producer.flush(60) > 0 or errors:
        msg = f"could not produce the replay input to {topic}: {errors[:3] or 'flush timed out'}"
        raise ReplayError(msg)
    return produced


def collect(
    kafka: KafkaSettings,
    topics: list[str],
    quiet_s: float = 2.0,
    timeout: float = 120.0,
    positions: dict[tuple[str, int], int] | None = None,
    isolation: str = "read_committed",
) -> dict[str, list[dict[str, Any]]]:
    """Every committed record of ``topics``, decoded; stops after ``quiet_s`` without a new record once
    every partition has been read up to the offset the broker reports as its end. ``positions`` gets
    the offset after the last record read per (topic, partition)."""
    from confluent_kafka import Consumer, TopicPartition

    from schemas.serde import Serde

    serde = Serde()
    consumer = Consumer(
        {
            **kafka.librdkafka(),
            "group.id": f"millstream-replay-reader-{uuid.uuid4().hex[:8]}",
            "enable.auto.commit": False,
            "isolation.level": isolation,
            "fetch.wait.max.ms": 100,
        }
    )
    out: dict[str, list[dict[str, Any]]] = {t: [] for t in topics}
    try:
        md = consumer.list_topics(timeout=10).topics
        tps = [TopicPartition(t, p, 0) for t in topics for p in md[t].partitions]
        consumer.assign(tps)
        ends = {(tp.topic, tp.partition): consumer.get_watermark_offsets(tp, timeout=10)[1] for tp in tps}
        pos: dict[tuple[str, int], int] = positions if positions is not None else {}
        deadline = time.monotonic() + timeout
        last = time.monotonic()
        while time.monotonic() < deadline:
            msgs = consumer.consume(1000, 0.2)
            for m in msgs:
                if m.error():
                    continue
                topic, partition, offset = str(m.topic()), int(m.partition() or 0), int(m.offset() or 0)
                out[topic].append(serde.decode(m.value()).record)
                pos[(topic, partition)] = offset + 1
                last = time.monotonic()
            reached = all(pos.get(k, 0) >= end for k, end in ends.items() if end > 0)
            if not msgs and reached and time.monotonic() - last >= quiet_s:
                break
    finally:
        consumer.close()
    return out
