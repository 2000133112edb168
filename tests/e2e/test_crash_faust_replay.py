"""After a crash, records the restored state has already seen are not reported late.

Real broker, real Faust worker processes. Faust commits input offsets once a second, after the state
writes (changelog) of the records before them; a worker killed in between leaves its changelog ahead of
the group's committed offset, and the restarted worker is given those records again. Each of them is
already counted in the restored windows; handled again, a reading whose window was purged since is
reported as too late: a false dead letter on the late topic, and millstream_dead_letters_total
{reason="too_late"} counting readings that were not lost. The test feeds the worker a batch at a time,
freezes it (SIGSTOP) a little after each batch, and kills it (SIGKILL) when the changelog is ahead of
the committed offset (otherwise it lets it go on with the next batch). Checked: no late
record, every window equals a batch recomputation, no window is emitted twice with different
contents, and the readings after the restart are handled as usual.
"""

from __future__ import annotations

import json
import random
import re
import signal
import time
import urllib.request
from collections import defaultdict
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
from confluent_kafka import Consumer, Producer, TopicPartition

from infra.pipeline import LocalPipeline, PipelineOptions
from infra.procs import wait_until
from schemas.serde import Serde

pytestmark = pytest.mark.integration

WINDOW_MS = 1000
PER_WINDOW = 5
GROUP = "millstream-windows"  # the app id's consumer group


def _readings(t0: int, first: int, windows: int) -> list[dict[str, Any]]:
    rng = random.Random(first)
    return [
        {
            "plant": "p1", "line": "l1", "machine_id": "m1", "sensor": "temperature", "unit": "Cel",
            "event_time": t0 + w * WINDOW_MS + i * (WINDOW_MS // PER_WINDOW),
            "value": round(rng.gauss(50, 1), 6),
            "quality": "GOOD", "gateway_id": "gw", "seq": w * PER_WINDOW + i, "lot_id": None,
        }
        for w in range(first, first + windows)
        for i in range(PER_WINDOW)
    ]  # fmt: skip


def _changelog_mark(pipe: LocalPipeline) -> int:
    """The highest next-input offset recorded in the worker's state changelog (-1: none)."""
    c = Consumer({**pipe.kafka.librdkafka(), "group.id": "millstream-inspect", "enable.auto.commit": False})
    try:
        names = [t for t in c.list_topics(timeout=10).topics if t.startswith(GROUP) and "changelog" in t]
        parts = [
            TopicPartition(t, p, 0) for t in names for p in c.list_topics(t, timeout=10).topics[t].partitions
        ]
        c.assign(parts)
        mark = -1
        while msgs := c.consume(500, 1.0):
            for m in msgs:
                value = m.value()
                if not m.error() and value:
                    mark = max(mark, int(json.loads(value).get("next_offset") or -1))
        return mark
    finally:
        c.close()


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    opts = PipelineOptions(
        data_dir=tmp_path_factory.mktemp("replay"), window=f"tumbling:{WINDOW_MS}ms",
        out_of_orderness_ms=0, allowed_lateness_ms=0, idle_timeout_ms=0, partitions=1,
        extra_env={"MILLSTREAM_KAFKA_SESSION_TIMEOUT_MS": "3000"},
    )  # fmt: skip
    enc = Serde().encoder("Reading", "readings")
    t0 = (int(time.time() * 1000) // WINDOW_MS) * WINDOW_MS - 600_000
    batches = [_readings(t0, 20 * k, 20) for k in range(12)]
    with LocalPipeline(opts) as pipe:
        pipe.start_stack()
        topic = pipe.topics.topic_readings
        producer = Producer(pipe.kafka.librdkafka())

        def send(records: list[dict[str, Any]]) -> None:
            for r in records:
                producer.produce(topic, enc(r), key=b"m1")
            producer.flush(30)

        def committed() -> int:
            return pipe.committed_offsets(GROUP, topic, [0])[0]

        worker = pipe.start_worker()
        sent: list[dict[str, Any]] = batches.pop(0)
        send(sent)  # the worker is up and has handled and committed a first batch before the freezes
        wait_until(lambda: (pipe.check_alive(), committed() == len(sent))[1], 300, "the first batch", 0.2)
        state_ahead = None
        while batches and state_ahead is None:
            batch = batches.pop(0)
            send(batch)
            sent += batch
            # Frozen a little after the batch was sent, a bit later with each batch so that the
            # freezes sweep Faust's one-second commit cycle: the worker handles a batch within a
            # fraction of a second and writes each record's state as it goes (after the brokers took
            # the record's outputs), so a freeze between those writes and the next commit finds the
            # changelog ahead of the committed offset.
            time.sleep(0.05 + 0.08 * (len(sent) // len(batch) - 2))
            pipe.check_alive()
            worker.signal(signal.SIGSTOP)
            time.sleep(0.5)  # requests already on their way arrive
            mark, done = _changelog_mark(pipe), committed()
            if mark > done:
                state_ahead = (mark, done)
                worker.signal(signal.SIGKILL)
                worker.proc.wait(10)  # type: ignore[union-attr]
            else:
                worker.signal(signal.SIGCONT)
        assert state_ahead is not None, "the worker always committed before it could be killed"
        second = [r for b in batches for r in b]
        pipe.start_worker()  # same group, same state topics: a restart
        send(second)
        total = len(sent) + len(second)
        wait_until(lambda: (pipe.check_alive(), committed() == total)[1], 300, "every record committed", 0.5)
        pipe.wait_quiet(pipe.topics.topic_windows, quiet_s=2, timeout=30)
        url = f"http://127.0.0.1:{pipe.ports['windows']}/metrics"
        metrics = urllib.request.urlopen(url, timeout=5).read().decode()  # noqa: S310 - loopback URL
        yield {
            "readings": sent + second,
            "state_ahead": state_ahead,
            "windows": pipe.read_topic(pipe.topics.topic_windows),
            "late": pipe.read_topic(pipe.topics.topic_late, 1.0),
            "dead": pipe.read_topic(pipe.topics.topic_dead_letters, 1.0),
            "metrics": metrics,
        }


def test_replayed_records_are_not_reported_late(run: dict[str, Any]) -> None:
    assert run["late"] == [] and run["dead"] == []
    m = re.search(
        r'^millstream_dead_letters_total\{(?=[^}]*reason="too_late")[^}]*\} (\S+)$', run["metrics"], re.M
    )
    assert m is None or float(m.group(1)) == 0


def test_windows_counted_once_and_equal_batch_recomputation(run: dict[str, Any]) -> None:
    groups: dict[int, list[float]] = defaultdict(list)
    for r in run["readings"]:
        groups[r["event_time"] // WINDOW_MS * WINDOW_MS].append(r["value"])
    contents: dict[tuple[int, int], set[tuple[int, float]]] = defaultdict(set)
    final: dict[int, dict[str, Any]] = {}
    for w in run["windows"]:
        contents[(w["window_start"], w["version"])].add((w["count"], w["mean"]))
        if w["window_start"] not in final or w["version"] >= final[w["window_start"]]["version"]:
            final[w["window_start"]] = w
    assert all(len(c) == 1 for c in contents.values())
    last = max(groups)  # the newest window stays open: no later reading closes it
    assert set(final) == set(groups) - {last}
    for start, w in final.items():
        arr = np.array(groups[start])
        assert w["count"] == len(arr), start
        assert w["mean"] == pytest.approx(arr.mean(), abs=1e-9)
        assert w["std"] == pytest.approx(arr.std(ddof=1), abs=1e-9)
        assert w["version"] == 0, start
