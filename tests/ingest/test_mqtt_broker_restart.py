"""The MQTT broker restarts under a running gateway, and while the gateway is down: the persistent
session (fixed client id, clean_session False, mosquitto persistence) keeps what devices published,
the gateway reconnects by itself, re-subscribes, reports the gap, and every value reaches Kafka."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from infra.procs import wait_until
from ingest.bridge import SOURCE_CONNECTED, SOURCE_RECONNECTS
from ingest.config import SpoolSettings
from ingest.mqtt import MqttConfig, MqttGateway
from schemas.config import KafkaSettings, TopicSettings


def _publish(port: int, first: int, n: int, t0: int) -> None:
    """n values 'first'.. as QoS 1 messages from a device, each acknowledged by the broker."""
    pub = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"device-{first}")
    pub.connect("127.0.0.1", port)
    pub.loop_start()
    try:
        for i in range(first, first + n):
            payload = json.dumps({"value": float(i), "ts": t0 + i}).encode()
            pub.publish(f"p/p1/l1/m{i % 3}/pressure", payload, qos=1).wait_for_publish(10)
    finally:
        pub.disconnect()
        pub.loop_stop()


@pytest.mark.integration
def test_broker_restarts_lose_nothing_and_the_gateway_comes_back_by_itself(
    kafka: KafkaSettings,
    topics: TopicSettings,
    tmp_path: Path,
    gateway_run: Callable[..., Any],
    read_topic: Callable[..., list[dict[str, Any]]],
    caplog: pytest.LogCaptureFixture,
    own_mosquitto: Any,
) -> None:
    broker = own_mosquitto
    config = MqttConfig.model_validate(
        {
            "gateway_id": "mqtt-restart",
            "port": broker.port,
            "client_id": "gw-restart",
            "reconnect_max_s": 2,
            "topics": [{"pattern": "p/{plant}/{line}/{machine}/{sensor}", "unit": "bar"}],
        }
    )
    spool = SpoolSettings(dir=tmp_path / "spool")
    t0 = time.time_ns() // 1_000_000
    connected = SOURCE_CONNECTED.labels("mqtt-restart", "mqtt")
    reconnects = SOURCE_RECONNECTS.labels("mqtt-restart", "mqtt")
    before = reconnects._value.get()

    # 1. the broker restarts under a running gateway
    run = gateway_run(MqttGateway, config, kafka, topics, spool)
    assert run.gateway.connected.wait(15)
    _publish(broker.port, 0, 100, t0)
    run.wait_read(100)
    with caplog.at_level(logging.WARNING, logger="ingest"):
        broker.restart()
        wait_until(lambda: run.gateway.reconnects == 1 and run.gateway.connected.is_set(), 30, "resubscribed")
    assert connected._value.get() == 1 and reconnects._value.get() == before + 1
    assert any("session kept" in r.getMessage() for r in caplog.records), "the session survived"
    _publish(broker.port, 100, 100, t0)
    run.wait_read(200)
    run.close()

    # 2. the gateway is down: devices go on publishing; then the broker restarts too
    _publish(broker.port, 200, 100, t0)
    broker.restart()
    run = gateway_run(MqttGateway, config, kafka, topics, spool)
    run.wait_read(100)  # what the broker kept for the session while nobody was subscribed
    report = run.close()
    assert report.lost == 0 and report.pending == 0

    records = read_topic(kafka, topics.topic_readings, 300)
    values = sorted(r["value"] for r in records)
    assert set(values) == {float(i) for i in range(300)}, "every published value arrived"


@pytest.mark.integration
@pytest.mark.parametrize("protocol", ["3.1.1", "5"])
def test_retained_values_are_read_once_and_never_restamped_with_the_gateway_clock(
    protocol: str,
    kafka: KafkaSettings,
    topics: TopicSettings,
    tmp_path: Path,
    gateway_run: Callable[..., Any],
    read_topic: Callable[..., list[dict[str, Any]]],
    own_mosquitto: Any,
) -> None:
    """Devices often publish their last value retained. The broker sends retained messages again on
    every SUBSCRIBE (MQTT 3.1.1 section 3.8.4), and the gateway used to subscribe again on every
    reconnect: each broker restart re-emitted them, and one without a time field became a new GOOD
    reading stamped with the gateway's clock every time."""
    broker = own_mosquitto
    hour_ago = time.time_ns() // 1_000_000 - 3_600_000
    dev = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="device-retained")
    dev.connect("127.0.0.1", broker.port)
    dev.loop_start()
    dev.publish("p/p1/l1/m1/pressure", b'{"value": 4.2}', qos=1, retain=True).wait_for_publish(10)
    timed = json.dumps({"value": 20.0, "ts": hour_ago}).encode()
    dev.publish("p/p1/l1/m1/temperature", timed, qos=1, retain=True).wait_for_publish(10)
    dev.disconnect()
    dev.loop_stop()
    config = MqttConfig.model_validate(
        {
            "port": broker.port,
            "client_id": f"gw-retained-{protocol}",
            "protocol": protocol,
            "reconnect_max_s": 2,
            "topics": [
                {
                    "pattern": "p/{plant}/{line}/{machine}/{sensor}",
                    "units": {"pressure": "bar", "temperature": "Cel"},
                }
            ],
        }
    )
    run = gateway_run(MqttGateway, config, kafka, topics, SpoolSettings(dir=tmp_path / "spool"))
    run.wait_read(2)
    for k in (1, 2):
        # acknowledged first: an unacknowledged message is delivered again after the restart (at-least-once)
        wait_until(lambda: run.gateway.acks.acked == run.emitter.read, 30, "PUBACKs")
        broker.restart()
        wait_until(lambda k=k: run.gateway.reconnects == k and run.gateway.connected.is_set(), 30, "back")
    _publish(broker.port, 0, 3, time.time_ns() // 1_000_000)  # live values 0.0, 1.0, 2.0 still flow
    run.wait_read(5)
    report = run.close()
    assert report.lost == 0

    readings = read_topic(kafka, topics.topic_readings, 4)
    assert sorted(r["value"] for r in readings if r["value"] < 3) == [0.0, 1.0, 2.0]
    retained = [(r["sensor"], r["value"], r["event_time"]) for r in readings if r["value"] >= 3]
    assert retained == [("temperature", 20.0, hour_ago)], "read once, with the device's own time"
    dead = read_topic(kafka, topics.topic_dead_letters, 1)
    assert [(d["topic"], d["payload"]) for d in dead] == [("p/p1/l1/m1/pressure", b'{"value": 4.2}')]
    assert "retained message without a time field" in dead[0]["reason"]
