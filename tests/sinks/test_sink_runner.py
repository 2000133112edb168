"""The Kafka → ClickHouse runner with the real broker and the real embedded ClickHouse.

Includes the crash test: a sink process is killed (SIGKILL) after it wrote a batch and before it
committed the offsets; the rerun replays the batch and the table still holds each window once.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.error
import urllib.request
import uuid
from pathlib import Path
from typing import Any

import pytest
from sink_data import alert_payload, anomaly, reading, spc_signal

from infra.procs import ManagedProcess, free_port, wait_until
from schemas.config import KafkaSettings, TopicSettings
from schemas.serde import Serde
from sinks.clickhouse import connect
from sinks.config import ClickHouseSettings, SinkSettings
from sinks.migrations import migrate
from sinks.retention import current_ttls
from sinks.runner import SinkRunner

REPO = Path(__file__).resolve().parents[2]
PY = sys.executable
pytestmark = pytest.mark.integration

KEY = "machine_id, sensor, window_kind, window_start, window_end"


def encode_windows(records: list[dict[str, Any]], topic: str) -> list[tuple[bytes, bytes]]:
    return encode("millstream.WindowAggregate", records, topic)


def encode(schema: str, records: list[dict[str, Any]], topic: str) -> list[tuple[bytes, bytes]]:
    enc = Serde().encoder(schema, topic)
    return [(r["machine_id"].encode(), enc(r)) for r in records]


def signals_and_anomalies(n: int, emitted_at: int = 0) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """n SPC signals and n anomaly events (open/close pairs), distinct identities."""
    sigs = [spc_signal(machine_id=f"m{i % 3}", point_index=100 + i, emitted_at=1_767_225_700_000 + emitted_at)
            for i in range(n)]  # fmt: skip
    events = [
        anomaly(machine_id=f"m{i // 2 % 3}", started_at=1_767_225_600_000 + (i // 2) * 60_000,
                event_time=1_767_225_600_000 + (i // 2) * 60_000 + (i % 2) * 30_000,
                state="close" if i % 2 else "open", emitted_at=1_767_225_700_000 + emitted_at)
        for i in range(n)
    ]  # fmt: skip
    return sigs, events


SPC_KEY = "machine_id, sensor, chart, rule, point_index, point_start"
ANOMALY_KEY = "machine_id, sensor, started_at, state"


def assert_no_duplicates(client: Any, table: str, key: str, expected: int) -> None:
    """FINAL, distinct identities and (after OPTIMIZE) plain count all equal ``expected``."""
    final = client.command(f"SELECT count() FROM {table} FINAL")
    distinct = client.command(f"SELECT count() FROM (SELECT DISTINCT {key} FROM {table})")
    assert final == distinct == expected, table
    client.command(f"OPTIMIZE TABLE {table} FINAL")
    assert client.command(f"SELECT count() FROM {table}") == expected, table


def latest_per_window(records: list[dict[str, Any]]) -> dict[tuple[Any, ...], dict[str, Any]]:
    """What the table must hold: per window key, the record with the highest version."""
    out: dict[tuple[Any, ...], dict[str, Any]] = {}
    for r in records:
        k = (r["machine_id"], r["sensor"], r["window_kind"], r["window_start"], r["window_end"])
        if k not in out or r["version"] >= out[k]["version"]:
            out[k] = r
    return out


def table_rows(client: Any) -> dict[tuple[Any, ...], tuple[int, float]]:
    rows = client.query(
        "SELECT machine_id, sensor, window_kind, toUnixTimestamp64Milli(window_start), "
        "toUnixTimestamp64Milli(window_end), version, mean FROM window_aggregates FINAL"
    ).result_rows
    return {tuple(r[:5]): (r[5], r[6]) for r in rows}


def sink_env(
    kafka: KafkaSettings, topics: TopicSettings, data_dir: Path, group: str, **extra: str
) -> dict[str, str]:
    env = {
        "MILLSTREAM_KAFKA_BOOTSTRAP": kafka.kafka_bootstrap,
        "MILLSTREAM_DATA_DIR": str(data_dir),
        "MILLSTREAM_SINK_GROUP_ID": group,
        "PYTHONPATH": str(REPO),
        # The test data is from 2026-01-01: no retention, or the sink's TTLs would expire it.
        **{f"MILLSTREAM_CLICKHOUSE_TTL_{t}_DAYS": "0" for t in TTLS},
    }
    env.update({f"MILLSTREAM_{name.upper()}": str(value) for name, value in topics})
    return {**env, **extra}


TTLS = ("READINGS", "WINDOWS", "ROLLUP_1M", "ROLLUP_1H", "ROLLUP_1D", "EVENTS", "DEAD_LETTERS")


def run_until_idle(
    client: Any, ch: ClickHouseSettings, kafka: KafkaSettings, topics: TopicSettings, group: str, **kw: Any
) -> Any:
    runner = SinkRunner(
        client,
        clickhouse=ch,
        sink=SinkSettings(group_id=group),
        kafka=kafka,
        topics=topics,
        exit_when_idle=4.0,
        **kw,
    )
    return runner.run()


def test_runner_writes_rows_dead_letters_and_commits(
    kafka: KafkaSettings,
    topics: TopicSettings,
    ch: Any,
    ch_settings: ClickHouseSettings,
    make_grid: Any,
    produce_to: Any,
    committed_offsets: Any,
) -> None:
    records = make_grid(machines=4, sensors=3, windows=10)
    # Late updates of some windows (higher version), and one stale re-send of version 0.
    updates = [{**r, "version": 1, "mean": r["mean"] + 100} for r in records[::7]]
    stale = [records[3]]
    produced = records + updates + stale
    positions = produce_to(kafka, topics.topic_windows, encode_windows(produced, topics.topic_windows))
    garbage = b"\x07 this is not Avro '); DROP TABLE window_aggregates; --"
    [(g_part, g_off)] = produce_to(kafka, topics.topic_windows, [(b"m0", garbage)])
    upstream_dl = {
        "stage": "windows",
        "topic": topics.topic_readings,
        "partition": 1,
        "offset": 77,
        "key": None,
        "payload": b"\x00\x01",
        "reason_code": "too_late",
        "reason": "late",
        "failed_at": 1_767_225_600_000,
    }
    dl_bytes = Serde().encode("millstream.DeadLetter", topics.topic_dead_letters, upstream_dl)
    produce_to(kafka, topics.topic_dead_letters, [(None, dl_bytes)])
    group = f"sink-{uuid.uuid4().hex[:6]}"

    stats = run_until_idle(ch, ch_settings, kafka, topics, group)

    assert stats.consumed == len(produced) + 2
    expected = latest_per_window(produced)
    assert table_rows(ch) == {k: (r["version"], r["mean"]) for k, r in expected.items()}
    dead = ch.query(
        "SELECT stage, topic, partition, offset, reason_code, payload FROM dead_letters FINAL ORDER BY stage",
        column_formats={"payload": "bytes"},
    ).result_rows
    assert [tuple(r) for r in dead] == [
        ("sink", topics.topic_windows, g_part, g_off, "decode_error", garbage),
        ("windows", topics.topic_readings, 1, 77, "too_late", b"\x00\x01"),
    ]
    # Offsets: everything consumed is committed (next offset = last + 1 per partition).
    last: dict[int, int] = {}
    for part, off in [*positions, (g_part, g_off)]:
        last[part] = max(last.get(part, -1), off)
    got = committed_offsets(kafka, group, topics.topic_windows, topics.topic_partitions)
    assert {p: o for p, o in got.items() if o >= 0} == {p: o + 1 for p, o in last.items()}
    assert stats.commits >= 1


def test_dead_letter_payloads_are_readable_in_sql(
    kafka: KafkaSettings, topics: TopicSettings, ch: Any, ch_settings: ClickHouseSettings, produce_to: Any
) -> None:
    # What an analyst asks of a dead letter: which values were rejected. The payload is decoded
    # with the pipeline's schemas (a reading with a NaN value, rejected by the stream job), kept as
    # it is when it is JSON text (an MQTT message), NULL when it is neither; the sink's own dead
    # letter of a record on the wrong topic is decoded too.
    serde = Serde()
    nan_reading = serde.encode("millstream.Reading", topics.topic_readings, reading(value=float("nan")))
    mqtt = b'{"machine": "press-7", "ts": 1e306}'
    upstream = [
        {"stage": "windows", "topic": topics.topic_readings, "partition": 0, "offset": off, "key": b"m1",
         "payload": payload, "reason_code": "invalid_record", "reason": "r", "failed_at": 1_767_225_600_000}
        for off, payload in ((1, nan_reading), (2, mqtt), (3, b"\x07 not Avro"))
    ]  # fmt: skip
    produce_to(
        kafka,
        topics.topic_dead_letters,
        [(None, serde.encode("millstream.DeadLetter", topics.topic_dead_letters, d)) for d in upstream],
    )
    wrong = serde.encode("millstream.Reading", topics.topic_windows, reading(machine_id="m-wrong"))
    [(w_part, w_off)] = produce_to(kafka, topics.topic_windows, [(b"m-wrong", wrong)])
    # A reading past the allowed lateness, on the late topic: stored too, with its values.
    late_reading = serde.encode("millstream.Reading", topics.topic_readings, reading(machine_id="m-late"))
    late = {
        **upstream[0],
        "offset": 4,
        "reason_code": "too_late",
        "reason": "late by 9 s",
        "payload": late_reading,
    }
    produce_to(
        kafka,
        topics.topic_late,
        [(b"m-late", serde.encode("millstream.DeadLetter", topics.topic_late, late))],
    )

    run_until_idle(ch, ch_settings, kafka, topics, f"sink-{uuid.uuid4().hex[:6]}")

    rows = ch.query(
        "SELECT stage, offset, JSONExtractString(payload_json, 'machine_id'),"
        " JSONExtractString(payload_json, 'value'), payload_json, reason_code"
        " FROM dead_letters FINAL ORDER BY stage, offset"
    ).result_rows
    assert [tuple(r) for r in rows] == [
        ("sink", w_off, "m-wrong", "61.25", rows[0][4], "invalid_record"),
        ("windows", 1, "m1", "NaN", rows[1][4], "invalid_record"),
        ("windows", 2, "", "", mqtt.decode(), "invalid_record"),
        ("windows", 3, None, None, None, "invalid_record"),
        ("windows", 4, "m-late", "61.25", rows[4][4], "too_late"),
    ]
    assert json.loads(rows[0][4])["value"] == 61.25 and json.loads(rows[1][4])["sensor"] == "temperature"
    assert w_part >= 0


CRASHING_SINK = """
import pathlib, sys, time
from sinks.clickhouse import connect
from sinks.runner import SinkRunner

marker = pathlib.Path(sys.argv[1])

def written_not_committed(result):
    marker.write_text(str(result.written))
    time.sleep(600)  # the test kills the process here: rows written, offsets not committed

client = connect()
SinkRunner(client, after_write=written_not_committed).run()
"""


def test_crash_between_write_and_commit_leaves_no_duplicates(
    kafka: KafkaSettings,
    topics: TopicSettings,
    ch_settings: ClickHouseSettings,
    tmp_path: Path,
    make_grid: Any,
    produce_to: Any,
    committed_offsets: Any,
) -> None:
    group = f"crash-{uuid.uuid4().hex[:6]}"
    first = make_grid(machines=3, sensors=2, windows=10)
    produce_to(kafka, topics.topic_windows, encode_windows(first, topics.topic_windows))
    sigs, events = signals_and_anomalies(12)
    produce_to(
        kafka, topics.topic_spc_signals, encode("millstream.SpcSignal", sigs, topics.topic_spc_signals)
    )
    produce_to(
        kafka, topics.topic_anomalies, encode("millstream.AnomalyEvent", events, topics.topic_anomalies)
    )
    client = connect(ch_settings)
    migrate(client)
    run_until_idle(client, ch_settings, kafka, topics, group)
    before = committed_offsets(kafka, group, topics.topic_windows, topics.topic_partitions)
    client.close()  # the embedded engine's folder is one process's at a time

    # More windows: new ones, re-emits with higher versions, and exact duplicates of old ones.
    second = make_grid(machines=3, sensors=2, windows=20)[::2] + [{**r, "version": 3} for r in first[:15]]
    produce_to(kafka, topics.topic_windows, encode_windows(second, topics.topic_windows))
    # Signals and anomaly events again (a restarted stream worker re-emits them), plus new ones.
    sigs2, events2 = signals_and_anomalies(20, emitted_at=5_000)
    produce_to(
        kafka, topics.topic_spc_signals, encode("millstream.SpcSignal", sigs2, topics.topic_spc_signals)
    )
    produce_to(
        kafka, topics.topic_anomalies, encode("millstream.AnomalyEvent", events2, topics.topic_anomalies)
    )
    marker = tmp_path / "written"
    env = sink_env(
        kafka,
        topics,
        ch_settings.data_dir,
        group,
        MILLSTREAM_CLICKHOUSE_BATCH_ROWS="100000",
        MILLSTREAM_CLICKHOUSE_BATCH_AGE_MS="1500",
        # A short session lets the group notice the killed member quickly.
        MILLSTREAM_KAFKA_SESSION_TIMEOUT_MS="2000",
    )
    proc = ManagedProcess(
        "crashing-sink", [PY, "-c", CRASHING_SINK, str(marker)], tmp_path / "crash.log", env=env, cwd=REPO
    ).start()
    try:

        def wrote() -> bool:
            proc.check_alive()
            return marker.exists() and marker.read_text() != ""

        wait_until(wrote, 90, "the crashing sink to write a batch")
        proc.kill()  # SIGKILL: no flush, no commit, no goodbye
    finally:
        proc.stop()
    written_by_crashed = int(marker.read_text())
    assert written_by_crashed > 0
    assert committed_offsets(kafka, group, topics.topic_windows, topics.topic_partitions) == before

    client = connect(ch_settings)
    try:
        stats = run_until_idle(client, ch_settings, kafka, topics, group)
        # The whole uncommitted batch was replayed.
        assert stats.consumed == len(second) + len(sigs2) + len(events2)
        expected = latest_per_window(first + second)
        assert table_rows(client) == {k: (r["version"], r["mean"]) for k, r in expected.items()}
        assert_no_duplicates(client, "window_aggregates", KEY, len(expected))
        assert_no_duplicates(client, "spc_signals", SPC_KEY, len(sigs2))  # sigs2 includes every sig
        assert_no_duplicates(client, "anomalies", ANOMALY_KEY, len(events2))
    finally:
        client.close()


def _samples(port: int, name: str, labels: str) -> list[float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
        lines = r.read().decode().splitlines()
    return [
        float(line.rsplit(" ", 1)[1])
        for line in lines
        if (line.startswith(f"{name}{{") or line.startswith(f"{name} ")) and labels in line
    ]


def _metric(port: int, name: str, labels: str) -> float:
    return sum(_samples(port, name, labels))


def _status(port: int, path: str) -> int:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as r:
            return int(r.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)


def test_cli_sink_flushes_on_sigterm_and_holds_the_embedded_lock(
    kafka: KafkaSettings,
    topics: TopicSettings,
    ch_settings: ClickHouseSettings,
    tmp_path: Path,
    make_grid: Any,
    produce_to: Any,
    committed_offsets: Any,
) -> None:
    group = f"cli-{uuid.uuid4().hex[:6]}"
    records = make_grid(machines=2, sensors=2, windows=6)
    produce_to(kafka, topics.topic_windows, encode_windows(records, topics.topic_windows))
    port = free_port()
    # Batches never fill nor age here: only the SIGTERM path can write them.
    env = sink_env(
        kafka,
        topics,
        ch_settings.data_dir,
        group,
        MILLSTREAM_CLICKHOUSE_BATCH_ROWS="100000",
        MILLSTREAM_CLICKHOUSE_BATCH_AGE_MS="3600000",
        MILLSTREAM_CLICKHOUSE_TTL_READINGS_DAYS="5",  # applied at start, with the migrations
    )
    proc = ManagedProcess(
        "sink",
        [PY, "-m", "infra.cli", "sink", "--metrics-port", str(port)],
        tmp_path / "sink.log",
        env=env,
        cwd=REPO,
    ).start()
    try:

        def consumed_all() -> bool:
            proc.check_alive()
            return _metric(port, "millstream_records_in_total", 'stage="sink"') >= len(records)

        wait_until(consumed_all, 90, "the sink to consume every record")
        assert _status(port, "/readyz") == 200
        assert _metric(port, "millstream_sink_pending_rows", "") == len(records)

        def lag_known() -> bool:  # one gauge per partition of the windows topic, all caught up
            lags = _samples(port, "millstream_consumer_lag_records", f'topic="{topics.topic_windows}"')
            return len(lags) == topics.topic_partitions and sum(lags) == 0

        wait_until(lag_known, 30, "the consumer-lag gauges")

        # The same HTTP port takes Alertmanager's webhook (a sample notification, format 4).
        req = urllib.request.Request(
            f"http://127.0.0.1:{port}/alertmanager", data=alert_payload(1_767_225_600_000), method="POST"
        )
        with urllib.request.urlopen(req, timeout=10) as r:
            assert (r.status, json.loads(r.read())) == (200, {"written": 2})

        # While the sink holds the embedded database, a second process gets a clear error.
        sql = subprocess.run(
            [PY, "-m", "infra.cli", "sql", "SELECT 1"],
            env={**os.environ, **env},
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert sql.returncode == 1
        assert "is in use by another process (a running sink?)" in sql.stderr
        assert "MILLSTREAM_CLICKHOUSE_URL" in sql.stderr

        proc.signal(15)  # SIGTERM
        assert proc.proc is not None
        assert proc.proc.wait(60) == 0, proc.log_tail()
    finally:
        proc.stop()
    client = connect(ch_settings)
    try:
        expected = latest_per_window(records)
        assert table_rows(client) == {k: (r["version"], r["mean"]) for k, r in expected.items()}
        assert client.command("SELECT count() FROM alerts FINAL") == 2
        assert current_ttls(client)["readings"] == 5 and current_ttls(client)["window_aggregates"] is None
    finally:
        client.close()
    got = committed_offsets(kafka, group, topics.topic_windows, topics.topic_partitions)
    assert sum(o for o in got.values() if o > 0) == len(records)


def test_records_are_routed_by_schema_and_wrong_ones_are_dead_letters(
    kafka: KafkaSettings,
    topics: TopicSettings,
    ch: Any,
    ch_settings: ClickHouseSettings,
    make_window: Any,
    produce_to: Any,
) -> None:
    serde = Serde()
    sigs, events = signals_and_anomalies(4)
    produce_to(
        kafka, topics.topic_spc_signals, encode("millstream.SpcSignal", sigs, topics.topic_spc_signals)
    )
    produce_to(
        kafka, topics.topic_anomalies, encode("millstream.AnomalyEvent", events, topics.topic_anomalies)
    )
    scan = {"plant": "p1", "line": "l1", "machine_id": "m9", "event_time": 1_767_225_600_000,
            "gateway_id": "g",
            "seq": 7, "lot_id": "lot-1", "values": [
                {"sensor": "temperature", "unit": "Cel", "value": 61.5, "quality": "GOOD"},
                {"sensor": "pressure", "unit": "bar", "value": 6.25, "quality": "BAD"}]}  # fmt: skip
    produce_to(kafka, topics.topic_readings, [
        (b"m9", serde.encode("millstream.MachineScan", "x", scan)),
        (b"m1", serde.encode("millstream.Reading", "x", reading(event_time=1_767_225_601_000))),
    ])  # fmt: skip
    # Wrong schemas: a reading on the windows topic, a window on the dead-letter topic, an anomaly
    # event on the SPC topic.
    produce_to(kafka, topics.topic_windows, [(b"m", serde.encode("millstream.Reading", "x", reading()))])
    produce_to(
        kafka,
        topics.topic_dead_letters,
        [(None, serde.encode("millstream.WindowAggregate", "x", make_window()))],
    )
    produce_to(
        kafka, topics.topic_spc_signals, [(b"m", serde.encode("millstream.AnomalyEvent", "x", anomaly()))]
    )
    group = f"route-{uuid.uuid4().hex[:6]}"
    runner = SinkRunner(
        ch,
        clickhouse=ch_settings,
        sink=SinkSettings(group_id=group, raw_readings=True),
        kafka=kafka,
        topics=topics,
        exit_when_idle=4.0,
    )
    assert topics.topic_readings in runner.subscriptions()
    stats = runner.run()
    assert stats.consumed == len(sigs) + len(events) + 2 + 3 and stats.dead_letters == 3
    assert ch.command("SELECT count() FROM window_aggregates") == 0
    got_sigs = ch.query(
        "SELECT machine_id, point_index FROM spc_signals FINAL ORDER BY point_index"
    ).result_rows
    assert [tuple(r) for r in got_sigs] == [(s["machine_id"], s["point_index"]) for s in sigs]
    got_events = ch.query(
        "SELECT machine_id, state FROM anomalies FINAL ORDER BY started_at, state DESC"
    ).result_rows
    assert [tuple(r) for r in got_events] == [(e["machine_id"], e["state"]) for e in events]
    got_readings = ch.query(
        "SELECT machine_id, sensor, value, quality, seq, lot_id FROM readings FINAL "
        "ORDER BY machine_id, sensor"
    ).result_rows
    assert [tuple(r) for r in got_readings] == [
        ("m1", "temperature", 61.25, "GOOD", 1, None),
        ("m9", "pressure", 6.25, "BAD", 7, "lot-1"),
        ("m9", "temperature", 61.5, "GOOD", 7, "lot-1"),
    ]
    rows = ch.query("SELECT topic, reason_code, reason FROM dead_letters FINAL ORDER BY topic").result_rows
    assert sorted((r[0], r[1]) for r in rows) == sorted(
        [
            (t, "invalid_record")
            for t in (topics.topic_windows, topics.topic_dead_letters, topics.topic_spc_signals)
        ]
    )
    assert all("do not belong on topic" in r[2] for r in rows)


def test_readings_are_not_consumed_unless_enabled(ch: Any, topics: TopicSettings) -> None:
    runner = SinkRunner(ch, sink=SinkSettings(), topics=topics)
    assert runner.subscriptions() == [
        topics.topic_windows,
        topics.topic_dead_letters,
        topics.topic_late,
        topics.topic_spc_signals,
        topics.topic_anomalies,
    ]
