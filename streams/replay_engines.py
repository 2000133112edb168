"""The two engines of ``millstream replay``, and how each learns that a bounded input has ended.

End of input, counted: the replay knows the exact offset after the last record of every partition
from the producer's delivery reports. The local broker reports a partition's high watermark as the
base offset of its last record batch + 1, so end offsets from the broker are never used for this.

Flink
    The job runs on a local MiniCluster with a *bounded* KafkaSource whose stopping offsets are those
    counted offsets. When every partition reaches its offset the source finishes, Flink sends the
    final watermark (end of event time), every window closes, the sink flushes and the job finishes.

Faust
    The Faust job is unbounded and closes a quiet partition's last windows only with the wall clock
    (``idle_timeout_ms``). Here the end is made explicit instead, without touching the job: after the
    input, one *end marker* reading per partition (machine ``__millstream_end_of_input__``) whose event
    time lies one window (or session gap) plus the out-of-orderness past the newest reading. It moves
    that partition's watermark past every window of the input, which closes them all, exactly as the
    final watermark does in Flink; the marker's own window never closes (idleness is off) and the
    replay ignores the marker. The replay then waits until the job has committed every offset up to
    and including the markers. If the marker would be further in the future than
    MILLSTREAM_STREAM_MAX_FUTURE_MS allows (input near or after the wall clock), the replay falls back
    to a 1 s idle timeout and waits out the wall-clock time the windows need.
"""

from __future__ import annotations

import logging
import os
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from schemas.config import KafkaSettings, TopicSettings
from streams.config import StreamSettings
from streams.replay import ReplayError
from streams.replay_kafka import Produced, produce
from streams.windows import WindowSpec

logger = logging.getLogger(__name__)

END_MACHINE = "__millstream_end_of_input__"


@dataclass
class ReplayRun:
    """What an engine gets: the broker, fresh topics, settings, the input, where to put files."""

    kafka: KafkaSettings
    topics: TopicSettings
    stream: StreamSettings
    records: list[dict[str, Any]]
    workdir: Path
    progress: Any  # rich.progress.Progress
    produced: Produced = field(default_factory=Produced)
    extra_topics: list[str] = field(default_factory=list)  # engine-made topics to delete afterwards

    def produce_input(self) -> None:
        task = self.progress.add_task("produce", total=len(self.records))
        produce(
            self.kafka,
            self.topics.topic_readings,
            self.records,
            self.produced,
            on_progress=lambda n: self.progress.advance(task, n),
        )

    def stop_offsets(self) -> dict[int, int]:
        return {p: self.produced.end_offsets.get(p, 0) for p in range(self.topics.topic_partitions)}


# ---------------------------------------------------------------------------------------------- flink
class FlinkReplay:
    """Bounded run on a local MiniCluster (in this process's JVM)."""

    name = "flink"

    def __init__(self, parallelism: int | None = None) -> None:
        self.parallelism = parallelism

    def run(self, r: ReplayRun) -> None:
        from streams.flink.config import FlinkSettings
        from streams.flink.job import JobSpec
        from streams.flink.runner import LocalJob
        from streams.spc.config import SpcSettings

        r.produce_input()
        flink = FlinkSettings().model_copy(
            update={
                "checkpoint_interval_ms": 0,  # a bounded replay restarts from scratch
                "delivery": "at-least-once",
                "restore": "none",
                "parallelism": self.parallelism or FlinkSettings().parallelism,
            }
        )
        spec = JobSpec(
            stream=r.stream,
            spc=SpcSettings(),
            kafka=r.kafka,
            topics=r.topics,
            flink=flink,
            local=True,
            stop_offsets=r.stop_offsets(),
            name="millstream-replay",
        )
        task = r.progress.add_task("process (flink)", total=r.produced.count)
        job = LocalJob(spec, r.workdir / "flink-log").start()

        def tick(j: LocalJob) -> None:
            r.progress.update(task, completed=min(r.produced.count, j.rest.records_into_windows(j.job_id)))

        job.wait(tick=tick, interval=0.5)
        r.progress.update(task, completed=r.produced.count)

    def close(self) -> None:
        return


# ---------------------------------------------------------------------------------------------- faust
def end_marker_time(stream: StreamSettings, max_ts: int) -> int:
    """An event time whose watermark closes every window that holds a reading at or before ``max_ts``."""
    spec = WindowSpec.parse(stream.window)
    horizon = (spec.size_ms or spec.gap_ms or 0) + 1
    return max_ts + stream.out_of_orderness_ms + horizon


def end_marker(partition: int, ts: int) -> dict[str, Any]:
    return {
        "plant": "", "line": "", "machine_id": END_MACHINE, "sensor": "end-of-input", "unit": "",
        "event_time": ts, "value": 0.0, "quality": "GOOD", "gateway_id": "replay", "seq": partition,
        "lot_id": None,
    }  # fmt: skip


class FaustReplay:
    """The Faust worker (``millstream run faust``) as a subprocess, fed end markers."""

    name = "faust"

    def __init__(self) -> None:
        self.worker: Any = None

    def _env(self, r: ReplayRun, idle_timeout_ms: int) -> dict[str, str]:
        from infra.procs import free_port

        env = {
            "MILLSTREAM_KAFKA_BOOTSTRAP": r.kafka.kafka_bootstrap,
            "MILLSTREAM_STREAM_APP_ID": r.stream.app_id,
            "MILLSTREAM_STREAM_WINDOW": r.stream.window,
            "MILLSTREAM_STREAM_OUT_OF_ORDERNESS_MS": str(r.stream.out_of_orderness_ms),
            "MILLSTREAM_STREAM_ALLOWED_LATENESS_MS": str(r.stream.allowed_lateness_ms),
            "MILLSTREAM_STREAM_IDLE_TIMEOUT_MS": str(idle_timeout_ms),
            "MILLSTREAM_STREAM_MAX_FUTURE_MS": str(r.stream.max_future_ms),
            "MILLSTREAM_STREAM_STATE_DIR": str(r.workdir / "faust"),
            "MILLSTREAM_STREAM_METRICS_PORT": str(free_port()),
            "PYTHONUNBUFFERED": "1",
        }
        for name, value in r.topics:
            env[f"MILLSTREAM_{name.upper()}"] = str(value)
        return env

    def run(self, r: ReplayRun) -> None:
        from infra.procs import ManagedProcess

        max_ts = max(int(x["event_time"]) for x in r.records)
        marker_ts = end_marker_time(r.stream, max_ts)
        use_marker = marker_ts <= time.time() * 1000 + r.stream.max_future_ms - 60_000
        idle = 0 if use_marker else 1000
        r.extra_topics.append(f"{r.stream.app_id}-window-state-changelog")
        self.worker = ManagedProcess(
            "faust",
            [sys.executable, "-m", "infra.cli", "run", "faust"],
            r.workdir / "faust.log",
            env={**os.environ, **self._env(r, idle)},
        ).start()
        r.produce_input()
        if use_marker:
            for p in range(r.topics.topic_partitions):
                produce(r.kafka, r.topics.topic_readings, [end_marker(p, marker_ts)], r.produced, partition=p)
        else:
            logger.warning(
                "the input ends %.0f s from now or later: closing its windows with the wall clock instead "
                "of end markers (slower)",
                (max_ts - time.time() * 1000) / 1000,
            )
        self._wait_consumed(r)
        if not use_marker:
            spec = WindowSpec.parse(r.stream.window)
            horizon = (spec.size_ms or spec.gap_ms or 0) + r.stream.out_of_orderness_ms
            spread = max_ts - min(r.produced.max_ts.values() or [max_ts])
            time.sleep((idle + 1000 + horizon + spread + 2000) / 1000)

    def _wait_consumed(self, r: ReplayRun, timeout: float = 600.0) -> None:
        from confluent_kafka import Consumer, TopicPartition

        ends = r.stop_offsets()
        total = sum(ends.values())
        task = r.progress.add_task("process (faust)", total=r.produced.count)
        c = Consumer({**r.kafka.librdkafka(), "group.id": r.stream.app_id, "enable.auto.commit": False})
        tps = [TopicPartition(r.topics.topic_readings, p) for p in ends]
        deadline = time.monotonic() + timeout
        try:
            while time.monotonic() < deadline:
                self.worker.check_alive()
                committed = {tp.partition: max(tp.offset, 0) for tp in c.committed(tps, timeout=10)}
                done = sum(min(committed.get(p, 0), end) for p, end in ends.items())
                r.progress.update(task, completed=min(r.produced.count, done))
                if done >= total:
                    return
                time.sleep(0.5)
        finally:
            c.close()
        msg = f"the Faust job did not consume the input within {timeout:.0f}s; log: {r.workdir / 'faust.log'}"
        raise ReplayError(msg)

    def close(self) -> None:
        if self.worker is not None:
            self.worker.stop(30)


def new_app_id() -> str:
    return f"millstream-replay-{uuid.uuid4().hex[:10]}"
