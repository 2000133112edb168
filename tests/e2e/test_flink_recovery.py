"""Crash recovery of the Flink job, end to end on real components.

A producer thread plays a live stream (event time = wall clock, out of order within the allowed
out-of-orderness) into the real broker; ``millstream run flink`` (local MiniCluster, RocksDB state,
exactly-once checkpoints every second) processes it; ``millstream sink`` writes the windows into the
embedded ClickHouse. Mid-stream the Flink process group is killed with SIGKILL (no shutdown hook),
restarted, and must resume from the newest completed checkpoint in the checkpoint folder. After the
stream ends every window of a batch recomputation is in ClickHouse exactly once, with the recomputed
statistics.

The Kafka sink runs at-least-once here: the local broker keeps aborted transactions visible to
read_committed consumers and never times out an open one (docs/scaling-out.md, "Delivery"), so
transactions would add nothing but the risk of a stalled consumer. Windows written after the last
checkpoint are written again after the restart; the test checks that such repeats are identical, which
is what lets the ClickHouse sink (ReplacingMergeTree by window identity and version) keep one row.
"""

from __future__ import annotations

import json
import random
import threading
import time
import urllib.request
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from infra.pipeline import LocalPipeline, PipelineOptions
from infra.procs import ManagedProcess, free_port, wait_until
from infra.stack import LocalBroker, create_topics
from streams.flink.job import latest_checkpoint
from streams.replay_kafka import Produced, collect, produce

pytestmark = pytest.mark.integration

WINDOW_MS = 2000
OOO_MS = 500
LATENESS_MS = 1000
IDLE_MS = 5000  # per machine; a busy machine can hold a Python worker back for 2 s
MACHINES = [f"m-{i}" for i in range(6)]
SENSORS = ["temperature", "vibration_rms"]
STREAM_S = 30.0  # wall-clock length of the stream
BAD = {
    "decode_error": b"\x17\x00not avro at all",
    "unknown_schema": b"\xc3\x01" + (0x1234_5678_9ABC_DEF0).to_bytes(8, "little") + b"\x02\x04",
}
TICK_S = 0.1  # one reading per key per tick


class LiveStream(threading.Thread):
    """Readings stamped with the wall clock minus up to 300 ms (out of order within OOO_MS)."""

    def __init__(self, pipe: LocalPipeline) -> None:
        super().__init__(daemon=True)
        self.pipe = pipe
        self.sent: list[dict[str, Any]] = []
        self.produced = Produced()
        self.error: BaseException | None = None
        self.rng = random.Random(20261122)

    def run(self) -> None:
        from confluent_kafka import Producer

        try:
            end = time.monotonic() + STREAM_S
            seq = 0
            raw = Producer({**self.pipe.kafka.librdkafka(), "acks": "all"})
            for value in BAD.values():  # rejected values in the middle of good ones: dead letters
                raw.produce(self.pipe.topics.topic_readings, value, key=b"m-0")
            raw.flush(10)
            while time.monotonic() < end:
                now = int(time.time() * 1000)
                batch = []
                for m in MACHINES:
                    for s in SENSORS:
                        batch.append(
                            {
                                "plant": "p1", "line": "l1", "machine_id": m, "sensor": s, "unit": "u",
                                "event_time": now - self.rng.randrange(0, 300),
                                "value": round(self.rng.gauss(50, 5), 6), "quality": "GOOD",
                                "gateway_id": "gw-test", "seq": seq, "lot_id": None,
                            }
                        )  # fmt: skip
                        seq += 1
                produce(self.pipe.kafka, self.pipe.topics.topic_readings, batch, self.produced)
                self.sent.extend(batch)
                time.sleep(TICK_S)
        except BaseException as exc:
            self.error = exc


def _flink(pipe: LocalPipeline, name: str, metrics_port: int) -> ManagedProcess:
    env = {
        **pipe.env(),
        "MILLSTREAM_FLINK_CHECKPOINT_INTERVAL_MS": "1000",
        "MILLSTREAM_FLINK_DELIVERY": "at-least-once",
    }
    return ManagedProcess(
        name,
        [*pipe.cli(), "run", "flink", "--parallelism", "2", "--metrics-port", str(metrics_port)],
        pipe.logs / f"{name}.log",
        env=env,
        stdout_path=pipe.logs / f"{name}.out",
    ).start()


def _started(proc: ManagedProcess) -> dict[str, Any]:
    """The JSON line ``run flink`` prints once the job is submitted."""

    def line() -> bool:
        proc.check_alive()
        return bool(proc.stdout_path and proc.stdout_path.exists() and proc.stdout_path.read_text().strip())

    wait_until(line, 120, f"{proc.name} to submit the job", 0.5)
    assert proc.stdout_path is not None
    return dict(json.loads(proc.stdout_path.read_text().splitlines()[0]))


def _windows(
    pipe: LocalPipeline, positions: dict[tuple[str, int], int] | None = None
) -> list[dict[str, Any]]:
    topic = pipe.topics.topic_windows
    return collect(pipe.kafka, [topic], quiet_s=1.0, timeout=30, positions=positions)[topic]


def _sink_caught_up(pipe: LocalPipeline, positions: dict[tuple[str, int], int]) -> bool:
    """The sink committed past the last window record of every partition. (Not "lag 0": after a
    transaction the partition ends with a commit marker that a consumer never commits past.)"""
    from confluent_kafka import Consumer, TopicPartition

    pipe.check_alive("sink")
    c = Consumer({**pipe.kafka.librdkafka(), "group.id": "millstream-sink", "enable.auto.commit": False})
    try:
        tps = [TopicPartition(t, p) for (t, p) in positions]
        committed = {(tp.topic, tp.partition): tp.offset for tp in c.committed(tps, timeout=10)}
    finally:
        c.close()
    return all(committed.get(k, -1) >= end for k, end in positions.items())


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    data_dir: Path = tmp_path_factory.mktemp("flink-recovery")
    opts = PipelineOptions(
        data_dir=data_dir,
        window=f"tumbling:{WINDOW_MS}ms",
        out_of_orderness_ms=OOO_MS,
        allowed_lateness_ms=LATENESS_MS,
        idle_timeout_ms=IDLE_MS,
        partitions=3,
    )
    pipe = LocalPipeline(opts)
    pipe.logs.mkdir(parents=True, exist_ok=True)
    first: ManagedProcess | None = None
    second: ManagedProcess | None = None
    try:
        pipe.broker = LocalBroker(data_dir).start()
        create_topics(pipe.kafka, pipe.topics)
        pipe.start_sink()
        ports = (free_port(), free_port())
        first = _flink(pipe, "flink-1", ports[0])
        info1 = _started(first)
        checkpoints = Path(info1["checkpoint_dir"])
        stream = LiveStream(pipe)
        stream.start()

        # Mid-stream: once windows have been committed and a checkpoint completed after them.
        def first_windows() -> bool:
            first.check_alive()
            return len(_windows(pipe)) > 0

        wait_until(first_windows, 120, "first windows", 1)
        seen = latest_checkpoint(checkpoints)
        wait_until(lambda: latest_checkpoint(checkpoints) not in (None, seen), 60, "a checkpoint", 0.5)
        time.sleep(1.5)  # some records and windows after the last checkpoint, to be replayed
        metrics = urllib.request.urlopen(f"http://127.0.0.1:{ports[0]}/metrics", timeout=5).read().decode()
        with urllib.request.urlopen(f"http://127.0.0.1:{ports[0]}/readyz", timeout=5) as r:  # noqa: S310
            ready = (r.status, r.read().decode())  # the job runs: ready (it compared the wrong name)
        first.kill()  # SIGKILL to the whole group: client, JVM, Python workers
        killed_at = latest_checkpoint(checkpoints)
        committed_before = len(_windows(pipe))
        second = _flink(pipe, "flink-2", ports[1])
        info2 = _started(second)
        stream.join(STREAM_S + 60)
        assert stream.error is None, stream.error
        sent = stream.sent
        expected = {(r["machine_id"], r["sensor"], r["event_time"] // WINDOW_MS) for r in sent}

        def all_closed() -> bool:
            second.check_alive()
            return len({(w["machine_id"], w["sensor"], w["window_start"]) for w in _windows(pipe)}) >= len(
                expected
            )

        try:
            wait_until(all_closed, 120, "every window of the stream to be committed", 2)
        except Exception as exc:
            got = {(w["machine_id"], w["sensor"], w["window_start"] // WINDOW_MS) for w in _windows(pipe)}
            missing = sorted(expected - got)
            raise AssertionError(
                f"{exc}: {len(missing)} missing, e.g. {missing[:6]}; killed at {killed_at}"
            ) from exc
        positions: dict[tuple[str, int], int] = {}
        topic_rows = _windows(pipe, positions)
        wait_until(lambda: _sink_caught_up(pipe, positions), 90, "the sink to write every window", 1)
        pipe.stop("sink")
        second.stop(30)
        from sinks.clickhouse import connect
        from sinks.config import ClickHouseSettings

        client = connect(ClickHouseSettings(url=f"chdb://{pipe.clickhouse_path}"))
        try:
            rows = client.query(
                "SELECT machine_id, sensor, toUnixTimestamp64Milli(window_start), "
                "toUnixTimestamp64Milli(window_end), count, mean, min, max, std "
                "FROM window_aggregates FINAL"
            ).result_rows
            final_count = client.query("SELECT count() FROM window_aggregates FINAL").result_rows[0][0]
            dead = client.query(
                "SELECT reason_code, partition, offset, hex(payload) FROM dead_letters FINAL "
                "WHERE stage = 'windows'"
            ).result_rows
            client.command("OPTIMIZE TABLE window_aggregates FINAL")
            plain_count = client.query("SELECT count() FROM window_aggregates").result_rows[0][0]
        finally:
            client.close()
        yield {
            "sent": sent,
            "rows": rows,
            "final_count": final_count,
            "plain_count": plain_count,
            "topic_rows": topic_rows,
            "info1": info1,
            "info2": info2,
            "killed_at": killed_at,
            "committed_before": committed_before,
            "metrics": metrics,
            "ready": ready,
            "dead": dead,
        }
    finally:
        for p in (first, second):
            if p is not None:
                p.stop(20)
        pipe.close()


def test_restart_resumed_from_the_latest_completed_checkpoint(run: dict[str, Any]) -> None:
    assert run["info1"]["restored_from"] is None
    assert run["killed_at"] is not None
    restored = Path(run["info2"]["restored_from"])
    # The newest completed checkpoint when the first process died (none can complete after the kill).
    assert restored == run["killed_at"]
    assert (restored / "_metadata").is_file()
    assert run["committed_before"] > 0


def test_no_window_lost_or_duplicated_in_clickhouse(run: dict[str, Any]) -> None:
    groups: dict[tuple[str, str, int], list[float]] = defaultdict(list)
    seen: set[tuple[str, str, int]] = set()
    for r in run["sent"]:  # the operator keeps the first value of a (key, timestamp)
        ident = (r["machine_id"], r["sensor"], r["event_time"])
        if ident in seen:
            continue
        seen.add(ident)
        groups[(r["machine_id"], r["sensor"], r["event_time"] // WINDOW_MS * WINDOW_MS)].append(r["value"])
    got = {(m, s, ws): (we, n, mean, lo, hi, std) for m, s, ws, we, n, mean, lo, hi, std in run["rows"]}
    assert len(run["rows"]) == len(got), "one FINAL row per window"
    assert set(got) == set(groups), "every window of the stream, and no other"
    for key, values in groups.items():
        we, n, mean, lo, hi, std = got[key]
        arr = np.array(values)
        assert we == key[2] + WINDOW_MS
        assert n == len(values), key
        assert lo == arr.min() and hi == arr.max(), key
        assert mean == pytest.approx(arr.mean(), abs=1e-9), key
        assert std == pytest.approx(arr.std(ddof=1) if len(values) > 1 else 0.0, abs=1e-9), key
    assert run["plain_count"] == run["final_count"] == len(groups)


def test_windows_written_again_after_the_restart_are_identical_replays(run: dict[str, Any]) -> None:
    stats = defaultdict(set)
    for w in run["topic_rows"]:
        ident = (w["machine_id"], w["sensor"], w["window_start"], w["version"])
        stats[ident].add((w["window_end"], w["count"], w["sum"], w["min"], w["max"], w["std"], w["p50"]))
    differing = {k: v for k, v in stats.items() if len(v) > 1}
    assert not differing, f"a window version was written twice with different statistics: {differing}"
    # Each window has one version per late update; the stream has no late readings.
    assert {k[3] for k in stats} == {0}


def test_client_process_served_the_shared_metrics(run: dict[str, Any]) -> None:
    lines = [line for line in run["metrics"].splitlines() if line.startswith("millstream_records_in_total")]
    assert lines and float(lines[0].rsplit(" ", 1)[1]) > 0


def test_the_running_job_is_ready(run: dict[str, Any]) -> None:
    assert run["ready"] == (200, "flink_job ok\n")


def test_rejected_values_in_clickhouse_with_their_partition_and_offset(run: dict[str, Any]) -> None:
    rows = {code: (partition, offset, payload) for code, partition, offset, payload in run["dead"]}
    assert set(rows) == set(BAD), run["dead"]
    for code, (partition, offset, payload) in rows.items():
        assert partition >= 0 and offset >= 0
        assert payload == BAD[code].hex().upper()
