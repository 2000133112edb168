"""The local pipeline's drained-checks count exactly, whatever high watermark the broker reports.

Real broker. A worker committed inside the last record batch of a partition is not drained; the check
must say so even on a broker that reports the high watermark as the base offset of the last batch + 1
(the local broker does; Apache Kafka reports the true end).
"""

from __future__ import annotations

from pathlib import Path

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition

from infra.pipeline import LocalPipeline, PipelineOptions
from infra.stack import LocalBroker
from schemas.config import TopicSettings

pytestmark = pytest.mark.integration


def _pipeline(broker: LocalBroker, tmp_path: Path, topics: TopicSettings) -> LocalPipeline:
    pipe = LocalPipeline(PipelineOptions(data_dir=tmp_path))
    pipe.broker = broker
    pipe.topics = topics
    return pipe


def test_end_offsets_and_lag_are_exact_inside_a_multi_record_batch(
    broker: LocalBroker, tmp_path: Path, topics: TopicSettings
) -> None:
    pipe = _pipeline(broker, tmp_path, topics)
    topic = topics.topic_readings
    producer = Producer({**pipe.kafka.librdkafka(), "linger.ms": 100})
    sizes = {0: 40, 1: 1, 2: 0}  # a batch of many records, a lone record, an empty partition
    for p, n in sizes.items():
        for i in range(n):
            producer.produce(topic, b"%d" % i, partition=p)
    producer.flush(30)
    assert pipe.partition_ends(topic) == sizes
    assert pipe.end_offsets(topic) == 41

    group = "offsets-test"
    c = Consumer({**pipe.kafka.librdkafka(), "group.id": group, "enable.auto.commit": False})
    try:
        # Committed after the first record of partition 0's batch: 39 records still to go.
        c.commit(offsets=[TopicPartition(topic, 0, 1), TopicPartition(topic, 1, 1)], asynchronous=False)
    finally:
        c.close()
    assert pipe.partition_lags(group, topic) == {0: 39, 1: 0, 2: 0}
    assert pipe.group_lag(group, topic) == 39
    assert pipe.partition_lags("never-committed", topic) == sizes
