"""Start-up checks against the readings topic's partition count.

Faust: the readings topic and the state's changelog topic are co-partitioned.

The Faust job keeps the state of readings partition ``p`` (the windows, SPC monitors and anomaly
models of the machines that land there) in partition ``p`` of its changelog topic, under keys that
start with ``p``. Faust only co-assigns topics with the same partition count: with more readings
partitions than changelog partitions a worker dies on the first record of a new partition (aiokafka's
``AssertionError: Unrecognized partition``), and with several workers a readings partition and its
state partition can go to different workers. So the worker refuses to start unless the two counts
are equal, and names the procedure (docs/scaling-out.md, "Adding partitions").

Flink (local): a parallelism above the partition count leaves source subtasks without a partition
(see :func:`check_source_parallelism`).
"""

from __future__ import annotations

import logging

from schemas.config import KafkaSettings, TopicSettings
from streams.exceptions import StreamError

logger = logging.getLogger(__name__)

PROCEDURE = 'docs/scaling-out.md, "Adding partitions"'


def topic_partitions(kafka: KafkaSettings, names: list[str], timeout_s: float = 10.0) -> dict[str, int]:
    """Partition count of each topic in ``names`` that exists (missing topics are left out)."""
    from confluent_kafka.admin import AdminClient

    admin = AdminClient({**kafka.librdkafka()})
    try:
        listed = admin.list_topics(timeout=timeout_s).topics
    except Exception as exc:
        msg = f"cannot list the topics on {kafka.kafka_bootstrap}: {exc}"
        raise StreamError(msg) from exc
    return {n: len(listed[n].partitions) for n in names if n in listed and listed[n].error is None}


def check_copartitioned(kafka: KafkaSettings, topics: TopicSettings, changelog: str) -> None:
    """Raise :class:`StreamError` unless ``changelog`` (or, before it exists, the count it will be
    created with: MILLSTREAM_TOPIC_PARTITIONS) has as many partitions as the readings topic."""
    readings = topics.topic_readings
    found = topic_partitions(kafka, [readings, changelog])
    if readings not in found:
        return  # no readings topic yet: nothing to compare
    n = found[readings]
    if changelog in found:
        m = found[changelog]
        if m == n:
            return
        msg = (
            f"the readings topic {readings} has {n} partitions but the job's state topic {changelog} has "
            f"{m}: the job keeps each readings partition's state in the same partition of its state "
            "topic, so it does not start. Partitions were added to one of them; adding them moves "
            "machines to other partitions, whose windows and SPC/anomaly state stay behind. "
            f"Follow {PROCEDURE}"
        )
        raise StreamError(msg)
    if topics.topic_partitions != n:
        msg = (
            f"the readings topic {readings} has {n} partitions but MILLSTREAM_TOPIC_PARTITIONS is "
            f"{topics.topic_partitions}: the job's state topic {changelog} would be created with "
            f"{topics.topic_partitions}. Set MILLSTREAM_TOPIC_PARTITIONS={n}"
        )
        raise StreamError(msg)


def check_source_parallelism(
    kafka: KafkaSettings, topics: TopicSettings, parallelism: int, source_idle_timeout_ms: int
) -> None:
    """Raise :class:`StreamError` when Flink source subtasks without a readings partition would hold
    the watermark back for ever (no source idle timeout); warn when they hold it back for a while.

    A subtask beyond the partition count reads nothing and has no watermark of its own; Flink's
    watermark is the minimum over subtasks, so no window closes until the source idle timeout marks
    that subtask idle (measured: the first windows came 30 s late at parallelism 4 on 3 partitions
    with the default timeout, never with 0)."""
    n = topic_partitions(kafka, [topics.topic_readings]).get(topics.topic_readings)
    if n is None or parallelism <= n:
        return
    if source_idle_timeout_ms <= 0:
        msg = (
            f"parallelism {parallelism} is more than the {n} partitions of the readings topic "
            f"{topics.topic_readings}, and MILLSTREAM_FLINK_SOURCE_IDLE_TIMEOUT_MS=0: the source subtasks "
            "without a partition would hold Flink's watermark back for ever and no window would close. "
            f"Use a parallelism of at most {n} (or add partitions, {PROCEDURE}), or a source idle timeout"
        )
        raise StreamError(msg)
    logger.warning(
        "parallelism %s is more than the %s partitions of %s: %s source subtasks read nothing, and no "
        "window closes until MILLSTREAM_FLINK_SOURCE_IDLE_TIMEOUT_MS (%s ms) has marked them idle",
        parallelism, n, topics.topic_readings, parallelism - n, source_idle_timeout_ms,
    )  # fmt: skip
