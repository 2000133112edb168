"""After a SIGKILL, the restarted Flink job reports no reading late and loses no window.

The Faust counterpart (test_crash_faust_replay) found records replayed into a restored state that had
already counted them, reported as too late. On Flink, keyed state and source offsets come from one
checkpoint, so a replayed record has never been counted; this test holds the Flink job to the same
standard with nothing to spare: out-of-orderness 0 and allowed lateness 0, so a record handled twice
after its window closed, or a window closed too early, would show on the late topic.

Real broker, real ``millstream run flink`` (local MiniCluster, parallelism 2, RocksDB, checkpoints
every second, at-least-once sink: see test_flink_recovery). A producer thread plays readings of four
machines stamped with the wall clock into two partitions; mid-stream the process group is killed
(SIGKILL) after a completed checkpoint and restarted, resuming from that checkpoint.
"""

from __future__ import annotations

import json
import threading
import time
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from confluent_kafka import Producer

from infra.pipeline import LocalPipeline, PipelineOptions
from infra.procs import ManagedProcess, free_port, wait_until
from infra.stack import LocalBroker, create_topics
from schemas.serde import Serde
from streams.flink.job import latest_checkpoint

pytestmark = pytest.mark.integration

WINDOW_MS = 1000
MACHINES = [f"m-{i}" for i in range(4)]
STREAM_S = 20.0


class Stream(threading.Thread):
    """Readings of every machine each 50 ms, event time (and Kafka timestamp) = the wall clock; two
    machines a partition (an empty partition would hold the watermark back for the source idle timeout,
    30 s, and the kill would come after the stream)."""

    def __init__(self, pipe: LocalPipeline) -> None:
        super().__init__(daemon=True)
        self.pipe = pipe
        self.sent: list[dict[str, Any]] = []
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            enc = Serde().encoder("Reading", self.pipe.topics.topic_readings)
            producer = Producer({**self.pipe.kafka.librdkafka(), "acks": "all", "linger.ms": 5})
            end = time.monotonic() + STREAM_S
            seq = 0
            while time.monotonic() < end:
                now = int(time.time() * 1000)
                for i, m in enumerate(MACHINES):
                    seq += 1
                    r = {
                        "plant": "p1", "line": "l1", "machine_id": m, "sensor": "temp", "unit": "u",
                        "event_time": now, "value": float(seq % 13), "quality": "GOOD", "gateway_id": "g",
                        "seq": seq, "lot_id": None,
                    }  # fmt: skip
                    topic = self.pipe.topics.topic_readings
                    producer.produce(topic, enc(r), key=m.encode(), timestamp=now, partition=i % 2)
                    self.sent.append(r)
                producer.poll(0)
                time.sleep(0.05)
            assert producer.flush(30) == 0
        except BaseException as exc:
            self.error = exc


def _flink(pipe: LocalPipeline, name: str) -> ManagedProcess:
    env = {
        **pipe.env(),
        "MILLSTREAM_FLINK_CHECKPOINT_INTERVAL_MS": "1000",
        "MILLSTREAM_FLINK_DELIVERY": "at-least-once",
    }
    return ManagedProcess(
        name,
        [*pipe.cli(), "run", "flink", "--parallelism", "2", "--metrics-port", str(free_port())],
        pipe.logs / f"{name}.log",
        env=env,
        stdout_path=pipe.logs / f"{name}.out",
    ).start()


def _started(proc: ManagedProcess) -> dict[str, Any]:
    def line() -> bool:
        proc.check_alive()
        return bool(proc.stdout_path and proc.stdout_path.exists() and proc.stdout_path.read_text().strip())

    wait_until(line, 180, f"{proc.name} to submit the job", 0.5)
    assert proc.stdout_path is not None
    return dict(json.loads(proc.stdout_path.read_text().splitlines()[0]))


def _closed(sent: list[dict[str, Any]]) -> dict[tuple[str, int], list[float]]:
    """Per (machine, window start) the values, without each machine's last window (nothing closes it)."""
    groups: dict[tuple[str, int], list[float]] = defaultdict(list)
    for r in sent:
        groups[(r["machine_id"], r["event_time"] // WINDOW_MS * WINDOW_MS)].append(r["value"])
    last = {m: max(s for mm, s in groups if mm == m) for m, _ in groups}
    return {k: v for k, v in groups.items() if k[1] != last[k[0]]}


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    data_dir: Path = tmp_path_factory.mktemp("flink-crash-replay")
    opts = PipelineOptions(
        data_dir=data_dir, window=f"tumbling:{WINDOW_MS}ms", out_of_orderness_ms=0,
        allowed_lateness_ms=0, idle_timeout_ms=0, partitions=2,
    )  # fmt: skip
    pipe = LocalPipeline(opts)
    pipe.logs.mkdir(parents=True, exist_ok=True)
    first: ManagedProcess | None = None
    second: ManagedProcess | None = None
    try:
        pipe.broker = LocalBroker(data_dir).start()
        create_topics(pipe.kafka, pipe.topics)
        first = _flink(pipe, "flink-1")
        checkpoints = Path(_started(first)["checkpoint_dir"])
        stream = Stream(pipe)
        stream.start()
        windows = pipe.topics.topic_windows

        def first_windows() -> bool:
            assert first is not None
            first.check_alive()
            return pipe.end_offsets(windows) > 0

        wait_until(first_windows, 120, "first windows", 1)
        seen = latest_checkpoint(checkpoints)
        wait_until(lambda: latest_checkpoint(checkpoints) not in (None, seen), 60, "a checkpoint", 0.5)
        time.sleep(1.5)  # records and windows after the checkpoint: handled again after the restart
        streaming = stream.is_alive()  # else the restart would have nothing to replay
        first.kill()
        killed_at = latest_checkpoint(checkpoints)
        second = _flink(pipe, "flink-2")
        restored = _started(second)["restored_from"]
        stream.join(STREAM_S + 60)
        assert stream.error is None, stream.error
        expected = set(_closed(stream.sent))

        def all_closed() -> bool:
            assert second is not None
            second.check_alive()
            got = {(w["machine_id"], w["window_start"]) for w in pipe.read_topic(windows, 1.0)}
            return expected <= got

        wait_until(all_closed, 120, "every window of the stream", 2)
        yield {
            "sent": stream.sent,
            "killed_at": killed_at,
            "streaming": streaming,
            "restored": restored,
            "windows": pipe.read_topic(windows, 1.0),
            "late": pipe.read_topic(pipe.topics.topic_late, 1.0),
            "dead": pipe.read_topic(pipe.topics.topic_dead_letters, 1.0),
        }
    finally:
        for p in (first, second):
            if p is not None:
                p.stop(30)
        pipe.close()


def test_restarted_from_the_checkpoint_of_the_kill(run: dict[str, Any]) -> None:
    assert run["killed_at"] is not None and run["streaming"]
    assert Path(run["restored"]) == run["killed_at"]


def test_no_reading_reported_late_or_dead(run: dict[str, Any]) -> None:
    assert run["late"] == [] and run["dead"] == []


def test_every_window_equals_batch_recomputation_and_repeats_are_identical(run: dict[str, Any]) -> None:
    contents: dict[tuple[str, int, int], set[tuple[int, float]]] = defaultdict(set)
    final: dict[tuple[str, int], dict[str, Any]] = {}
    for w in run["windows"]:
        k = (w["machine_id"], w["window_start"])
        contents[(*k, w["version"])].add((w["count"], w["sum"]))
        if k not in final or w["version"] >= final[k]["version"]:
            final[k] = w
    assert all(len(c) == 1 for c in contents.values()), "a window written twice with other contents"
    closed = _closed(run["sent"])
    assert set(closed) <= set(final)
    for k, values in closed.items():
        arr = np.array(values)
        assert (final[k]["count"], final[k]["version"]) == (len(values), 0), k
        assert final[k]["mean"] == pytest.approx(arr.mean(), abs=1e-9), k
