"""The restarted Faust worker's catch-up read never goes on past records it could not read.

Real broker. After a crash the worker reads the records its restored state has not seen from Kafka
directly (streams.faust_app.catch_up). When that read cannot reach the end in time (broker slow or
unreachable), skipping the rest would lose them for good: the group's committed offset is already
past them. The strict read the worker uses raises instead, so the agent stops on this record and the
next record retries the read from the same offset.
"""

from __future__ import annotations

import pytest
from confluent_kafka import Producer

from schemas.config import KafkaSettings, TopicSettings
from streams.exceptions import StreamError
from streams.faust_app import read_range

pytestmark = pytest.mark.integration


def test_strict_read_raises_instead_of_skipping(kafka: KafkaSettings, topics: TopicSettings) -> None:
    producer = Producer(kafka.librdkafka())
    for i in range(4):
        producer.produce(topics.topic_readings, value=b"v%d" % i, key=b"k", partition=0)
    producer.flush(30)
    # offsets 2..8 asked for, only 2 and 3 exist: the read cannot reach the end
    with pytest.raises(StreamError, match=r"read 2 of the records in offsets 2\.\.8"):
        read_range(kafka, topics.topic_readings, 0, 2, 9, timeout_s=2.0, strict=True)
    # a range that exists is read completely, strict or not
    assert read_range(kafka, topics.topic_readings, 0, 1, 4, strict=True) == [
        (i, b"k", b"v%d" % i) for i in range(1, 4)
    ]
