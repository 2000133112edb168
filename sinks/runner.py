"""The Kafka → ClickHouse consumer loop.

Reads the windows, dead-letters, late, SPC-signals and anomalies topics (and the readings topic when
``MILLSTREAM_SINK_RAW_READINGS`` is on) with a consumer group (auto-commit off), decodes each value
with :class:`~schemas.serde.Serde` and routes it by its schema name (:data:`sinks.tables.ROUTES`)
to the :class:`~sinks.writer.BatchWriter`. When the batch is due it is written on a writer thread
while the loop keeps consuming into the next one; only once it is written are its offsets
committed: a crash between write and commit replays the batch, and the idempotent writer turns
at-least-once into effectively once. One batch is written at a time. Values that cannot be
decoded, or carry a schema that does not belong on their topic, are stored in ``dead_letters``
(stage ``sink``) with the reason; nothing is dropped.

Backpressure (:mod:`sinks.flow`): consumption pauses while an insert is retried or the rows behind
exceed ``MILLSTREAM_SINK_MAX_PENDING_ROWS``, and resumes once the writer caught up.

Stops on :meth:`SinkRunner.stop` (the CLI calls it on SIGTERM/SIGINT) or after ``exit_when_idle``
seconds without records; either way the pending batch is flushed and committed before the consumer
closes.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from schemas.config import KafkaSettings, SerdeSettings, TopicSettings
from schemas.exceptions import DECODE_ERROR, UNKNOWN_SCHEMA, DecodeError
from schemas.log_repeats import LibrdkafkaLog
from sinks.config import ClickHouseSettings, SinkSettings
from sinks.exceptions import SinkError
from sinks.flow import FlowControl
from sinks.metrics import (
    CONSUMER_LAG,
    DEAD_LETTERS,
    DECODE_ERRORS,
    RECORDS_IN,
    add_readiness_check,
    broker_reachable,
    precreate,
)
from sinks.sink_metrics import SINK_COMMITS
from sinks.tables import DEAD_LETTERS as DEAD_LETTER_TABLE
from sinks.tables import ROUTES, Source, payload_json
from sinks.writer import STAGE, BatchWriter, FlushResult

if TYPE_CHECKING:
    from clickhouse_connect.driver.client import Client
    from confluent_kafka import Consumer, Message, TopicPartition

logger = logging.getLogger(__name__)

READING_SCHEMAS = ("millstream.Reading", "millstream.MachineScan")


@dataclass
class RunStats:
    """What one run did (returned by :meth:`SinkRunner.run`)."""

    consumed: int = 0
    written: int = 0
    dead_letters: int = 0
    flushes: int = 0
    commits: int = 0
    pauses: int = 0
    resumes: int = 0


class SinkRunner:
    """Consume → decode → batch → write → commit."""

    def __init__(
        self,
        client: Client,
        *,
        clickhouse: ClickHouseSettings | None = None,
        sink: SinkSettings | None = None,
        kafka: KafkaSettings | None = None,
        topics: TopicSettings | None = None,
        serde_settings: SerdeSettings | None = None,
        exit_when_idle: float | None = None,
        after_write: Callable[[FlushResult], None] | None = None,
        consumer_factory: Callable[[dict[str, Any]], Consumer] | None = None,
    ) -> None:
        from schemas.serde import Serde

        self.client = client
        self.clickhouse = clickhouse or ClickHouseSettings()
        self.sink = sink or SinkSettings()
        self.kafka = kafka or KafkaSettings()
        self.topics = topics or TopicSettings()
        self.serde = Serde(serde_settings)
        self.exit_when_idle = exit_when_idle
        self.after_write = after_write  # runs after a batch is written, before its offsets are committed
        self.consumer_factory = consumer_factory
        self.writer = BatchWriter(client, self.clickhouse, describe=self._describe)
        self.flow = FlowControl(self.sink.max_pending_rows)
        self.stats = RunStats()
        self._stop = threading.Event()
        self._consumer: Consumer | None = None
        self._pool: ThreadPoolExecutor | None = None
        self._inflight: Future[FlushResult] | None = None
        self._last_activity = time.monotonic()
        self._assigned = False
        self._failed = False
        self._next_lag = 0.0
        # The schemas each topic may carry; anything else on it is a dead letter.
        self._expected: dict[str, tuple[str, ...]] = {
            self.topics.topic_windows: ("millstream.WindowAggregate",),
            self.topics.topic_dead_letters: ("millstream.DeadLetter",),
            self.topics.topic_late: ("millstream.DeadLetter",),  # readings past the allowed lateness
            self.topics.topic_spc_signals: ("millstream.SpcSignal",),
            self.topics.topic_anomalies: ("millstream.AnomalyEvent",),
        }
        if self.sink.raw_readings:
            self._expected[self.topics.topic_readings] = READING_SCHEMAS

    # ------------------------------------------------------------------ lifecycle
    def stop(self) -> None:
        """Ask the loop to finish: flush, commit, close. Safe from a signal handler or another thread.

        An insert being retried gives up at once (its batch is not committed and is read again at the
        next start), so a stop during a ClickHouse outage does not wait out the retries."""
        self._stop.set()
        self.writer.stopping.set()

    @property
    def assigned(self) -> bool:
        """True once the group has assigned partitions to this member."""
        return self._assigned

    def subscriptions(self) -> list[str]:
        return list(self._expected)

    def consumer_config(self) -> dict[str, Any]:
        return {
            **self.kafka.librdkafka(),
            "group.id": self.sink.group_id,
            "client.id": "millstream-sink",
            "enable.auto.commit": False,
            "auto.offset.reset": self.sink.auto_offset_reset,
            "session.timeout.ms": self.kafka.kafka_session_timeout_ms,
            # Several heartbeats per session, also with the short sessions of tests and demos
            # (librdkafka's default interval of 3 s exceeds a 2 s session).
            "heartbeat.interval.ms": max(100, self.kafka.kafka_session_timeout_ms // 3),
            "enable.partition.eof": False,
            "fetch.wait.max.ms": self.sink.fetch_wait_max_ms,
            # librdkafka's own log through Python logging, each line once per 30 s: while the broker
            # is unreachable it logs a failed connection several times a second
            "logger": LibrdkafkaLog(),
        }

    def run(self) -> RunStats:
        """Run until stopped or idle. Raises SinkError when a batch cannot be written."""
        from confluent_kafka import Consumer, KafkaException

        add_readiness_check("clickhouse", self._clickhouse_ready)
        add_readiness_check("broker", broker_reachable(self.kafka.kafka_bootstrap))
        if not broker_reachable(self.kafka.kafka_bootstrap, cache_s=0.0)():
            logger.warning(
                "cannot reach the broker at %s (MILLSTREAM_KAFKA_BOOTSTRAP); waiting for it (see /readyz)",
                self.kafka.kafka_bootstrap,
            )
        # counters at 0 from the start: rate() sees the first event, the panels show the sink
        precreate(STAGE, (DECODE_ERROR, UNKNOWN_SCHEMA, "invalid_record", "sink_rejected"))
        try:
            factory = self.consumer_factory or Consumer
            consumer = factory(self.consumer_config())
        except KafkaException as exc:
            msg = f"cannot create the Kafka consumer: {exc}"
            raise SinkError(msg) from exc
        self._consumer = consumer
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sink-writer")
        consumer.subscribe(
            self.subscriptions(), on_assign=self._on_assign, on_revoke=self._on_revoke, on_lost=self._on_lost
        )
        logger.info("sink consuming %s as group %s", self.subscriptions(), self.sink.group_id)
        self._last_activity = time.monotonic()
        clean = False
        try:
            while not self._stop.is_set():
                self._reap(wait=False)
                self._backpressure()
                # Poll more often while a batch is being written: its commit waits for the next turn.
                timeout = self.sink.poll_timeout_ms / 1000
                if self._inflight is not None:
                    timeout = min(timeout, 0.02)
                messages = consumer.consume(self.sink.max_poll_records, timeout)
                if messages:
                    self._handle(messages)
                if self._inflight is None and self.writer.pending and (self.writer.due() or self.flow.paused):
                    self._start_write()
                self._update_lag()
                if self._idle():
                    logger.info("no records for %.1fs; stopping", self.exit_when_idle)
                    break
            self._reap(wait=True)
            self._flush_and_commit()
            clean = True
        finally:
            if not clean:
                # Leave the batch unwritten and uncommitted: the next run replays it.
                self._failed = True
                logger.error("sink stopping on an error; pending offsets are not committed")
            self._pool.shutdown(wait=True)
            self.stats.pauses, self.stats.resumes = self.flow.stats.pauses, self.flow.stats.resumes
            try:
                consumer.close()
            finally:
                self._consumer = None
                self.flow.closed()
        return self.stats

    def _idle(self) -> bool:
        """No records for ``exit_when_idle`` seconds since the last record or assignment.

        Before the first assignment the wait is longer: a restarted member may have to wait for the
        previous (crashed) member's session to expire before the group hands out partitions.
        """
        if self.exit_when_idle is None or self.writer.pending or self._inflight is not None:
            return False
        limit = self.exit_when_idle
        if not self._assigned:
            limit += 3 * self.kafka.kafka_session_timeout_ms / 1000
        return time.monotonic() - self._last_activity >= limit

    # ------------------------------------------------------------------ records
    def _handle(self, messages: Sequence[Message]) -> None:
        from confluent_kafka import KafkaError, KafkaException

        for msg in messages:
            err = msg.error()
            if err is not None:
                if err.fatal():
                    text = f"Kafka consumer failed: {err}"
                    raise SinkError(text) from KafkaException(err)
                if err.code() != KafkaError._PARTITION_EOF:
                    logger.warning("consumer error: %s", err)
                continue
            self._last_activity = time.monotonic()
            self.stats.consumed += 1
            RECORDS_IN.labels(STAGE).inc()
            self._route(msg)

    def _route(self, msg: Message) -> None:
        topic, value = msg.topic() or "", msg.value()
        source = Source(topic, msg.partition() or 0, msg.offset() or 0, msg.key(), value or b"")
        try:
            decoded = self.serde.decode(value)
        except DecodeError as exc:
            DECODE_ERRORS.labels(STAGE).inc()
            self._dead_letter(exc.code, exc.reason, source)
            return
        expected = self._expected.get(topic, ())
        route = ROUTES.get(decoded.name)
        if route is None or decoded.name not in expected:
            wanted = " or ".join(expected) or "nothing"
            reason = f"{decoded.name} records do not belong on topic {topic} (expected {wanted})"
            self._dead_letter("invalid_record", reason, source)
            return
        try:
            records = route.records(decoded.record)
        except (KeyError, TypeError, ValueError) as exc:
            self._dead_letter("invalid_record", f"cannot expand {decoded.name}: {exc}", source)
            return
        if not records:
            self.writer.track(source)
        if route.table is DEAD_LETTER_TABLE:
            for record in records:
                record["payload_json"] = self._describe(record["payload"])
        for record in records:
            if not self.writer.add(route.table, record, source):
                self.stats.dead_letters += 1
                DEAD_LETTERS.labels(STAGE, "invalid_record").inc()

    def _describe(self, payload: bytes | str) -> str | None:
        return payload_json(payload, lambda data: self.serde.decode(data).record)

    def _dead_letter(self, code: str, reason: str, source: Source) -> None:
        self.writer.add_dead_letter(code, reason, source)
        self.stats.dead_letters += 1
        DEAD_LETTERS.labels(STAGE, code).inc()

    # ------------------------------------------------------------------ write + commit
    def _start_write(self) -> None:
        """Write the pending batch on the writer thread; the loop goes on buffering the next one."""
        assert self._pool is not None
        batch = self.writer.take()
        self._inflight = self._pool.submit(self.writer.write, batch)

    def _reap(self, wait: bool) -> None:
        """Commit a batch the writer thread finished (raises its SinkError when it failed)."""
        future = self._inflight
        if future is None or (not wait and not future.done()):
            return
        self._inflight = None
        self._written(future.result())

    def _backpressure(self) -> None:
        if self._consumer is not None:
            self.flow.update(self._consumer, self.writer.backlog_rows, self.writer.retrying.is_set())

    def _flush_and_commit(self) -> None:
        """Write everything pending now, on this thread, and commit it."""
        self._reap(wait=True)
        if not self.writer.pending:
            return
        self._written(self.writer.flush())

    def _written(self, result: FlushResult) -> None:
        self.stats.flushes += 1
        self.stats.written += result.written
        if result.rejected:
            self.stats.dead_letters += result.rejected
            DEAD_LETTERS.labels(STAGE, "sink_rejected").inc(result.rejected)
        if self.after_write is not None:
            self.after_write(result)
        self._commit(result.offsets)

    def _commit(self, offsets: dict[tuple[str, int], int]) -> None:
        from confluent_kafka import KafkaException, TopicPartition

        consumer = self._consumer
        if consumer is None or not offsets:
            return
        tps = [TopicPartition(t, p, o) for (t, p), o in sorted(offsets.items())]
        try:
            consumer.commit(offsets=tps, asynchronous=False)
        except KafkaException as exc:
            # The rows are written; a failed commit only means a replay, which the tables absorb.
            logger.warning("offset commit failed (%s); the batch will be replayed and deduplicated", exc)
            return
        self.stats.commits += 1
        SINK_COMMITS.inc()
        logger.debug("committed %s", tps)

    # ------------------------------------------------------------------ rebalance
    def _on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        logger.info("assigned %s", [(p.topic, p.partition) for p in partitions])
        self._assigned = True
        self._last_activity = time.monotonic()

    def _on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        # Write and commit what we hold before another member takes these partitions over.
        if not self._failed:
            try:
                self._flush_and_commit()
            except SinkError:
                self._failed = True
                raise
        self.flow.forget(partitions)
        for p in partitions:
            with contextlib.suppress(KeyError):
                CONSUMER_LAG.remove(STAGE, p.topic, str(p.partition))

    def _on_lost(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        # Offsets can no longer be committed; writing is still safe (idempotent), a replay follows.
        logger.warning("partitions lost: %s", [(p.topic, p.partition) for p in partitions])
        self.flow.forget(partitions)
        if self._failed:
            return
        future, self._inflight = self._inflight, None
        if future is not None:
            future.result()
        if self.writer.pending:
            self.writer.flush()

    # ------------------------------------------------------------------ observability
    def _update_lag(self) -> None:
        consumer = self._consumer
        now = time.monotonic()
        if consumer is None or now < self._next_lag:
            return
        self._next_lag = now + self.sink.lag_interval_s
        try:
            assignment = consumer.assignment()
            positions = consumer.position(assignment) if assignment else []
        except Exception as exc:  # lag is best effort
            logger.debug("lag update failed: %s", exc)
            return
        for tp in positions:
            try:
                _, high = consumer.get_watermark_offsets(tp, cached=True)
            except Exception:  # noqa: S112 - unknown yet; next round
                continue
            if high is None or high < 0:
                continue
            if tp.offset < 0 and high > 0:
                continue  # no position yet (nothing fetched); next round
            position = max(tp.offset, 0)
            CONSUMER_LAG.labels(STAGE, tp.topic, str(tp.partition)).set(max(0, high - position))

    def _clickhouse_ready(self) -> bool:
        return bool(self.client.ping())
