"""ClickHouse sink benchmark: insert throughput by batch size, and window-close → row-visible latency.

    python -m benchmarks.bench_sink [--quick]

1. Throughput into the embedded ClickHouse (chdb) through :class:`sinks.writer.BatchWriter`
   (validation, deduplication token, insert) for batches of 100, 1 000 and 10 000 rows, against a
   baseline measured in the same run: bare ``client.insert`` of prebuilt rows, same batch sizes.
2. Latency through the whole sink (real local broker → SinkRunner → ClickHouse): windows are
   produced at a steady rate with ``emitted_at`` = send time; a poller on a second client records
   when each row becomes visible. Reported for three ``batch_age_ms`` settings (100, the default
   500, 1000; p50/p99/max), along with ``written_at - emitted_at`` (the server's insert time), and
   checked against the goal: p99 window close → row visible ≤ 1 s at the default settings.

Every insert into window_aggregates also feeds the rollup materialized views (1 min → 1 h → 1 d),
so both the writer and the bare-insert baseline pay for them.

Writes benchmarks/results/sink.json. Takes about a minute on two cores.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import threading
import time
import uuid
from importlib.metadata import version
from pathlib import Path
from typing import Any

import numpy as np

from infra.stack import LocalBroker, create_topics
from schemas.config import KafkaSettings, TopicSettings
from schemas.serde import Serde
from sinks.clickhouse import connect
from sinks.config import ClickHouseSettings, SinkSettings
from sinks.migrations import migrate
from sinks.runner import SinkRunner
from sinks.tables import WINDOW_AGGREGATES, Source
from sinks.writer import BatchWriter

RESULTS = Path(__file__).resolve().parent / "results" / "sink.json"
T0 = 1_767_225_600_000
ID_BASE = 946_684_800_000  # 2000-01-01: first_ts = ID_BASE + record index in the latency run


def window(i: int, emitted_at: int | None = None, start: int = T0) -> dict[str, Any]:
    ws = start + (i // 500) * 60_000
    mean = (i % 97) / 7
    return {
        "plant": "p1",
        "line": f"l{i % 4}",
        "machine_id": f"m{i % 100}",
        "sensor": f"s{(i // 100) % 5}",
        "unit": "mm/s",
        "window_kind": "tumbling",
        "window_start": ws,
        "window_end": ws + 60_000,
        "count": 60,
        "sum": mean * 60,
        "mean": mean,
        "min": mean - 1,
        "max": mean + 1,
        "std": 0.5,
        "first_ts": ws + 10,
        "last_ts": ws + 59_990,
        "first": mean,
        "last": mean,
        "p50": mean,
        "p95": mean + 0.8,
        "p99": mean + 0.95,
        "slope": 0.001,
        "version": 0,
        "emitted_at": emitted_at if emitted_at is not None else ws + 60_500,
    }


# --------------------------------------------------------------------------------------- throughput
def throughput(client: Any, settings: ClickHouseSettings, batch: int, total: int) -> dict[str, float]:
    start = T0 + int(np.log10(batch)) * 10**10  # each run its own windows
    records = [window(i, start=start) for i in range(total)]
    payloads = [b"x" * 200] * total
    writer = BatchWriter(client, settings.model_copy(update={"batch_rows": batch}))
    t = time.perf_counter()
    for i, r in enumerate(records):
        writer.add(WINDOW_AGGREGATES, r, Source("bench", 0, i, None, payloads[i]))
        if writer.pending_rows >= batch:
            writer.flush()
    writer.flush()
    writer_s = time.perf_counter() - t

    rows = [WINDOW_AGGREGATES.to_row(window(i, start=start + 5 * 10**9)) for i in range(total)]
    cols = list(WINDOW_AGGREGATES.columns)
    t = time.perf_counter()
    for lo in range(0, total, batch):
        client.insert("window_aggregates", rows[lo : lo + batch], column_names=cols)
    raw_s = time.perf_counter() - t
    return {
        "batch_rows": batch,
        "rows": total,
        "writer_rows_per_s": round(total / writer_s),
        "baseline_raw_insert_rows_per_s": round(total / raw_s),
        "writer_vs_baseline": round(raw_s / writer_s, 3),
    }


# ------------------------------------------------------------------------------------------ latency
def latency(
    kafka: KafkaSettings, data_dir: Path, batch_age_ms: int, rate: int, seconds: float
) -> dict[str, Any]:
    suffix = uuid.uuid4().hex[:6]
    topics = TopicSettings(
        topic_readings=f"r-{suffix}",
        topic_windows=f"w-{suffix}",
        topic_dead_letters=f"d-{suffix}",
        topic_late=f"l-{suffix}",
        topic_spc_signals=f"s-{suffix}",
        topic_anomalies=f"a-{suffix}",
        topic_partitions=3,
    )
    create_topics(kafka, topics)
    ch = ClickHouseSettings(data_dir=data_dir, batch_age_ms=batch_age_ms, batch_rows=5000)
    client, poll_client = connect(ch), connect(ch)
    client.command("TRUNCATE TABLE window_aggregates")
    runner = SinkRunner(
        client,
        clickhouse=ch,
        sink=SinkSettings(group_id=f"bench-{suffix}", poll_timeout_ms=50),
        kafka=kafka,
        topics=topics,
    )
    thread = threading.Thread(target=runner.run, name="sink")
    thread.start()
    seen: dict[int, int] = {}  # window index (encoded in first_ts) -> ms when first visible
    stop = threading.Event()

    def poll() -> None:
        last = 0
        while not stop.is_set():
            rows = poll_client.query(
                "SELECT toUnixTimestamp64Milli(first_ts) - {base:Int64} FROM window_aggregates "
                "WHERE written_at >= fromUnixTimestamp64Milli({last:Int64})",
                parameters={"base": ID_BASE, "last": last},
            ).result_rows
            now = int(time.time() * 1000)
            for (k,) in rows:
                seen.setdefault(int(k), now)
            last = now - 2000
            time.sleep(0.02)

    from confluent_kafka import Producer

    producer = Producer({**kafka.librdkafka(), "linger.ms": 1})
    encode = Serde().encoder("millstream.WindowAggregate", topics.topic_windows)
    join_deadline = time.monotonic() + 60
    while not runner.assigned and time.monotonic() < join_deadline:
        time.sleep(0.1)
    poller = threading.Thread(target=poll, name="poll")
    poller.start()
    sent: dict[int, int] = {}
    n = int(rate * seconds)
    start = time.monotonic()
    for i in range(n):
        target = start + i / rate
        delay = target - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        now = int(time.time() * 1000)
        rec = window(i, emitted_at=now, start=T0 + 10**12 + i * 60_000)
        rec["first_ts"] = ID_BASE + i  # identifies the record in the poll
        producer.produce(topics.topic_windows, key=rec["machine_id"].encode(), value=encode(rec))
        producer.poll(0)
        sent[i] = now
    producer.flush(30)
    deadline = time.monotonic() + 30
    while len(seen) < n and time.monotonic() < deadline:
        time.sleep(0.1)
    stop.set()
    poller.join()
    runner.stop()
    thread.join(60)
    written = poll_client.query(
        "SELECT toUnixTimestamp64Milli(written_at) - toUnixTimestamp64Milli(emitted_at) "
        "FROM window_aggregates"
    ).result_rows
    client.close()
    poll_client.close()
    visible = np.array([seen[i] - sent[i] for i in sent if i in seen], dtype=float)
    insert = np.array([r[0] for r in written], dtype=float)
    return {
        "batch_age_ms": batch_age_ms,
        "rate_per_s": rate,
        "produced": n,
        "visible": int(visible.size),
        "visible_ms": _pct(visible),
        "written_at_minus_emitted_at_ms": _pct(insert),
        "sink_flushes": runner.stats.flushes,
    }


def _pct(a: np.ndarray[Any, Any]) -> dict[str, float]:
    if a.size == 0:
        return {}
    return {"p50": float(np.percentile(a, 50)), "p99": float(np.percentile(a, 99)), "max": float(a.max())}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller sizes (smoke run)")
    args = parser.parse_args()
    scale = 0.2 if args.quick else 1.0
    started = time.monotonic()
    out: dict[str, Any] = {
        "benchmark": "sink",
        "when_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "environment": {
            "python": platform.python_version(),
            "cpus": os.cpu_count(),
            "chdb": version("chdb"),
            "clickhouse_connect": version("clickhouse-connect"),
            "confluent_kafka": version("confluent-kafka"),
        },
    }
    with tempfile.TemporaryDirectory(prefix="bench-sink-") as tmp:
        data = Path(tmp) / "stack"
        ch = ClickHouseSettings(data_dir=data)
        client = connect(ch)
        migrate(client)
        out["throughput"] = [
            throughput(client, ch, batch, int(total * scale))
            for batch, total in [(100, 20_000), (1_000, 60_000), (10_000, 150_000)]
        ]
        client.close()
        for row in out["throughput"]:
            print(
                f"batch {row['batch_rows']:>6}: writer {row['writer_rows_per_s']:>8} rows/s, "
                f"bare insert {row['baseline_raw_insert_rows_per_s']:>8} rows/s"
            )
        broker = LocalBroker(Path(tmp)).start()
        try:
            kafka = KafkaSettings(kafka_bootstrap=broker.bootstrap)
            out["latency"] = [
                latency(kafka, data, age, rate=500, seconds=8 * scale) for age in (100, 500, 1000)
            ]
        finally:
            broker.stop()
        for row in out["latency"]:
            print(
                f"batch_age_ms {row['batch_age_ms']:>5}: visible {row['visible']}/{row['produced']} "
                f"p50 {row['visible_ms'].get('p50', float('nan')):.0f} ms "
                f"p99 {row['visible_ms'].get('p99', float('nan')):.0f} ms"
            )
    default_age = ClickHouseSettings().batch_age_ms
    at_default = next(r for r in out["latency"] if r["batch_age_ms"] == default_age)
    out["goal"] = {
        "p99_visible_ms_max": 1000,
        "default_batch_age_ms": default_age,
        "p99_visible_ms": at_default["visible_ms"].get("p99"),
        "met": bool(at_default["visible_ms"]) and at_default["visible_ms"]["p99"] <= 1000,
    }
    print(f"goal p99 <= 1000 ms at batch_age_ms {default_age}: {'met' if out['goal']['met'] else 'MISSED'}")
    out["duration_s"] = round(time.monotonic() - started, 1)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(out, indent=2) + "\n")
    print(f"wrote {RESULTS} in {out['duration_s']} s")


if __name__ == "__main__":
    main()
