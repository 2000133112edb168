"""Every class of bad input through a real Flink job ends in one dead letter, and none moves time.

Real broker, real ``millstream run flink`` (local MiniCluster), one partition so each record's offset
is known. A backlog of good readings of two machines (Kafka timestamp = event time, as the gateways
write it) arrives in two halves; between them sit the bad-input classes of the Faust test
(test_crash_faust_bad_input): undecodable bytes, an empty value, a null value (tombstone), a value of
~1,020,000 bytes, a value of another schema, NaN, inf, an empty machine id, a machine id holding
U+001F, the year 1800, the smallest Avro long, an event time an hour ahead, and a NaN reading whose
machine id has 600 KB (its dead letter's reason used to quote it: over the Kafka sink's
max.request.size, the sink failed and the job restarted into the same record forever). The undecodable and
foreign values carry their producer's clock as Kafka timestamp (what a producer that does not set one
writes): the Flink watermark used to follow it to the wall clock, and every reading of the second half
of the backlog went to the late topic. Checked: each bad record has exactly one dead letter with its
origin, reason code and (truncated) bytes; the one late reading is on the late topic with its offset;
every closed window equals a batch recomputation; the job never restarted; the dead-letter counters
agree with the records.
"""

from __future__ import annotations

import json
import re
import time
import urllib.request
from collections import Counter, defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from bad_input import bad_records
from bad_input import reading as _reading
from confluent_kafka import Producer

from infra.pipeline import LocalPipeline, PipelineOptions
from infra.procs import ManagedProcess, free_port, wait_until
from infra.stack import LocalBroker, create_topics
from schemas.serde import Serde
from streams.pipeline import DEAD_LETTER_PAYLOAD_MAX, DEAD_LETTER_REASON_MAX

pytestmark = pytest.mark.integration

WINDOW_MS = 1000
HALF = 24  # good readings per half of the backlog (4 a window, two machines alternating)


def _get(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=5) as r:  # noqa: S310 - loopback URL
        body = r.read().decode()
    return json.loads(body) if body.startswith(("{", "[")) else body


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    data_dir: Path = tmp_path_factory.mktemp("flink-bad-input")
    opts = PipelineOptions(
        data_dir=data_dir, window=f"tumbling:{WINDOW_MS}ms", out_of_orderness_ms=0,
        allowed_lateness_ms=0, idle_timeout_ms=0, partitions=1,
    )  # fmt: skip
    serde = Serde()
    enc = serde.encoder("Reading", "readings")
    t0 = (int(time.time() * 1000) // WINDOW_MS) * WINDOW_MS - 120_000
    good = [_reading(t0 + i * 250, i + 1, machine=f"m{i % 2 + 1}") for i in range(2 * HALF)]
    # (reason code, value, Kafka timestamp: None = the producer's clock). The readings are stamped
    # inside the backlog: a reading stamped with its producer's clock still moves Flink's watermark (the
    # source cannot decode a value to validate it), which gateways must not do.
    bad: list[tuple[str, bytes | None, int | None]] = [
        (code, value, None if code in ("decode_error", "unknown_schema") else t0)
        for code, value in bad_records(serde, t0, WINDOW_MS)
    ]
    late = enc(_reading(t0 + 5, 999))
    pipe = LocalPipeline(opts)
    pipe.logs.mkdir(parents=True, exist_ok=True)
    job: ManagedProcess | None = None
    try:
        pipe.broker = LocalBroker(data_dir).start()
        create_topics(pipe.kafka, pipe.topics)
        topic = pipe.topics.topic_readings
        port = free_port()
        env = {
            **pipe.env(),
            "MILLSTREAM_FLINK_DELIVERY": "at-least-once",  # the local broker: see test_flink_recovery
            "MILLSTREAM_FLINK_CHECKPOINT_INTERVAL_MS": "1000",
        }
        job = ManagedProcess(
            "flink",
            [*pipe.cli(), "run", "flink", "--metrics-port", str(port)],
            pipe.logs / "flink.log",
            env=env,
            stdout_path=pipe.logs / "flink.out",
        ).start()

        def ready() -> bool:
            assert job is not None
            job.check_alive()
            return bool(_get(f"http://127.0.0.1:{port}/readyz") == "flink_job ok\n")

        wait_until(ready, 180, "the Flink job running", 1)
        assert job.stdout_path is not None
        info = json.loads(job.stdout_path.read_text().splitlines()[0])
        producer = Producer({**pipe.kafka.librdkafka(), "message.max.bytes": 2_000_000})

        def send(value: bytes | None, ts: int | None) -> None:
            producer.produce(topic, value, key=b"m1", timestamp=ts or 0)  # 0: the producer's clock

        for r in good[:HALF]:
            send(enc(r), r["event_time"])
        for _, value, ts in bad:
            send(value, ts)
        assert producer.flush(30) == 0
        dead_topic = pipe.topics.topic_dead_letters
        wait_until(lambda: pipe.end_offsets(dead_topic) >= len(bad), 120, "the dead letters", 0.5)
        time.sleep(1.0)  # several periodic watermarks (200 ms) after the bad values
        for r in good[HALF:]:
            send(enc(r), r["event_time"])
        assert producer.flush(30) == 0
        closed = 2 * (2 * HALF * 250 // WINDOW_MS) - 2  # both machines' windows but their last (open)

        def handled() -> bool:
            assert job is not None
            job.check_alive()
            return pipe.end_offsets(pipe.topics.topic_windows) + pipe.end_offsets(pipe.topics.topic_late) >= (
                closed
            )

        wait_until(handled, 120, "the second half of the backlog handled", 0.5)
        send(late, t0 + 5)
        assert producer.flush(30) == 0
        wait_until(lambda: pipe.end_offsets(pipe.topics.topic_late) >= 1, 60, "the late record", 0.5)
        time.sleep(2.0)  # a (wrong) second late record or window would be out by now
        rest = f"http://127.0.0.1:{info['rest_port']}/jobs/{info['job_id']}"
        yield {
            "topic": topic,
            "bad": bad,
            "first_bad": HALF,
            "good": good,
            "late": (HALF + len(bad) + HALF, late),
            "dead": pipe.read_topic(dead_topic, 1.0),
            "late_topic": pipe.read_topic(pipe.topics.topic_late, 1.0),
            "windows": pipe.read_topic(pipe.topics.topic_windows, 1.0),
            "metrics": _get(f"http://127.0.0.1:{port}/metrics"),
            "restarts": _get(f"{rest}/metrics?get=numRestarts"),
            "exceptions": _get(f"{rest}/exceptions").get("exceptionHistory", {}).get("entries", []),
            "state": _get(rest).get("state"),
        }
    finally:
        if job is not None:
            job.stop(30)
        pipe.close()


def test_every_bad_record_has_one_dead_letter_with_its_origin(run: dict[str, Any]) -> None:
    by_offset = defaultdict(list)
    for d in run["dead"]:
        by_offset[d["offset"]].append(d)
    first = run["first_bad"]
    assert sorted(by_offset) == list(range(first, first + len(run["bad"])))
    for i, (code, value, _) in enumerate(run["bad"]):
        [d] = by_offset[first + i]
        assert (d["stage"], d["topic"], d["partition"], d["key"]) == ("windows", run["topic"], 0, b"m1")
        original = value or b""
        if len(original) > DEAD_LETTER_PAYLOAD_MAX:
            assert d["payload"] == original[:DEAD_LETTER_PAYLOAD_MAX]
            assert f"truncated to its first {DEAD_LETTER_PAYLOAD_MAX} of {len(original)} bytes" in d["reason"]
        else:
            assert d["payload"] == original, i
        assert d["reason_code"] == code, (i, d["reason"][:200])
        assert d["reason"].strip(), i
        assert len(d["reason"].encode()) <= DEAD_LETTER_REASON_MAX, i


def test_only_the_late_reading_is_late_and_carries_its_offset(run: dict[str, Any]) -> None:
    offset, _ = run["late"]
    assert [(d["reason_code"], d["topic"], d["partition"], d["offset"]) for d in run["late_topic"]] == [
        ("too_late", run["topic"], 0, offset)
    ]
    assert Serde().decode(run["late_topic"][0]["payload"]).record["seq"] == 999


def test_good_readings_windows_equal_batch_recomputation(run: dict[str, Any]) -> None:
    groups: dict[tuple[str, int], list[float]] = defaultdict(list)
    for r in run["good"]:
        groups[(r["machine_id"], r["event_time"] // WINDOW_MS * WINDOW_MS)].append(r["value"])
    final: dict[tuple[str, int], dict[str, Any]] = {}
    for w in run["windows"]:
        k = (w["machine_id"], w["window_start"])
        if k not in final or w["version"] >= final[k]["version"]:
            final[k] = w
    last = {m: max(s for mm, s in groups if mm == m) for m, _ in groups}
    closed = {k: v for k, v in groups.items() if k[1] != last[k[0]]}  # the last ones stay open
    assert set(final) == set(closed)
    for k, values in closed.items():
        arr = np.array(values)
        assert final[k]["count"] == len(values), k
        assert final[k]["mean"] == pytest.approx(arr.mean(), abs=1e-9)
        assert final[k]["max"] == arr.max() and final[k]["min"] == arr.min()


def test_job_never_restarted_and_counters_agree(run: dict[str, Any]) -> None:
    assert run["state"] == "RUNNING"
    assert [m["value"] for m in run["restarts"]] == ["0"]
    assert run["exceptions"] == []
    want = Counter(code for code, _, _ in run["bad"]) + Counter({"too_late": 1})
    for code, n in want.items():
        labels = rf'(?=[^}}]*stage="windows")(?=[^}}]*reason="{code}")[^}}]*'
        m = re.search(rf"^millstream_dead_letters_total\{{{labels}\}} (\S+)$", run["metrics"], re.M)
        assert m is not None and float(m.group(1)) == n, code
