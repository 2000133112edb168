"""Messages that once stopped a gateway: each must become one dead letter, and the traffic after it
must flow. Real Mosquitto, the real broker, the gateway in this process."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from ingest.bridge import MAX_DEAD_LETTER_PAYLOAD, Emitter
from ingest.config import SpoolSettings
from ingest.exceptions import GatewayError
from ingest.forwarder import DEAD_LETTERS, READINGS, Forwarder
from ingest.mqtt import MqttConfig, MqttGateway
from ingest.spool import Spool
from ingest.validation import Validator
from schemas.config import KafkaSettings, TopicSettings
from schemas.exceptions import DECODE_ERROR, INVALID_RECORD
from schemas.serde import Serde

# Each of these raised inside the MQTT message callback, which ended paho's network thread: the
# gateway kept running, still "connected", and never read another message (nor acknowledged this
# one, so after a restart the broker delivered it first again).
POISON = {
    "deeply nested JSON": (b"[" * 100_000, DECODE_ERROR, "nested too deeply"),
    "integer beyond a float": (b'{"value": 1' + b"0" * 400 + b"}", INVALID_RECORD, "beyond a float"),
    "epoch seconds beyond a float in ms": (b'{"value": 1.0, "ts": 1e306}', INVALID_RECORD, "1e+306"),
    # A dead letter used to carry the whole payload: over message.max.bytes the producer refused it,
    # the gateway took that for a broker outage, spooled it, replayed it first, and so on forever.
    "2 MB of garbage": (b"\xff" * 2_000_000, DECODE_ERROR, "cut to its first"),
}


@pytest.mark.integration
def test_poison_messages_become_dead_letters_and_the_stream_goes_on(
    kafka: KafkaSettings,
    topics: TopicSettings,
    tmp_path: Path,
    mosquitto: Any,
    gateway_run: Callable[..., Any],
    read_topic: Callable[..., list[dict[str, Any]]],
) -> None:
    config = MqttConfig.model_validate(
        {
            "gateway_id": "mqtt-poison",
            "port": mosquitto.port,
            "client_id": "gw-poison",
            "topics": [
                {"pattern": "ms/{plant}/{line}/{machine}/{sensor}", "unit": "bar"},
                {  # a second mapping whose devices send epoch seconds
                    "pattern": "sec/{plant}/{line}/{machine}/{sensor}",
                    "unit": "bar",
                    "payload": {"time_format": "epoch_s"},
                },
            ],
        }
    )
    run = gateway_run(MqttGateway, config, kafka, topics, SpoolSettings(dir=tmp_path / "spool"))
    assert run.gateway.connected.wait(15)
    pub = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="pub-poison")
    pub.connect("127.0.0.1", mosquitto.port)
    pub.loop_start()
    try:
        now = time.time_ns() // 1_000_000
        good = 0
        for name, (payload, _, _) in POISON.items():
            where = "sec" if "seconds" in name else "ms"
            pub.publish(f"{where}/p1/l1/m1/pressure", payload, qos=1).wait_for_publish(10)
            for _ in range(5):  # after each poison message, ordinary ones
                good += 1
                value = json.dumps({"value": float(good), "ts": now + good}).encode()
                pub.publish("ms/p1/l1/m1/pressure", value, qos=1).wait_for_publish(10)
    finally:
        pub.disconnect()
        pub.loop_stop()
    run.wait_read(good + len(POISON), timeout=30)
    report = run.close()
    assert report.outages == 0, "a refused message is not a broker outage"
    assert report.lost == 0 and report.pending == 0
    assert run.gateway.acks.acked == good + len(POISON), "every message acknowledged (none redelivered)"

    readings = read_topic(kafka, topics.topic_readings, good)
    assert sorted(r["value"] for r in readings) == [float(i) for i in range(1, good + 1)]
    dead = read_topic(kafka, topics.topic_dead_letters, len(POISON))
    assert len(dead) == len(POISON)
    for d, (name, (payload, code, words)) in zip(dead, POISON.items(), strict=True):
        assert d["reason_code"] == code, name
        assert words in d["reason"], (name, d["reason"])
        assert d["payload"] == payload[:MAX_DEAD_LETTER_PAYLOAD], name


@pytest.mark.integration
def test_a_spooled_message_too_large_for_kafka_is_dropped_counted_and_replay_goes_on(
    kafka: KafkaSettings,
    topics: TopicSettings,
    tmp_path: Path,
    read_topic: Callable[..., list[dict[str, Any]]],
) -> None:
    """A spool written before dead letters were bounded may hold a message over message.max.bytes
    (1 MB by default). Replay used to mark the producer broken, replace it, replay the same record
    first again, forever; everything behind it waited."""
    settings = SpoolSettings(dir=tmp_path / "spool")
    serde = Serde()
    encode = serde.encoder("Reading", topics.topic_readings)
    now = time.time_ns() // 1_000_000
    reading = {
        "plant": "p1",
        "line": "l1",
        "machine_id": "m1",
        "sensor": "pressure",
        "unit": "bar",
        "event_time": now,
        "value": 1.0,
        "quality": "GOOD",
        "gateway_id": "old",
        "seq": 0,
        "lot_id": None,
    }
    spool = Spool(settings).open()
    spool.append(READINGS, b"m1", encode({**reading, "lot_id": "x" * 2_000_000}))
    for i in range(1, 11):
        spool.append(READINGS, b"m1", encode({**reading, "seq": i, "event_time": now + i, "value": float(i)}))
    spool.close()

    kinds = {READINGS: topics.topic_readings, DEAD_LETTERS: topics.topic_dead_letters}
    forwarder = Forwarder(kafka, kinds, settings).start()
    try:
        records = read_topic(kafka, topics.topic_readings, 10, timeout_s=30)
    finally:
        report = forwarder.close()
    assert [r["seq"] for r in records] == list(range(1, 11)), "everything behind it delivered, in order"
    assert report.lost == 1 and report.replayed == 10 and report.pending == 0
    assert report.outages == 0


@pytest.mark.integration
@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")  # the injected fault
def test_a_dead_mqtt_network_loop_ends_the_run_instead_of_a_silent_stall(
    kafka: KafkaSettings, topics: TopicSettings, tmp_path: Path, mosquitto: Any
) -> None:
    """The message callback no longer raises, so paho's loop can only end for reasons outside the
    gateway (a paho defect, a MemoryError). Injected here by a callback that raises; the real paho
    thread then ends exactly as it did for the poison messages above."""
    config = MqttConfig.model_validate(
        {
            "port": mosquitto.port,
            "client_id": "gw-dead-loop",
            "topics": [{"pattern": "dead/{plant}/{line}/{machine}/{sensor}", "unit": "bar"}],
        }
    )
    kinds = {READINGS: topics.topic_readings, DEAD_LETTERS: topics.topic_dead_letters}
    forwarder = Forwarder(kafka, kinds, SpoolSettings(dir=tmp_path / "spool")).start()
    gateway = MqttGateway(config, Emitter(forwarder, Validator(config.validation, config.gateway_id)))

    def boom(*args: Any) -> None:
        raise RuntimeError("injected")

    gateway.client.on_message = boom
    stop = threading.Event()
    pub = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="pub-dead-loop")

    def publish_when_subscribed() -> None:
        if gateway.connected.wait(15):
            pub.connect("127.0.0.1", mosquitto.port)
            pub.loop_start()
            pub.publish("dead/p1/l1/m1/pressure", b"1.0", qos=1).wait_for_publish(10)

    threading.Thread(target=publish_when_subscribed, daemon=True).start()
    timer = threading.Timer(30, stop.set)  # the old code ran on: the test then fails below
    timer.start()
    try:
        with pytest.raises(GatewayError, match="network loop stopped"):
            gateway.run_blocking(stop)
    finally:
        timer.cancel()
        pub.disconnect()
        pub.loop_stop()
        forwarder.close()
        gateway.close()
