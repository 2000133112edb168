"""``millstream dead-letters replay``: send dead letters back to the topics they came from.

Once the cause of a batch of dead letters is fixed (a ClickHouse column migrated, the stream job and
sink upgraded to read a new schema version), their records can go through the pipeline again. The
dead-letter topic is read from the beginning, or from ``--since`` (by the dead letters' Kafka
timestamps), up to its end at the time of the command; the chosen records' original bytes are
produced, with their original keys, to the topic each came from. Records that fail again become new
dead letters, which a later replay (with a later ``--since``) can take again: the command never
reads what it writes in the same run.

Not replayed: dead letters whose payload was cut short by the stage that rejected it (their reason
says so; the whole record is at its topic, partition and offset while Kafka keeps it), and those of
the gateways' own sources (``gateway``: an MQTT message is no Kafka record). A replayed reading is
handled like any other: older than the stream job's watermark plus the allowed lateness, it goes to
the late topic (and from there to ClickHouse, reason ``too_late``), not into windows.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from schemas.config import KafkaSettings, TopicSettings
from schemas.exceptions import ConfigError, DecodeError
from schemas.serde import Serde
from sinks.exceptions import SinkError

logger = logging.getLogger(__name__)

CUT_MARK = "truncated to its first"  # what a stage writes into the reason when it kept part of a value
SETTLE_S = 1.0  # after every partition reported its end: quiet this long, then the read is done


@dataclass
class Selection:
    """Which dead letters to replay."""

    reasons: tuple[str, ...]
    stage: str | None = None
    topic: str | None = None
    since_ms: int | None = None
    until_ms: int | None = None

    def matches(self, dl: dict[str, Any]) -> bool:
        failed_at = int(dl["failed_at"])
        return (
            dl["reason_code"] in self.reasons
            and (self.stage is None or dl["stage"] == self.stage)
            and (self.topic is None or dl["topic"] == self.topic)
            and (self.since_ms is None or failed_at >= self.since_ms)
            and (self.until_ms is None or failed_at < self.until_ms)
        )


@dataclass
class Summary:
    read: int = 0
    selected: int = 0
    replayed: int = 0
    cut_short: int = 0
    not_kafka: int = 0
    undecodable: int = 0
    by_topic: Counter[str] = field(default_factory=Counter)

    def to_dict(self) -> dict[str, Any]:
        return {
            "read": self.read,
            "selected": self.selected,
            "replayed": self.replayed,
            "skipped_cut_short": self.cut_short,
            "skipped_not_from_kafka": self.not_kafka,
            "undecodable_dead_letters": self.undecodable,
            "replayed_by_topic": dict(sorted(self.by_topic.items())),
        }


def parse_time_ms(text: str, what: str) -> int:
    """An ISO 8601 time (a zone offset or Z; without one, UTC) as epoch milliseconds."""
    from datetime import UTC

    try:
        t = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError as exc:
        msg = f"{what}: {text!r} is not an ISO 8601 time (e.g. 2026-11-23T06:00:00Z)"
        raise ConfigError(msg) from exc
    if t.tzinfo is None:
        t = t.replace(tzinfo=UTC)
    return int(t.timestamp() * 1000)


def replay_dead_letters(
    selection: Selection,
    *,
    dry_run: bool = False,
    kafka: KafkaSettings | None = None,
    topics: TopicSettings | None = None,
    serde: Serde | None = None,
    timeout_s: float = 300.0,
) -> Summary:
    """Read the dead-letter topic and produce the selected records back (see the module docstring)."""
    from confluent_kafka import Producer

    kafka = kafka or KafkaSettings()
    topics = topics or TopicSettings()
    serde = serde or Serde()
    known = set(topics.all_topics())
    summary = Summary()
    producer = (
        None if dry_run else Producer({**kafka.librdkafka(), "enable.idempotence": True, "acks": "all"})
    )
    failures: list[str] = []

    def delivered(err: Any, _msg: Any) -> None:
        if err is not None:
            failures.append(str(err))

    for value in _read(kafka, topics.topic_dead_letters, selection.since_ms, timeout_s):
        summary.read += 1
        try:
            dl = serde.decode(value).record
        except DecodeError as exc:
            summary.undecodable += 1
            logger.warning(
                "a record on %s is not a dead letter (%s); left alone", topics.topic_dead_letters, exc
            )
            continue
        if not selection.matches(dl):
            continue
        summary.selected += 1
        if CUT_MARK in dl["reason"]:
            summary.cut_short += 1
            continue
        if dl["topic"] not in known:  # a gateway's source (MQTT, OPC UA): no Kafka topic to go back to
            summary.not_kafka += 1
            continue
        summary.by_topic[dl["topic"]] += 1
        if producer is not None:
            producer.produce(dl["topic"], value=dl["payload"], key=dl.get("key"), on_delivery=delivered)
            producer.poll(0)
        summary.replayed += 1
    if producer is not None:
        left = producer.flush(60)
        if left or failures:
            first = f" (first error: {failures[0]})" if failures else ""
            msg = f"{left + len(failures)} replayed record(s) were not acknowledged by the broker{first}"
            raise SinkError(msg)
    return summary


def _read(kafka: KafkaSettings, topic: str, since_ms: int | None, timeout_s: float) -> Any:
    """The values of ``topic`` from ``since_ms`` (Kafka timestamp) or the beginning to its end now."""
    from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, TopicPartition

    c = Consumer(
        {
            **kafka.librdkafka(),
            "group.id": "millstream-dead-letters-replay",  # never committed: assignment, not subscription
            "enable.auto.commit": False,
            "enable.partition.eof": True,
        }
    )
    try:
        meta = c.list_topics(topic, timeout=10).topics.get(topic)
        if meta is None or meta.error is not None:
            text = f"the dead-letter topic {topic} (MILLSTREAM_TOPIC_DEAD_LETTERS) cannot be read"
            raise ConfigError(text)
        parts = [
            TopicPartition(topic, p, since_ms if since_ms is not None else OFFSET_BEGINNING)
            for p in meta.partitions
        ]
        if since_ms is not None:
            parts = c.offsets_for_times(parts, timeout=10)
        parts = [
            tp for tp in parts if tp.offset >= 0 or tp.offset == OFFSET_BEGINNING
        ]  # -1: nothing after since
        if not parts:
            return
        c.assign(parts)
        at_end: set[int] = set()
        deadline = time.monotonic() + timeout_s
        quiet_since = None
        while time.monotonic() < deadline:
            rec = c.poll(0.2)
            if rec is None:
                if len(at_end) == len(parts):
                    quiet_since = quiet_since or time.monotonic()
                    if time.monotonic() - quiet_since >= SETTLE_S:
                        return
                continue
            quiet_since = None
            err = rec.error()
            if err is not None:
                if err.code() == KafkaError._PARTITION_EOF:
                    at_end.add(rec.partition() or 0)
                    continue
                text = f"reading {topic}: {err}"
                raise SinkError(text)
            at_end.discard(rec.partition() or 0)
            yield rec.value()
        text = f"reading {topic} did not reach its end within {timeout_s:g} s"
        raise SinkError(text)
    finally:
        c.close()
