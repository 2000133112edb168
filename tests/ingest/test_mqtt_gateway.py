"""MQTT publisher -> real Mosquitto -> gateway -> real broker -> consumer; crash while spooling."""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from infra.procs import free_port, wait_until
from ingest.config import SimulatorSettings, SpoolSettings
from ingest.edge_sim import MqttSimPublisher
from ingest.mqtt import MqttConfig, MqttGateway
from ingest.spool import Spool
from ingest.validation import UNIT_ERROR
from schemas.config import KafkaSettings, TopicSettings
from schemas.exceptions import DECODE_ERROR, INVALID_RECORD
from schemas.serde import Serde

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture()
def publisher(mosquitto: Any) -> Iterator[Callable[..., MqttSimPublisher]]:
    started: list[MqttSimPublisher] = []

    def start(settings: SimulatorSettings, **kw: Any) -> MqttSimPublisher:
        pub = MqttSimPublisher("127.0.0.1", mosquitto.port, settings, **kw).connect()
        started.append(pub)
        return pub

    yield start
    for pub in started:
        pub.close()


@pytest.mark.integration
def test_every_message_becomes_one_reading_or_one_dead_letter_in_order_and_normalised(
    kafka: KafkaSettings,
    topics: TopicSettings,
    tmp_path: Path,
    publisher: Callable[..., MqttSimPublisher],
    gateway_run: Callable[..., Any],
    read_topic: Callable[..., list[dict[str, Any]]],
    checks: Any,
) -> None:
    pub = publisher(
        SimulatorSettings(machines=3, sensors=8, seed=21, uncertain_probability=0.03, bad_probability=0.02),
        client_id="pub-e2e",
        units={"temperature": "degF", "pressure": "psi", "vibration_rms": "in/s"},
    )
    config = MqttConfig.model_validate(
        {
            **pub.gateway_config("mqtt-e2e"),
            "validation": {
                "expected_units": {"temperature": "Cel", "pressure": "bar", "vibration_rms": "mm/s"}
            },
        }
    )
    run = gateway_run(MqttGateway, config, kafka, topics, SpoolSettings(dir=tmp_path / "spool"))
    assert run.gateway.connected.wait(15)
    now = time.time_ns() // 1_000_000
    topic = "plant/p1/line/l1/machine/m002/pressure"
    invalid = [
        (b"{not json", DECODE_ERROR),
        (json.dumps({"value": "high", "ts": now}).encode(), INVALID_RECORD),
        (json.dumps({"value": 3.0, "ts": now, "unit": "furlong"}).encode(), UNIT_ERROR),
        (json.dumps({"value": 3.0, "ts": now, "unit": "degF"}).encode(), UNIT_ERROR),  # not a pressure
        (json.dumps({"value": 3.0, "ts": now, "quality": "FINE"}).encode(), INVALID_RECORD),
    ]
    for k in range(25):
        pub.publish_tick(now - 5000 + 100 * k)
        if k == 10:
            for payload, _ in invalid:
                pub.publish_raw(topic, payload)
        time.sleep(0.01)
    assert pub.wait_acked(30)
    run.wait_read(len(pub.sent) + len(invalid))
    report = run.close()
    assert report.acknowledged == report.produced == len(pub.sent) + len(invalid)
    assert run.gateway.acks.acked == len(pub.sent) + len(invalid), "every MQTT message acknowledged"

    records = read_topic(kafka, topics.topic_readings, len(pub.sent))
    assert len(records) == len(pub.sent) == 25 * 3 * 8
    # the publisher sent degF/psi/in/s; the gateway converted back: equal to 12 significant digits
    assert checks.by_series(records, digits=12) == checks.sent_series(pub.sent, digits=12)
    checks.machine_order(records)
    units = {r["sensor"]: r["unit"] for r in records}
    assert units["temperature"] == "Cel" and units["pressure"] == "bar" and units["vibration_rms"] == "mm/s"
    assert {r["quality"] for r in records} == {"GOOD", "UNCERTAIN", "BAD"}

    dead = read_topic(kafka, topics.topic_dead_letters, len(invalid))
    assert [(d["payload"], d["reason_code"]) for d in dead] == invalid, "never silently dropped"
    serde = Serde()
    assert all(d["stage"] == "gateway" and d["topic"] == topic and d["key"] == b"m002" for d in dead)
    assert all(serde.decode(serde.encode("DeadLetter", "x", {k: d[k] for k in _DL})).name for d in dead)


_DL = ("stage", "topic", "partition", "offset", "key", "payload", "reason_code", "reason", "failed_at")


def _gateway(
    cfg: Path, spool: Path, port: int, bootstrap: str, topics: TopicSettings
) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "infra.cli",
            "gateway",
            "mqtt",
            "--config",
            str(cfg),
            "--spool-dir",
            str(spool),
        ]
        + ["--fsync", "always", "--metrics-port", str(port)],
        cwd=REPO,
        env={
            **os.environ,
            "MILLSTREAM_KAFKA_BOOTSTRAP": bootstrap,
            "MILLSTREAM_TOPIC_READINGS": topics.topic_readings,
            "MILLSTREAM_TOPIC_DEAD_LETTERS": topics.topic_dead_letters,
            "MILLSTREAM_FORWARD_CLOSE_TIMEOUT_S": "5",
            "PYTHONPATH": str(REPO),
        },
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


@pytest.mark.integration
def test_kill_9_while_spooling_loses_nothing_after_restart(
    kafka: KafkaSettings,
    topics: TopicSettings,
    tmp_path: Path,
    publisher: Callable[..., MqttSimPublisher],
    read_topic: Callable[..., list[dict[str, Any]]],
    checks: Any,
) -> None:
    """Broker unreachable: the gateway spools (fsync always) and acknowledges MQTT messages only then.
    kill -9; the restarted gateway (same spool, same MQTT session) delivers what the spool held and
    receives again from Mosquitto what it had not acknowledged: every published value arrives."""
    pub = publisher(SimulatorSettings(machines=3, sensors=8, seed=4, rate_hz=50.0), client_id="pub-kill")
    cfg = tmp_path / "gateway.json"
    cfg.write_text(json.dumps(pub.gateway_config("mqtt-kill")))
    spool_dir, port = tmp_path / "spool", free_port()
    dead = f"127.0.0.1:{free_port()}"  # nobody listens: the broker is "down"
    proc = _gateway(cfg, spool_dir, port, dead, topics)
    try:
        wait_until(lambda: checks.metric(port, "millstream_gateway_source_connected{") == 1, 60, "MQTT up")
        t0 = time.time_ns() // 1_000_000 - 5000
        for k in range(30):
            pub.publish_tick(t0 + 100 * k)
        assert pub.wait_acked(30)
        wait_until(lambda: checks.metric(port, "millstream_gateway_spooled_total") >= 300, 60, "spooling")
        proc.kill()  # SIGKILL: no flush, no summary
        proc.wait(10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    held = Spool(SpoolSettings(dir=spool_dir)).open()
    spooled = [Serde().decode(r.value).record for r in held.read(100_000)]
    held.close()
    assert len(spooled) >= 300, "what was spooled and fsynced survived the kill"

    proc = _gateway(cfg, spool_dir, port, kafka.kafka_bootstrap, topics)
    try:
        wait_until(lambda: checks.metric(port, "millstream_gateway_source_connected{") == 1, 60, "MQTT up")
        wait_until(lambda: checks.metric(port, "millstream_gateway_spool_records") == 0, 60, "spool drained")
        # replayed + redelivered >= published (a record spooled just before its PUBACK comes twice)
        values = "millstream_gateway_values_total"
        wait_until(lambda: checks.metric(port, values) >= len(pub.sent), 60, "replay and redelivery")
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err
    summary = json.loads(out.strip().splitlines()[-1])
    assert summary["replayed"] >= len(spooled) and summary["failed"] == 0 and summary["spool_pending"] == 0

    records = read_topic(kafka, topics.topic_readings, len(pub.sent))
    delivered = {(r["machine_id"], r["sensor"], r["event_time"]) for r in records}
    assert {(r["machine_id"], r["sensor"], r["event_time"]) for r in spooled} <= delivered
    assert {(s.machine_id, s.sensor, s.event_time) for s in pub.sent} == delivered, "nothing lost"


def test_paho_repeats_its_reconnect_errors_once_per_interval(caplog: pytest.LogCaptureFixture) -> None:
    """While the MQTT broker is down, paho logs an ERROR per reconnect attempt (seen in the runtime
    audit: one a second for the whole outage); the gateway logs the outage itself, so each distinct
    paho line passes once per 30 s."""
    from ingest.mqtt import PAHO_LOG

    caplog.set_level(logging.DEBUG, logger=PAHO_LOG.name)
    for attempt in range(20):
        PAHO_LOG.error("failed to receive on socket: [Errno 111] Connection refused (attempt %d)", attempt)
    PAHO_LOG.error("a different problem")
    PAHO_LOG.debug("Sending PINGREQ")
    PAHO_LOG.debug("Sending PINGREQ")
    lines = [r.getMessage() for r in caplog.records if r.name == PAHO_LOG.name]
    assert [m for m in lines if "Connection refused" in m] == [
        "failed to receive on socket: [Errno 111] Connection refused (attempt 0)"
    ]
    assert lines.count("a different problem") == 1 and lines.count("Sending PINGREQ") == 2
