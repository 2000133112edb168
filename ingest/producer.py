"""The producer core every gateway shares: idempotent, keyed by machine, accounted, never dropping.

* ``enable.idempotence=true`` and ``acks=all``: a retried batch is written once and in order.
* Key = machine id, so all of a machine's scans land in one partition in the order they were sent.
* Values are Avro (``MachineScan`` through :class:`ingest.encoding.ScanEncoder`, or single
  ``Reading`` records through :class:`schemas.serde.Serde`).
* Every message ends as exactly one of acknowledged or failed (with librdkafka's error name); what
  is still queued when :meth:`GatewayProducer.close` gives up waiting is purged and counted failed.
* A full local queue (``BufferError``) makes the gateway wait for deliveries: backpressure, not loss.
* Optional token-bucket rate limit in sensor values per second.

Not thread-safe: one producer per gateway thread.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from confluent_kafka import KafkaError, KafkaException, Producer

from ingest import metrics
from ingest.config import ProducerSettings
from ingest.encoding import MachineLayout, ScanEncoder
from ingest.exceptions import GatewayError, ProduceError
from ingest.ratelimit import TokenBucket
from ingest.tick_encoding import TickEncoder
from schemas.config import KafkaSettings
from schemas.log_repeats import LibrdkafkaLog
from schemas.serde import Serde
from sinks.metrics import RECORDS_OUT

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class DeliveryReport:
    """Counts of one producer's messages. After close(), produced == acknowledged + failed."""

    produced: int
    acknowledged: int
    failed: int
    in_flight: int
    values: int
    errors: dict[str, int] = field(default_factory=dict)
    backpressure_waits: int = 0
    throttled_s: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class GatewayProducer:
    """Sends machine scans (or readings) to one topic. Use as a context manager or call close()."""

    def __init__(
        self,
        kafka: KafkaSettings,
        topic: str,
        settings: ProducerSettings | None = None,
        serde: Serde | None = None,
        *,
        stage: str = "gateway",
    ) -> None:
        self.settings = settings or ProducerSettings()
        self.topic = topic
        self.stage = stage
        conf: dict[str, Any] = {**kafka.librdkafka(), **self.settings.librdkafka()}
        conf["on_delivery"] = self._on_delivery
        conf["error_cb"] = self._on_error
        conf["logger"] = LibrdkafkaLog()  # librdkafka's own log: via logging, repeats at DEBUG
        try:
            self._producer = Producer(conf)
        except KafkaException as exc:
            msg = f"cannot create the Kafka producer for {kafka.kafka_bootstrap}: {exc}"
            raise GatewayError(msg) from exc
        self.serde = serde or Serde()
        self.scans = ScanEncoder(self.serde, topic)
        self._encode_scan = self.scans.encode_scan
        self._reading_encoder: Callable[[dict[str, Any]], bytes] | None = None
        self._produce: Callable[..., None] = self._producer.produce
        self._all_reports = self.settings.delivery_reports == "all"
        self._bucket: TokenBucket | None = None
        if self.settings.max_values_per_s:
            self._bucket = TokenBucket(
                self.settings.max_values_per_s, self.settings.burst_values, wait=self._wait_serving
            )
        self._produced = 0
        self._acked = 0
        self._failed = 0
        self._values = 0
        self._errors: Counter[str] = Counter()
        self._backpressure = 0
        self._throttled = 0.0
        self._next_poll = self.settings.poll_every
        self._fatal: KafkaError | None = None
        self._published: dict[str, float] = {}
        self._published_errors: Counter[str] = Counter()
        self._closed = False
        self._drained = False
        self._error_logged: dict[int, float] = {}
        # Called with every client-level error (e.g. _ALL_BROKERS_DOWN), from poll() in the owner thread.
        self.on_broker_error: Callable[[KafkaError], None] | None = None

    # ------------------------------------------------------------------------------------ sending
    def machine(
        self, plant: str, line: str, machine_id: str, gateway_id: str, sensors: Sequence[tuple[str, str]]
    ) -> MachineLayout:
        """Pre-encoded layout of one machine's scans, for :meth:`send_scan`."""
        return self.scans.machine(plant, line, machine_id, gateway_id, sensors)

    def send_scan(
        self,
        m: MachineLayout,
        event_time: int,
        seq: int,
        lot_id: str | None,
        values: Sequence[float],
        qualities: Sequence[int] | None = None,
    ) -> None:
        """One MachineScan; ``values`` follow ``m.sensors``, ``qualities`` are 0 GOOD, 1 UNCERTAIN, 2 BAD."""
        value = self._encode_scan(m, event_time, seq, lot_id, values, qualities)
        # send(), inlined: this is every gateway's hot path and a Python call costs ~5% of it.
        if self._bucket is not None:
            self._throttled += self._bucket.acquire(m.n_values)
        ts = event_time if event_time > 0 else 0
        try:
            # (partition, callback, on_delivery, timestamp) positionally: as keywords ~0.2 µs more a call
            self._produce(self.topic, value, m.key, -1, None, None, ts)
        except BufferError:
            self._wait_for_room(m.key, value, ts)
        except KafkaException as exc:
            raise self._refused(exc) from exc
        self._values += m.n_values
        self._produced += 1
        if self._produced >= self._next_poll:
            self.poll(0)

    def tick_encoder(self, layouts: Sequence[MachineLayout]) -> TickEncoder:
        """Bulk encoder for :meth:`send_scans`: one scan of each of ``layouts`` per call."""
        return TickEncoder(self.scans, layouts)

    def send_scans(
        self,
        tick: TickEncoder,
        event_time: int,
        first_seq: int,
        lots: Sequence[str | None],
        values: Any,
        qualities: Any = None,
    ) -> None:
        """One scan of every machine of ``tick`` at ``event_time`` (a scan cycle): machine i gets
        sequence number ``first_seq + i``, lot ``lots[i]`` and row i of ``values`` (machines x sensors);
        ``qualities`` as :meth:`ingest.tick_encoding.TickEncoder.encode` takes them.
        The same messages as :meth:`send_scan` per machine, encoded in bulk (see ingest/tick_encoding.py)."""
        messages = tick.encode(event_time, first_seq, lots, values, qualities)
        if self._bucket is not None:
            self._throttled += self._bucket.acquire(tick.values_per_cycle)
        produce, topic = self._produce, self.topic
        ts = event_time if event_time > 0 else 0
        pending = zip(tick.keys, messages, strict=True)
        try:
            for key, value in pending:
                try:
                    produce(topic, value, key, -1, None, None, ts)  # positionally, as in send_scan
                except BufferError:
                    self._wait_for_room(key, value, ts)
        except KafkaException as exc:
            sent = tick.n - 1 - sum(1 for _ in pending)  # the refused message and those after it are not
            self._produced += sent
            self._values += sum(tick.n_values[:sent])
            raise self._refused(exc) from exc
        self._produced += tick.n
        self._values += tick.values_per_cycle
        if self._produced >= self._next_poll:
            self.poll(0)

    def send_record(self, record: dict[str, Any]) -> None:
        """A MachineScan or a single Reading given as a dict."""
        if "values" in record:
            value = self.scans.encode(record)
            n = len(record["values"])
        else:
            if self._reading_encoder is None:
                self._reading_encoder = self.serde.encoder("Reading", self.topic)
            value = self._reading_encoder(record)
            n = 1
        self.send(str(record["machine_id"]).encode("utf-8"), value, n)

    def send(self, key: bytes, value: bytes, n_values: int = 1) -> None:
        """Queue one encoded message; waits (never drops) while the local queue is full. The record
        timestamp is the message's event time when it has one (see :meth:`timestamp`)."""
        if self._bucket is not None:
            self._throttled += self._bucket.acquire(n_values)
        ts = self.timestamp(value)
        try:
            self._produce(self.topic, value, key, timestamp=ts)
        except BufferError:
            self._wait_for_room(key, value, ts)
        except KafkaException as exc:
            raise self._refused(exc) from exc
        self._values += n_values
        self._produced += 1
        if self._produced >= self._next_poll:
            self.poll(0)

    def send_tracked(
        self,
        topic: str,
        key: bytes | None,
        value: bytes,
        n_values: int,
        done: Callable[[KafkaError | None], None],
    ) -> bool:
        """Queue one message whose outcome is reported to ``done`` (None: acknowledged).

        Unlike :meth:`send` this never waits: False means the local queue is full (the caller
        decides: wait, spool). Needs ``delivery_reports='all'`` so every acknowledgement calls back.
        No rate limit here: a store-and-forward caller must not stall its replay on it."""
        on_delivery = self._on_delivery

        def report(err: KafkaError | None, msg: Any) -> None:
            on_delivery(err, msg)
            done(err)

        try:
            self._produce(topic, value, key, on_delivery=report, timestamp=self.timestamp(value))
        except BufferError:
            return False
        except KafkaException as exc:
            raise self._refused(exc) from exc
        self._values += n_values
        self._produced += 1
        return True

    def timestamp(self, value: bytes) -> int:
        """Kafka record timestamp for an encoded message: the reading's event time, so a reading sent
        late (from a spool after an outage) keeps its time for consumers that take event time from
        the record (the Flink job's watermarks); 0 (the producer's clock) for other messages."""
        ts = self.serde.event_time(value)
        return ts if ts is not None and ts > 0 else 0

    def _refused(self, exc: KafkaException) -> ProduceError:
        return ProduceError(f"producer refused a message for {self.topic}: {exc}")

    def _wait_for_room(self, key: bytes, value: bytes, timestamp: int = 0) -> None:
        while True:
            self._backpressure += 1
            self._producer.poll(0.05)
            self._raise_fatal()
            try:
                self._produce(self.topic, value, key, timestamp=timestamp)
                return
            except BufferError:
                continue

    def _wait_serving(self, seconds: float) -> None:
        """Rate-limit wait that keeps serving delivery reports."""
        self._producer.poll(min(seconds, 0.1))

    # ------------------------------------------------------------------------------------ delivery
    def _on_delivery(self, err: KafkaError | None, msg: Any) -> None:
        if err is None:
            self._acked += 1
            return
        self._failed += 1
        reason = err.name()
        if self._errors[reason] == 0:
            logger.warning(
                "delivery to %s failed: %s (further %s failures are only counted)",
                self.topic,
                err.str(),
                reason,
            )
        self._errors[reason] += 1

    def _on_error(self, err: KafkaError) -> None:
        if self.on_broker_error is not None:
            self.on_broker_error(err)
        if err.fatal():
            self._fatal = err
            logger.error("fatal producer error: %s", err.str())
            return
        now = time.monotonic()  # the same error repeats on every reconnect: log it twice a minute at most
        if now - self._error_logged.get(err.code(), -60.0) >= 30.0:
            self._error_logged[err.code()] = now
            logger.warning("producer: %s", err.str())
        else:
            logger.debug("producer: %s", err.str())

    def _raise_fatal(self) -> None:
        if self._fatal is not None:
            msg = f"the producer hit a fatal error and cannot continue: {self._fatal.str()}"
            raise ProduceError(msg)

    def poll(self, timeout: float = 0.0) -> None:
        """Serve delivery reports and update metrics (send() does this every ``poll_every`` messages)."""
        self._next_poll = self._produced + self.settings.poll_every
        self._producer.poll(timeout)
        self._publish()
        self._raise_fatal()

    def flush(self, timeout: float | None = None) -> int:
        """Wait for every queued message's outcome; return how many are still outstanding."""
        remaining = int(self._producer.flush(self.settings.flush_timeout_s if timeout is None else timeout))
        self._publish()
        return remaining

    def close(self, timeout: float | None = None) -> DeliveryReport:
        """Flush; purge (and count failed) whatever did not finish in time. Safe to call twice."""
        if not self._closed:
            self._closed = True
            if self.flush(timeout):
                # len() also counts queued error events, so this may purge nothing: that is harmless.
                logger.warning("not everything was delivered within the flush timeout; purging the rest")
                self._producer.purge(in_queue=True, in_flight=True, blocking=False)
                self._producer.flush(5.0)
            self._drained = True  # every message has had its delivery report served
            self._publish()
            self._produce = _closed_produce
        return self.report()

    def __enter__(self) -> GatewayProducer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------------------------ accounting
    @property
    def in_flight(self) -> int:
        """Messages without an outcome yet. Exact with delivery_reports=all and after close(); with
        'errors' while running, librdkafka's queue length, which also counts pending events."""
        if self._all_reports:
            return self._produced - self._acked - self._failed
        return 0 if self._drained else len(self._producer)

    def report(self) -> DeliveryReport:
        in_flight = self.in_flight
        if self._all_reports:
            acked = self._acked
        else:  # only failures call back: the rest of what left the queue was acknowledged
            acked = max(0, self._produced - self._failed - in_flight)
        return DeliveryReport(
            produced=self._produced,
            acknowledged=acked,
            failed=self._failed,
            in_flight=in_flight,
            values=self._values,
            errors=dict(self._errors),
            backpressure_waits=self._backpressure,
            throttled_s=round(self._throttled, 3),
        )

    def connected(self, timeout: float = 2.0) -> bool:
        """Readiness: the broker answers and knows the topic."""
        try:
            md = self._producer.list_topics(self.topic, timeout=timeout)
        except KafkaException:
            return False
        t = md.topics.get(self.topic)
        return t is not None and t.error is None

    def _publish(self) -> None:
        """Move the counts into Prometheus (deltas since the last call)."""
        r = self.report()
        now = {
            "produced": r.produced,
            "acknowledged": r.acknowledged,
            "failed": r.failed,
            "values": r.values,
            "backpressure": r.backpressure_waits,
            "throttled": self._throttled,
        }
        last = self._published
        for outcome in ("produced", "acknowledged", "failed"):
            delta = now[outcome] - last.get(outcome, 0)
            if delta > 0:
                metrics.MESSAGES.labels(outcome).inc(delta)
        delta_values = now["values"] - last.get("values", 0)
        if delta_values > 0:
            metrics.VALUES.inc(delta_values)
            RECORDS_OUT.labels(self.stage).inc(delta_values)
        if now["backpressure"] > last.get("backpressure", 0):
            metrics.BACKPRESSURE_WAITS.inc(now["backpressure"] - last.get("backpressure", 0))
        if now["throttled"] > last.get("throttled", 0):
            metrics.THROTTLED_SECONDS.inc(now["throttled"] - last.get("throttled", 0))
        for reason, count in self._errors.items():
            if count > self._published_errors[reason]:
                metrics.DELIVERY_FAILURES.labels(reason).inc(count - self._published_errors[reason])
                self._published_errors[reason] = count
        metrics.IN_FLIGHT.set(r.in_flight)
        self._published = {k: max(v, last.get(k, 0)) for k, v in now.items()}


def _closed_produce(*args: Any, **kwargs: Any) -> None:
    msg = "the producer is closed"
    raise ProduceError(msg)
