"""One reading from a device clock a day ahead must not stall the Flink job.

Real broker, real `millstream run flink` (local MiniCluster). Flink's watermark comes from the
Kafka record timestamp in the source, before the job validates a reading: a reading stamped a day
ahead is dead-lettered, but it moved the watermark a day ahead, and every later reading went to
the late topic until the wall clock caught up. The source now counts a timestamp at most up to the
wall clock.
"""

from __future__ import annotations

import re
import time
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest
from confluent_kafka import Producer

from infra.pipeline import LocalPipeline, PipelineOptions
from infra.procs import ManagedProcess, free_port, wait_until
from schemas.serde import Serde

pytestmark = pytest.mark.integration

MACHINES = ("m-a", "m-b", "m-c", "m-d")


@pytest.fixture(scope="module")
def pipe(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalPipeline]:
    with LocalPipeline(PipelineOptions(data_dir=tmp_path_factory.mktemp("future"), partitions=3)) as p:
        p.start_stack()
        yield p


def metric(text: str, name: str, **labels: str) -> float:
    want = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    for line in text.splitlines():
        m = re.match(rf"{name}\{{([^}}]*)\}} (\S+)$", line)
        if m and ",".join(sorted(m.group(1).split(","))) == want:
            return float(m.group(2))
    return 0.0


def test_a_reading_from_a_day_ahead_does_not_make_the_rest_late(pipe: LocalPipeline) -> None:
    port = free_port()
    env = {
        **pipe.env(),
        "MILLSTREAM_FLINK_DELIVERY": "at-least-once",
    }  # the local broker: see the recovery test
    job = ManagedProcess(
        "flink", [*pipe.cli(), "run", "flink", "--metrics-port", str(port)], pipe.logs / "flink.log", env=env
    ).start()
    try:

        def ready() -> bool:
            job.check_alive()
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=3) as r:  # noqa: S310
                return bool(r.status == 200)

        wait_until(ready, 180, "the Flink job running", 1)
        topic = pipe.topics.topic_readings
        enc = Serde().encoder("Reading", topic)
        producer = Producer(pipe.kafka.librdkafka())

        def send(machine: str, ts: int, seq: int) -> None:
            r: dict[str, Any] = {
                "plant": "p1", "line": "l1", "machine_id": machine, "sensor": "temp", "unit": "Cel",
                "event_time": ts, "value": 50.0, "quality": "GOOD", "gateway_id": "g", "seq": seq,
                "lot_id": None,
            }  # fmt: skip
            producer.produce(topic, enc(r), key=machine.encode(), timestamp=ts)

        seq = 0
        for second in range(30):  # live readings, a day-ahead one per machine after 10 s
            now = int(time.time() * 1000)
            for m in MACHINES:
                seq += 1
                send(m, now, seq)
                if second == 10:
                    send(m, now + 86_400_000, 0)
            producer.poll(0)
            time.sleep(1.0)
        assert producer.flush(30) == 0
        time.sleep(20)  # the last windows close (10 s windows, 2 s out of order)
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:  # noqa: S310
            text = r.read().decode()
        assert metric(text, "millstream_dead_letters_total", reason="invalid_record", stage="windows") == 4
        assert metric(text, "millstream_dead_letters_total", reason="too_late", stage="windows") == 0
        # windows after the day-ahead readings closed too: at least the 20 s of them, per machine
        assert metric(text, "millstream_records_out_total", stage="windows") >= 2 * len(MACHINES)
        assert metric(text, "millstream_watermark_ms", stage="windows") < time.time() * 1000
    finally:
        job.stop(60)
