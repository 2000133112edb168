"""End to end on real components: broker → Faust worker → windows topic → sink → embedded ClickHouse,
scraped by a real Prometheus.

Readings are produced by the test (not the simulator) so the expected windows can be recomputed in
batch: out of order within the allowed out-of-orderness, one late-but-allowed reading, exact
duplicates from a "gateway retry", garbage bytes and a record of an unknown schema.
"""

from __future__ import annotations

import random
import time
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from confluent_kafka import Producer

from infra.pipeline import LocalPipeline, PipelineOptions
from infra.procs import wait_until
from schemas.serde import Serde

pytestmark = pytest.mark.integration

WINDOW_MS = 5000
OOO_MS = 1000
LATENESS_MS = 2000
MACHINES = ["m-1", "m-2", "m-3"]
SENSORS = ["temperature", "vibration_rms"]


def _reading(machine: str, sensor: str, ts: int, value: float, seq: int) -> dict[str, Any]:
    return {
        "plant": "p1",
        "line": "l1",
        "machine_id": machine,
        "sensor": sensor,
        "unit": "u",
        "event_time": ts,
        "value": value,
        "quality": "GOOD",
        "gateway_id": "gw-test",
        "seq": seq,
        "lot_id": None,
    }


def _plan(
    rng: random.Random, t0: int
) -> tuple[dict[int, list[bytes]], list[dict[str, Any]], dict[str, bytes]]:
    """Per-partition send order, the distinct readings, and the two bad payloads."""
    serde = Serde()
    enc = serde.encoder("Reading", "readings")
    sends: dict[int, list[bytes]] = defaultdict(list)
    distinct: list[dict[str, Any]] = []
    seq = 0
    for p, machine in enumerate(MACHINES):
        records = []
        for sensor in SENSORS:
            for i in range(40):  # 20 s of data, 4 windows
                ts = t0 + i * 500 + rng.randrange(0, 400)
                records.append(_reading(machine, sensor, ts, round(rng.gauss(50, 5), 6), seq))
                seq += 1
        records.sort(key=lambda r: r["event_time"])
        distinct.extend(records)
        # Shuffle locally: a reading is never more than OOO_MS behind the max event time seen before it.
        order = records[:]
        for _ in range(200):
            i = rng.randrange(1, len(order))
            a, b = order[i - 1], order[i]
            if abs(a["event_time"] - b["event_time"]) < OOO_MS // 2:
                order[i - 1], order[i] = b, a
        # One late-but-allowed reading: from the first window, held back until the watermark has
        # passed that window's end (so it was emitted) but not its end + allowed lateness.
        late = next(r for r in order if r["event_time"] < t0 + WINDOW_MS and r["event_time"] > t0 + 4000)
        order.remove(late)
        cut = next(i for i, r in enumerate(order) if r["event_time"] >= t0 + WINDOW_MS + OOO_MS + 500)
        order.insert(cut + 1, late)
        payloads = [enc(r) for r in order]
        # Gateway retry: exact duplicates of a few readings, sent again right after the originals.
        for j in (5, 17, 33, 60):
            payloads.insert(j + 1, payloads[j])
        sends[p] = payloads
    bad = {
        "garbage": b"\x17\x00not avro at all",
        "unknown_schema": b"\xc3\x01" + (0x1234_5678_9ABC_DEF0).to_bytes(8, "little") + b"\x02\x04",
    }
    return sends, distinct, bad


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    data_dir: Path = tmp_path_factory.mktemp("e2e")
    opts = PipelineOptions(
        data_dir=data_dir,
        window=f"tumbling:{WINDOW_MS}ms",
        out_of_orderness_ms=OOO_MS,
        allowed_lateness_ms=LATENESS_MS,
        idle_timeout_ms=1000,
        partitions=3,
        scrape_interval_s=0.5,
    )
    rng = random.Random(20261122)
    t0 = (int(time.time() * 1000) // WINDOW_MS) * WINDOW_MS - 120_000
    sends, distinct, bad = _plan(rng, t0)
    with LocalPipeline(opts) as pipe:
        pipe.start_stack()
        pipe.start_sink()
        pipe.start_worker()
        producer = Producer({**pipe.kafka.librdkafka(), "enable.idempotence": True, "acks": "all"})
        topic = pipe.topics.topic_readings
        for p, payloads in sends.items():
            half = len(payloads) // 2
            for i, value in enumerate(payloads):
                if p == 0 and i == half:  # bad records in the middle of good ones
                    producer.produce(topic, bad["garbage"], key=b"m-1", partition=0)
                    producer.produce(topic, bad["unknown_schema"], key=b"m-1", partition=0)
                producer.produce(topic, value, key=MACHINES[p].encode(), partition=p)
        producer.flush(30)
        # Windows close when the idle partitions' watermarks advance; wait until all 4 windows x 6 keys
        # have been written and the sink has committed them.
        expected_windows = len(
            {(r["machine_id"], r["sensor"], r["event_time"] // WINDOW_MS) for r in distinct}
        )
        wait_until(lambda: _final_versions_seen(pipe) >= expected_windows, 120, "all windows emitted", 1.0)
        pipe.wait_quiet(pipe.topics.topic_windows, quiet_s=3, timeout=30)
        assert pipe.wait_drained("millstream-sink", pipe.topics.topic_windows, timeout=60)
        assert pipe.prometheus is not None
        pipe.prometheus.wait_for_scrape(timeout=20, components=["windows", "sink"])
        time.sleep(1.5)  # one more scrape after the last record
        prom = {
            "up": pipe.prometheus.targets_up(),
            "dead": pipe.prometheus.query(
                'sum by (reason) (millstream_dead_letters_total{job="millstream",component="windows"})'
            ),
            "records_in": pipe.prometheus.query('sum(millstream_records_in_total{component="windows"})'),
        }
        dlq = pipe.read_topic(pipe.topics.topic_dead_letters)
        pipe.stop("windows")
        pipe.stop("sink")
        from sinks.clickhouse import ClickHouseSettings, connect

        client = connect(ClickHouseSettings(url=f"chdb://{pipe.clickhouse_path}"))
        rows = client.query(
            "SELECT machine_id, sensor, toUnixTimestamp64Milli(window_start), "
            "toUnixTimestamp64Milli(window_end), count, mean, min, max, std, version "
            "FROM window_aggregates FINAL"
        ).result_rows
        client.close()
        yield {
            "rows": rows,
            "distinct": distinct,
            "dlq": dlq,
            "bad": bad,
            "prom": prom,
            "sent": sum(len(v) for v in sends.values()) + 2,
        }


def _final_versions_seen(pipe: LocalPipeline) -> int:
    pipe.check_alive()
    return pipe.end_offsets(pipe.topics.topic_windows)


def test_clickhouse_windows_equal_batch_recomputation(run: dict[str, Any]) -> None:
    groups: dict[tuple[str, str, int], list[float]] = defaultdict(list)
    for r in run["distinct"]:
        start = r["event_time"] // WINDOW_MS * WINDOW_MS
        groups[(r["machine_id"], r["sensor"], start)].append(r["value"])
    got = {
        (m, s, ws): (we, n, mean, lo, hi, std, ver) for m, s, ws, we, n, mean, lo, hi, std, ver in run["rows"]
    }
    assert set(got) == set(groups), "one row per (machine, sensor, window) with data, no more"
    for key, values in groups.items():
        we, n, mean, lo, hi, std, _ = got[key]
        arr = np.array(values)
        assert we == key[2] + WINDOW_MS
        assert n == len(values), key
        assert lo == arr.min() and hi == arr.max(), key
        assert mean == pytest.approx(arr.mean(), abs=1e-9), key
        assert std == pytest.approx(arr.std(ddof=1), abs=1e-9), key


def test_late_but_allowed_reading_replaced_the_first_emission(run: dict[str, Any]) -> None:
    versions = [row[-1] for row in run["rows"]]
    # Each machine's first window got one late reading after it had been emitted (version 0).
    assert sum(1 for v in versions if v >= 1) >= len(MACHINES)


def test_bad_records_dead_lettered_with_reason_and_job_kept_going(run: dict[str, Any]) -> None:
    by_payload = {d["payload"]: d for d in run["dlq"]}
    garbage = by_payload[run["bad"]["garbage"]]
    unknown = by_payload[run["bad"]["unknown_schema"]]
    assert garbage["reason_code"] == "decode_error" and "not Avro" in garbage["reason"]
    assert unknown["reason_code"] == "unknown_schema" and "fingerprint" in unknown["reason"]
    assert garbage["topic"].startswith("millstream.readings") and garbage["offset"] >= 0
    # Good records after the bad ones (second half of partition 0) made it into windows: checked by
    # the recomputation test above, which includes every reading of m-1.


def test_prometheus_scraped_the_job_with_expected_values(run: dict[str, Any]) -> None:
    prom = run["prom"]
    assert prom["up"].get("windows") is True and prom["up"].get("sink") is True
    dead = {r["metric"]["reason"]: float(r["value"][1]) for r in prom["dead"]}
    assert dead.get("decode_error") == 1.0
    assert dead.get("unknown_schema") == 1.0
    assert float(prom["records_in"][0]["value"][1]) == run["sent"]
