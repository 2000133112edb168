"""The Faust worker's catch-up read: the records of one partition between two offsets, from Kafka.

Real broker. The end-to-end use (a restarted worker reading what its restored state has not seen) is
in tests/e2e/test_faust_restart.py; here the read itself, at its edges.
"""

from __future__ import annotations

import logging

import pytest
from confluent_kafka import Producer

from schemas.config import KafkaSettings, TopicSettings
from streams.faust_app import read_range

pytestmark = pytest.mark.integration


def _produce(kafka: KafkaSettings, topic: str, partition: int, n: int) -> None:
    producer = Producer({**kafka.librdkafka(), "linger.ms": 50})
    for i in range(n):
        producer.produce(topic, value=b"v%d" % i, key=b"k%d" % i, partition=partition)
    producer.flush(30)


def test_reads_exactly_the_offsets_asked_for(kafka: KafkaSettings, topics: TopicSettings) -> None:
    _produce(kafka, topics.topic_readings, 1, 30)
    got = read_range(kafka, topics.topic_readings, 1, 5, 12)
    assert got == [(i, b"k%d" % i, b"v%d" % i) for i in range(5, 12)]
    assert read_range(kafka, topics.topic_readings, 1, 29, 30) == [(29, b"k29", b"v29")]


def test_a_range_past_the_end_returns_what_exists_and_says_so(
    kafka: KafkaSettings, topics: TopicSettings, caplog: pytest.LogCaptureFixture
) -> None:
    _produce(kafka, topics.topic_readings, 0, 4)
    with caplog.at_level(logging.ERROR, logger="streams.faust_app"):
        got = read_range(kafka, topics.topic_readings, 0, 2, 9, timeout_s=3.0)
    assert [o for o, _, _ in got] == [2, 3]
    assert "read 2 of the records in offsets 2..8" in caplog.text
