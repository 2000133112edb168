"""``millstream gateway simulate`` end to end: real broker, real process, real signals."""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

from infra.procs import free_port
from ingest import cli
from schemas.config import KafkaSettings, TopicSettings
from schemas.serde import Serde

REPO = Path(__file__).resolve().parents[2]
SUMMARY_KEYS = {
    "read",
    "produced",
    "acknowledged",
    "failed",
    "spooled",
    "dropped",
    "scans",
    "values",
    "duration_s",
}


def _env(kafka: KafkaSettings, topics: TopicSettings) -> dict[str, str]:
    return {
        **os.environ,
        "MILLSTREAM_KAFKA_BOOTSTRAP": kafka.kafka_bootstrap,
        "MILLSTREAM_TOPIC_READINGS": topics.topic_readings,
        "PYTHONPATH": str(REPO),
    }


def _gateway(args: list[str], kafka: KafkaSettings, topics: TopicSettings) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "infra.cli", "gateway", "simulate", *args],
        cwd=REPO,
        env=_env(kafka, topics),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _summary(stdout: str) -> dict[str, float]:
    lines = [x for x in stdout.splitlines() if x.strip()]
    assert len(lines) == 1, f"stdout must hold exactly the summary line, got {lines!r}"
    summary = json.loads(lines[0])
    assert set(summary) == SUMMARY_KEYS
    return dict(summary)


def _sample(text: str, name: str) -> float:
    """Value of one sample in Prometheus text format (0 when absent)."""
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def _topic_count(kafka: KafkaSettings, topic: str, expected: int) -> int:
    c = Consumer({**kafka.librdkafka(), "group.id": "cli-test", "enable.auto.commit": False})
    partitions = c.list_topics(topic, timeout=10).topics[topic].partitions
    c.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in partitions])
    serde, n, deadline = Serde(), 0, time.monotonic() + 30
    try:
        while n < expected and time.monotonic() < deadline:
            for msg in c.consume(5000, 0.5):
                assert not msg.error(), msg.error()
                assert serde.decode(msg.value()).record["machine_id"].encode() == msg.key()
                n += 1
        n += len(c.consume(5000, 1.0))  # duplicates would show up here
    finally:
        c.close()
    return n


@pytest.mark.integration
def test_live_run_for_a_duration(kafka: KafkaSettings, topics: TopicSettings, tmp_path: Path) -> None:
    labels = tmp_path / "labels.jsonl"
    port = free_port()
    proc = _gateway(
        [
            "--machines",
            "4",
            "--rate",
            "5",
            "--duration",
            "3",
            "--seed",
            "9",
            "--labels",
            str(labels),
            "--metrics-port",
            str(port),
        ],
        kafka,
        topics,
    )
    produced_metric = 0.0  # millstream_gateway_messages_total{outcome="produced"} while it runs
    ready = ""
    deadline = time.monotonic() + 20
    while produced_metric == 0 and time.monotonic() < deadline and proc.poll() is None:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=1) as r:
                produced_metric = _sample(
                    r.read().decode(), 'millstream_gateway_messages_total{outcome="produced"}'
                )
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=5) as r:
                ready = r.read().decode()
        except OSError:
            time.sleep(0.2)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    s = _summary(out)
    # 3 s at 5 scans/s, 4 machines: about 15 cycles (the first at t=0, none at t=3).
    assert 4 * 10 <= s["scans"] <= 4 * 16 and s["scans"] % 4 == 0
    assert s["produced"] == s["acknowledged"] == s["scans"] and s["failed"] == 0
    assert s["values"] == s["read"] == s["scans"] * 8 and s["spooled"] == s["dropped"] == 0
    assert 2.5 <= s["duration_s"] < 10
    assert labels.exists()
    assert produced_metric > 0 and "broker ok" in ready
    assert _topic_count(kafka, topics.topic_readings, int(s["produced"])) == s["produced"]


@pytest.mark.integration
def test_sigterm_flushes_and_summarises(kafka: KafkaSettings, topics: TopicSettings) -> None:
    proc = _gateway(["--machines", "3", "--rate", "20", "--duration", "120"], kafka, topics)
    try:
        # Midway: once scans are on the topic, the gateway is running.
        c = Consumer({**kafka.librdkafka(), "group.id": "cli-wait", "enable.auto.commit": False})
        c.assign([TopicPartition(topics.topic_readings, p, OFFSET_BEGINNING) for p in range(3)])
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not [m for m in c.consume(100, 0.5) if not m.error()]:
            assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
        c.close()
        time.sleep(0.5)
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err
    s = _summary(out)
    assert s["scans"] > 0 and s["produced"] == s["acknowledged"] == s["scans"] and s["failed"] == 0
    assert s["duration_s"] < 60
    assert _topic_count(kafka, topics.topic_readings, int(s["produced"])) == s["produced"]


@pytest.mark.integration
def test_fast_forward_in_process(
    kafka: KafkaSettings,
    topics: TopicSettings,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Through the parser ``register`` builds (as infra.cli does), fast-forward with --max-scans."""
    monkeypatch.setenv("MILLSTREAM_KAFKA_BOOTSTRAP", kafka.kafka_bootstrap)
    monkeypatch.setenv("MILLSTREAM_TOPIC_READINGS", topics.topic_readings)
    parser = argparse.ArgumentParser()
    cli.register(parser.add_subparsers(dest="command"))
    labels = tmp_path / "l.jsonl"
    args = parser.parse_args(
        [
            "gateway",
            "simulate",
            "--machines",
            "5",
            "--sensors",
            "3",
            "--start-ms",
            "1600000000000",
            "--max-scans",
            "1003",
            "--fault-probability",
            "0.05",
            "--labels",
            str(labels),
        ]
    )
    assert args.func(args) == 0
    s = _summary(capsys.readouterr().out)
    assert s["scans"] == s["produced"] == s["acknowledged"] == 1003 and s["values"] == 3009
    lines = [json.loads(x) for x in labels.read_text().splitlines()]
    assert lines and all(1_600_000_000_000 <= x["start_ms"] <= x["end_ms"] for x in lines)
    assert all(x["end_ms"] <= 1_600_000_000_000 + 200 * 1000 for x in lines)  # 201 cycles at 1 Hz
    assert _topic_count(kafka, topics.topic_readings, 1003) == 1003


def test_gateway_needs_a_kind_and_rejects_bad_settings(capsys: pytest.CaptureFixture[str]) -> None:
    parser = argparse.ArgumentParser()
    cli.register(parser.add_subparsers(dest="command"))
    with pytest.raises(SystemExit):
        parser.parse_args(["gateway"])
    from schemas.exceptions import ConfigError

    args = parser.parse_args(["gateway", "simulate", "--machines", "0"])
    with pytest.raises(ConfigError, match="machines"):
        args.func(args)
    assert capsys.readouterr().out == ""
