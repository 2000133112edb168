"""Backpressure with the real broker and the real embedded ClickHouse.

ClickHouse refuses inserts for a while and then is slow: the sink must pause its partitions while an
insert is retried and while too many rows are behind, resume afterwards, and lose nothing.
"""

from __future__ import annotations

import threading
import time
import uuid
from typing import Any

import pytest
from clickhouse_connect.driver.exceptions import OperationalError
from prometheus_client import REGISTRY

from schemas.config import KafkaSettings, TopicSettings
from schemas.serde import Serde
from sinks.config import ClickHouseSettings, SinkSettings
from sinks.runner import SinkRunner

pytestmark = pytest.mark.integration


class TroubledClickHouse:
    """The real client; inserts fail (connection refused, nothing stored) until ``fail_for`` seconds
    after the first one, then each successful insert takes ``slow_s`` longer."""

    def __init__(self, client: Any, fail_for: float, slow_s: float) -> None:
        self.client, self.fail_for, self.slow_s = client, fail_for, slow_s
        self.first: float | None = None
        self.failures = 0

    def insert(self, *args: Any, **kwargs: Any) -> Any:
        now = time.monotonic()
        self.first = self.first or now
        if now - self.first < self.fail_for:
            self.failures += 1
            raise OperationalError("connection refused")
        time.sleep(self.slow_s)
        return self.client.insert(*args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.client, name)


class RecordingConsumer:
    """A real confluent-kafka Consumer that records pause/resume calls and what each poll returned."""

    def __init__(self, consumer: Any, hold_after: int | None = None, until: Any = None) -> None:
        self._c = consumer
        self.events: list[tuple[str, float, int]] = []  # (pause|resume|consume, time, partitions or records)
        self.lock = threading.Lock()
        # Once ``hold_after`` records are in, further polls wait (10 s at most) until ``until()``: fixes
        # the order of two events the scenario needs, which would otherwise race.
        self.hold_after, self.until, self.consumed = hold_after, until, 0

    def pause(self, partitions: list[Any]) -> None:
        self.events.append(("pause", time.monotonic(), len(partitions)))
        self._c.pause(partitions)

    def resume(self, partitions: list[Any]) -> None:
        self.events.append(("resume", time.monotonic(), len(partitions)))
        self._c.resume(partitions)

    def consume(self, num: int, timeout: float) -> Any:
        if self.hold_after is not None and self.consumed >= self.hold_after:
            deadline = time.monotonic() + 10.0
            while not self.until() and time.monotonic() < deadline:
                time.sleep(0.01)
            self.hold_after = None
        messages = self._c.consume(num, timeout)
        self.consumed += len(messages)
        self.events.append(("consume", time.monotonic(), len(messages)))
        return messages

    def __getattr__(self, name: str) -> Any:
        return getattr(self._c, name)


def _pauses(reason: str) -> float:
    return REGISTRY.get_sample_value("millstream_sink_pauses_total", {"reason": reason}) or 0.0


def test_consumption_pauses_while_clickhouse_fails_or_lags_and_nothing_is_lost(
    kafka: KafkaSettings,
    topics: TopicSettings,
    ch: Any,
    ch_settings: ClickHouseSettings,
    make_grid: Any,
    produce_to: Any,
    committed_offsets: Any,
) -> None:
    # 800 windows: after the retry pause ends (at most 150 rows behind, maybe none) more than 300 are
    # still to come, so the slow inserts fall behind by more than the high-water mark whatever the
    # writer had drained by then (with 600, the backlog pause depended on that race)
    records = make_grid(machines=4, sensors=5, windows=40)
    enc = Serde().encoder("millstream.WindowAggregate", topics.topic_windows)
    positions = produce_to(kafka, topics.topic_windows, [(r["machine_id"].encode(), enc(r)) for r in records])
    clickhouse = ch_settings.model_copy(
        update={
            "batch_rows": 50,
            "batch_age_ms": 20,
            "retry_backoff_ms": 50,
            "retry_backoff_max_ms": 200,
            "max_retries": 30,
        }  # fmt: skip
    )
    # Failing first (the retry pause comes before 300 rows are in: the consumer holds at 100 rows until
    # the writer is retrying a failed insert), then slower than the consumer.
    troubled = TroubledClickHouse(ch, fail_for=1.5, slow_s=0.2)
    recorders: list[RecordingConsumer] = []

    def factory(conf: dict[str, Any]) -> RecordingConsumer:
        from confluent_kafka import Consumer

        recorders.append(
            # the writer's own flag, not the client's failure count: the flag is what the flow control
            # reads, and it is set a moment after the insert has failed
            RecordingConsumer(Consumer(conf), hold_after=100, until=lambda: runner.writer.retrying.is_set())
        )
        return recorders[-1]

    before = {"retrying": _pauses("retrying"), "backlog": _pauses("backlog")}
    group = f"bp-{uuid.uuid4().hex[:6]}"
    runner = SinkRunner(
        troubled,  # type: ignore[arg-type]
        clickhouse=clickhouse,
        sink=SinkSettings(group_id=group, max_poll_records=25, max_pending_rows=300),
        kafka=kafka,
        topics=topics,
        exit_when_idle=3.0,
        consumer_factory=factory,  # type: ignore[arg-type]
    )
    stats = runner.run()

    # Nothing lost, nothing doubled: every window once, every offset committed.
    assert troubled.failures > 0
    assert stats.consumed == len(records)
    assert ch.command("SELECT count() FROM window_aggregates") == len(records)
    last: dict[int, int] = {}
    for part, off in positions:
        last[part] = max(last.get(part, -1), off)
    got = committed_offsets(kafka, group, topics.topic_windows, topics.topic_partitions)
    assert {p: o for p, o in got.items() if o >= 0} == {p: o + 1 for p, o in last.items()}

    # Paused while the insert was failing, and again while too many rows were behind; resumed each time.
    (consumer,) = recorders
    kinds = [e[0] for e in consumer.events if e[0] != "consume"]
    assert kinds and kinds[0] == "pause" and kinds[-1] == "resume"
    assert all(a != b for a, b in zip(kinds, kinds[1:], strict=False)), "pause and resume alternate"
    assert stats.pauses == stats.resumes == kinds.count("pause")
    assert _pauses("retrying") - before["retrying"] >= 1
    assert _pauses("backlog") - before["backlog"] >= 1
    # The pause covered the assigned partitions (every topic the sink reads) and held consumption
    # back: while paused, at most what a poll already had in hand came in.
    first_pause = next(e for e in consumer.events if e[0] == "pause")
    assert first_pause[2] == len(runner.subscriptions()) * topics.topic_partitions == 5 * 3
    paused_at, resumed_at = first_pause[1], next(e[1] for e in consumer.events if e[0] == "resume")
    during = sum(e[2] for e in consumer.events if e[0] == "consume" and paused_at < e[1] <= resumed_at)
    polls = sum(1 for e in consumer.events if e[0] == "consume" and paused_at < e[1] <= resumed_at)
    assert polls > 5 and during <= 25  # it kept polling (group membership) but fetched nothing new


def test_a_stop_during_a_clickhouse_outage_does_not_wait_out_the_retries(
    kafka: KafkaSettings,
    topics: TopicSettings,
    ch: Any,
    ch_settings: ClickHouseSettings,
    make_grid: Any,
    produce_to: Any,
    committed_offsets: Any,
) -> None:
    # The default retries ride out about 16 minutes of a failing ClickHouse; SIGTERM (stop()) in the
    # middle must end the sink at once, with its batch uncommitted (read again at the next start).
    records = make_grid(machines=2, sensors=2, windows=5)
    enc = Serde().encoder("millstream.WindowAggregate", topics.topic_windows)
    produce_to(kafka, topics.topic_windows, [(r["machine_id"].encode(), enc(r)) for r in records])
    down = TroubledClickHouse(ch, fail_for=3600.0, slow_s=0.0)
    group = f"bp-stop-{uuid.uuid4().hex[:6]}"
    runner = SinkRunner(
        down,  # type: ignore[arg-type]
        clickhouse=ch_settings.model_copy(update={"batch_age_ms": 20}),  # default retries and backoff
        sink=SinkSettings(group_id=group),
        kafka=kafka,
        topics=topics,
    )
    outcome: list[BaseException | None] = []

    def run() -> None:
        try:
            runner.run()
            outcome.append(None)
        except BaseException as exc:  # noqa: BLE001 - handed to the test
            outcome.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while down.failures < 3 and time.monotonic() < deadline:  # well into the backoff
        time.sleep(0.1)
    assert down.failures >= 3, "the sink never tried to write"
    stopped_at = time.monotonic()
    runner.stop()
    thread.join(30)
    assert not thread.is_alive() and time.monotonic() - stopped_at < 15
    (error,) = outcome
    assert error is not None and "stopped while retrying" in str(error)
    got = committed_offsets(kafka, group, topics.topic_windows, topics.topic_partitions)
    assert all(o < 0 for o in got.values()), got  # nothing committed: the batch is read again
