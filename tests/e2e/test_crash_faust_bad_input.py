"""Every class of bad input through a real Faust worker ends in one dead letter with its reason.

Real broker, real ``millstream run faust``. One partition, so each record's offset is known. Among
good readings of two machines sit: undecodable bytes, an empty value, a null value (tombstone), a
value bigger than a produce request may be (its dead letter used to be refused by the producer, which
crashed the agent on every later record of the partition), a value of another schema, a
non-finite value, an empty machine id, a machine id holding the state-key separator, machine ids
of 600 KB and 1 MB (their dead letter quoted the id in its reason; their window was too big), event times
outside ClickHouse's DateTime64 range (year 1800, and the smallest Avro long, whose window could not
even be encoded and used to crash the agent), an event time far ahead of the wall clock, and a reading
too late for its window. Checked: each bad record has exactly one dead letter carrying its topic,
partition, offset, key, original bytes, a reason code and a reason text; the late one is on the late
topic with its offset; the agent never crashed; the good readings' windows equal a batch
recomputation; the dead-letter counter agrees with the records.
"""

from __future__ import annotations

import re
import time
import urllib.request
from collections import Counter, defaultdict
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
from bad_input import bad_records
from bad_input import reading as _reading
from confluent_kafka import Producer

from infra.pipeline import LocalPipeline, PipelineOptions
from infra.procs import wait_until
from schemas.serde import Serde
from streams.pipeline import DEAD_LETTER_PAYLOAD_MAX, DEAD_LETTER_REASON_MAX

pytestmark = pytest.mark.integration

WINDOW_MS = 1000
GOOD_WINDOWS = 12


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    opts = PipelineOptions(
        data_dir=tmp_path_factory.mktemp("badinput"), window=f"tumbling:{WINDOW_MS}ms",
        out_of_orderness_ms=0, allowed_lateness_ms=0, idle_timeout_ms=0, partitions=1,
    )  # fmt: skip
    serde = Serde()
    enc = serde.encoder("Reading", "readings")
    t0 = (int(time.time() * 1000) // WINDOW_MS) * WINDOW_MS - 120_000
    good = [_reading(t0 + i * 250, i + 1, machine=f"m{i % 2 + 1}") for i in range(GOOD_WINDOWS * 4)]
    bad = bad_records(serde, t0, WINDOW_MS)
    # a 1 MB machine id: its window would be over the produce limit
    bad.append(("invalid_record", enc(_reading(t0 + 60, 908, machine="m" * 999_000))))
    # Bad records first (the smallest long used to crash the agent when the next reading closed its
    # window), then the good readings, then one reading too late for its (closed, purged) window.
    late = enc(_reading(t0 + 5, 999))
    values = [v for _, v in bad] + [enc(r) for r in good] + [late]
    with LocalPipeline(opts) as pipe:
        pipe.start_stack()
        pipe.start_worker()
        producer = Producer({**pipe.kafka.librdkafka(), "message.max.bytes": 2_000_000})
        for v in values:
            producer.produce(pipe.topics.topic_readings, v, key=b"m1")
        producer.flush(30)
        total = len(values)

        def caught_up() -> bool:
            pipe.check_alive()
            committed = pipe.committed_offsets("millstream-windows", pipe.topics.topic_readings, [0])
            return committed == {0: total}

        wait_until(caught_up, 300, "the worker to handle every record", 0.5)
        late_topic = pipe.topics.topic_late
        wait_until(lambda: pipe.end_offsets(late_topic) >= 1, 60, "the late record on the late topic", 0.5)
        pipe.wait_quiet(pipe.topics.topic_windows, quiet_s=2, timeout=30)
        url = f"http://127.0.0.1:{pipe.ports['windows']}/metrics"
        metrics = urllib.request.urlopen(url, timeout=5).read().decode()  # noqa: S310 - loopback URL
        yield {
            "topic": pipe.topics.topic_readings,
            "bad": bad,
            "good": good,
            "late": (len(values) - 1, late),
            "dead": pipe.read_topic(pipe.topics.topic_dead_letters, 1.0),
            "late_topic": pipe.read_topic(pipe.topics.topic_late, 1.0),
            "windows": pipe.read_topic(pipe.topics.topic_windows, 1.0),
            "metrics": metrics,
            "log": (pipe.logs / "windows.log").read_text(errors="replace"),
        }


def test_every_bad_record_has_one_dead_letter_with_its_origin(run: dict[str, Any]) -> None:
    by_offset = defaultdict(list)
    for d in run["dead"]:
        by_offset[d["offset"]].append(d)
    assert sorted(by_offset) == list(range(len(run["bad"])))
    for offset, (code, value) in enumerate(run["bad"]):
        [d] = by_offset[offset]
        assert (d["stage"], d["topic"], d["partition"], d["key"]) == ("windows", run["topic"], 0, b"m1")
        original = value or b""
        if len(original) > DEAD_LETTER_PAYLOAD_MAX:
            assert d["payload"] == original[:DEAD_LETTER_PAYLOAD_MAX]
            assert f"truncated to its first {DEAD_LETTER_PAYLOAD_MAX} of {len(original)} bytes" in d["reason"]
        else:
            assert d["payload"] == original, offset
        assert d["reason_code"] == code, (offset, d["reason"])
        assert d["reason"].strip(), offset
        assert len(d["reason"].encode()) <= DEAD_LETTER_REASON_MAX, offset


def test_late_record_carries_its_offset(run: dict[str, Any]) -> None:
    offset, _ = run["late"]
    [d] = run["late_topic"]
    origin = (d["reason_code"], d["topic"], d["partition"], d["offset"])
    assert origin == ("too_late", run["topic"], 0, offset)
    assert Serde().decode(d["payload"]).record["seq"] == 999


def test_agent_never_crashed_and_counters_agree(run: dict[str, Any]) -> None:
    assert "Crashed" not in run["log"]
    want = Counter(code for code, _ in run["bad"])
    for code, n in want.items():
        labels = rf'(?=[^}}]*stage="windows")(?=[^}}]*reason="{code}")[^}}]*'
        m = re.search(rf"^millstream_dead_letters_total\{{{labels}\}} (\S+)$", run["metrics"], re.M)
        assert m is not None and float(m.group(1)) == n, code


def test_good_readings_windows_equal_batch_recomputation(run: dict[str, Any]) -> None:
    groups: dict[tuple[str, int], list[float]] = defaultdict(list)
    for r in run["good"]:
        groups[(r["machine_id"], r["event_time"] // WINDOW_MS * WINDOW_MS)].append(r["value"])
    final: dict[tuple[str, int], dict[str, Any]] = {}
    for w in run["windows"]:
        k = (w["machine_id"], w["window_start"])
        if k not in final or w["version"] >= final[k]["version"]:
            final[k] = w
    # The last window of each machine stays open (no later reading closes it).
    closed = {k: v for k, v in groups.items() if k in final}
    assert len(closed) >= len(groups) - 2
    assert set(final) == set(closed)
    for k, values in closed.items():
        arr = np.array(values)
        assert final[k]["count"] == len(values), k
        assert final[k]["mean"] == pytest.approx(arr.mean(), abs=1e-9)
        assert final[k]["max"] == arr.max() and final[k]["min"] == arr.min()
