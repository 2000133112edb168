"""Backpressure of the sink's consumer: pause the assigned partitions while ClickHouse is behind.

The consumer thread keeps polling while a batch is written on the writer thread (so group
membership and rebalances keep working), but it stops *fetching* by pausing its partitions when

* the backlog (rows buffered plus rows being inserted) is above the high-water mark, or
* an insert is being retried (ClickHouse is failing: buffering more only grows memory).

It resumes once no insert is retrying and the backlog is down to the low-water mark (half the
high-water mark). Paused partitions keep their position: nothing is skipped or lost, the broker
simply holds the records until the sink asks again. Partitions assigned while paused are paused too.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING

from sinks.sink_metrics import SINK_PAUSED, SINK_PAUSES

if TYPE_CHECKING:
    from confluent_kafka import Consumer, TopicPartition

logger = logging.getLogger(__name__)

BACKLOG = "backlog"
RETRYING = "retrying"


@dataclass
class FlowStats:
    pauses: int = 0
    resumes: int = 0


class FlowControl:
    """Pause/resume decisions and their application to a consumer (consumer thread only)."""

    def __init__(self, high_water_rows: int) -> None:
        self.high = max(1, high_water_rows)
        self.low = self.high // 2
        self.reason: str | None = None  # why consumption is paused; None = consuming
        self.stats = FlowStats()
        self._paused: set[tuple[str, int]] = set()

    @property
    def paused(self) -> bool:
        return self.reason is not None

    def update(self, consumer: Consumer, backlog_rows: int, retrying: bool) -> None:
        """Pause, resume or extend the pause to newly assigned partitions."""
        if not self.paused:
            reason = RETRYING if retrying else BACKLOG if backlog_rows > self.high else None
            if reason is not None:
                self.reason = reason
                self.stats.pauses += 1
                SINK_PAUSES.labels(reason).inc()
                SINK_PAUSED.set(1)
                logger.warning(
                    "pausing consumption (%s): %d rows behind, high-water mark %d",
                    reason,
                    backlog_rows,
                    self.high,
                )
                self._pause_assigned(consumer)
            return
        if not retrying and backlog_rows <= self.low:
            self._resume(consumer)
            logger.info("resuming consumption: %d rows behind", backlog_rows)
            return
        self._pause_assigned(consumer)  # partitions assigned since the pause

    def _pause_assigned(self, consumer: Consumer) -> None:
        assignment = consumer.assignment()
        new = [tp for tp in assignment if (tp.topic, tp.partition) not in self._paused]
        if new:
            consumer.pause(new)
            self._paused.update((tp.topic, tp.partition) for tp in new)

    def _resume(self, consumer: Consumer) -> None:
        from confluent_kafka import TopicPartition

        owned = {(tp.topic, tp.partition) for tp in consumer.assignment()}
        back = [TopicPartition(t, p) for t, p in sorted(self._paused & owned)]
        if back:
            consumer.resume(back)
        self._paused.clear()
        self.reason = None
        self.stats.resumes += 1
        SINK_PAUSED.set(0)

    def closed(self) -> None:
        """The consumer is gone: nothing is paused any more."""
        self._paused.clear()
        self.reason = None
        SINK_PAUSED.set(0)

    def forget(self, partitions: list[TopicPartition]) -> None:
        """Partitions revoked or lost: they are no longer ours to resume."""
        for tp in partitions:
            self._paused.discard((tp.topic, tp.partition))
