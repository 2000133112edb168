"""The forwarder's link to Kafka: one idempotent producer at a time, replaced when it cannot go on.

Some failures leave an idempotent producer unable to continue: its producer id is fenced (a broker
may answer PRODUCER_FENCED after messages timed out and librdkafka bumped the epoch), its sequence
numbers are out of step with the broker's, or librdkafka raised a fatal error. The link then marks
itself ``broken``; the forwarder keeps everything unacknowledged in the spool and calls
:meth:`KafkaLink.replace`, which closes the old producer (purging what it still held) and starts a
new one with a new producer id.
"""

from __future__ import annotations

import logging
from typing import Any

from confluent_kafka import KafkaError, KafkaException

from ingest.config import ProducerSettings
from ingest.exceptions import ProduceError
from ingest.producer import DeliveryReport, GatewayProducer
from schemas.config import KafkaSettings
from schemas.serde import Serde

logger = logging.getLogger(__name__)

BROKEN = frozenset(
    {
        KafkaError.PRODUCER_FENCED,
        KafkaError._FENCED,
        KafkaError.INVALID_PRODUCER_EPOCH,
        KafkaError.OUT_OF_ORDER_SEQUENCE_NUMBER,
        KafkaError.UNKNOWN_PRODUCER_ID,
        KafkaError.INVALID_PRODUCER_ID_MAPPING,
        KafkaError._FATAL,
    }
)


class MessageRefused(ProduceError):
    """The producer refuses this one message for good (larger than ``message.max.bytes``): retrying,
    spooling or a new producer cannot change that, and the producer itself is fine."""


class KafkaLink:
    """Sends with per-message outcomes, notices a dead broker or a broken producer. One thread."""

    def __init__(
        self,
        kafka: KafkaSettings,
        topic: str,
        settings: ProducerSettings,
        serde: Serde | None = None,
        reconnect_backoff_max_ms: int = 1000,
    ) -> None:
        extra = {"reconnect.backoff.max.ms": str(reconnect_backoff_max_ms), **settings.extra}
        self.settings = settings.model_copy(update={"delivery_reports": "all", "extra": extra})
        self._kafka, self._topic, self._serde = kafka, topic, serde
        self.broken = False  # the producer must be replaced
        self.all_down = False  # librdkafka reported every broker connection down
        self._retired: list[DeliveryReport] = []
        self.producer = self._new()

    def _new(self) -> GatewayProducer:
        producer = GatewayProducer(self._kafka, self._topic, self.settings, self._serde)
        producer.on_broker_error = self._on_error
        return producer

    def _on_error(self, err: KafkaError) -> None:
        if err.code() == KafkaError._ALL_BROKERS_DOWN:
            self.all_down = True
        elif err.fatal():
            self.broken = True

    def failed(self, err: KafkaError) -> None:
        """A message failed: does the producer survive it?"""
        if err.fatal() or err.code() in BROKEN:
            self.broken = True

    def send(self, topic: str, key: bytes | None, value: bytes, n: int, callback: Any) -> bool:
        """Queue one message; False when it cannot be queued now (full queue, broken producer).
        Raises :class:`MessageRefused` for a message no producer would take."""
        if self.broken:
            return False
        try:
            return self.producer.send_tracked(topic, key, value, n, callback)
        except ProduceError as exc:
            cause = exc.__cause__
            if isinstance(cause, KafkaException) and cause.args[0].code() == KafkaError.MSG_SIZE_TOO_LARGE:
                raise MessageRefused(str(exc)) from cause
            logger.error("%s", exc)
            self.broken = True
            return False

    def poll(self, timeout: float) -> None:
        """Serve outcomes (the callbacks run here)."""
        try:
            self.producer.poll(timeout)
        except ProduceError as exc:  # librdkafka raised a fatal error
            logger.error("%s", exc)
            self.broken = True

    def reachable(self, timeout: float) -> bool:
        """A metadata request answered within ``timeout``."""
        return self.producer.connected(timeout=timeout)

    def replace(self) -> None:
        """Close the producer (what it held is purged: its outcomes arrive now) and start a new one."""
        old = self.producer
        try:
            old.close(timeout=0.2)
        except Exception as exc:  # a fatal producer may refuse even that
            logger.debug("closing the old producer: %r", exc)
        self._retired.append(old.report())
        self.producer = self._new()
        self.broken = self.all_down = False  # the old producer's last failures say nothing about this one
        logger.warning("replaced the Kafka producer (new producer id)")

    def close(self, timeout: float) -> None:
        self.producer.close(timeout=timeout)

    def totals(self) -> tuple[int, int]:
        """(produced, acknowledged) over every producer this link had."""
        reports = [*self._retired, self.producer.report()]
        return sum(r.produced for r in reports), sum(r.acknowledged for r in reports)
