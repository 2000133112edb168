"""Broker outages during a steady MQTT stream: the network to the broker is cut by a TCP proxy.

The broker advertises the proxy's address, so every connection of the gateway goes through it.
Zero readings may be lost, each machine's readings must stay in order, the spool must drain.
``MILLSTREAM_TEST_OUTAGE_S`` sets the long outage (default 60 s)."""

from __future__ import annotations

import os
import threading
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from infra.procs import wait_until
from ingest.config import ForwarderSettings, ProducerSettings, SimulatorSettings, SpoolSettings
from ingest.edge_sim import MqttSimPublisher, Sent
from ingest.mqtt import MqttConfig, MqttGateway
from schemas.config import KafkaSettings, TopicSettings

LONG_OUTAGE_S = float(os.environ.get("MILLSTREAM_TEST_OUTAGE_S", "60"))

Outage = tuple[list[Sent], list[dict[str, Any]], Any, Any]  # sent, records read back, report, run


def keys(records: list[dict[str, Any]]) -> list[tuple[str, str, int]]:
    """(machine, sensor, event time) of each record, in the order read."""
    return [(r["machine_id"], r["sensor"], r["event_time"]) for r in records]


def per_machine(items: list[tuple[str, str, int]]) -> dict[str, list[tuple[str, int]]]:
    out: dict[str, list[tuple[str, int]]] = defaultdict(list)
    for machine, sensor, t in items:
        out[machine].append((sensor, t))
    return dict(out)


@pytest.fixture
def outage(
    mosquitto: Any,
    proxied_broker: Any,
    proxied_topics: TopicSettings,
    tmp_path: Path,
    gateway_run: Callable[..., Any],
    read_topic: Callable[..., list[dict[str, Any]]],
) -> Callable[..., Outage]:
    """Runs one outage through the proxied broker; each test passes the keyword arguments."""

    def run_outage(
        *,
        mode: str,
        outage_s: float,
        spool: dict[str, Any] | None = None,
        producer: ProducerSettings | None = None,
        forwarder: ForwarderSettings | None = None,
        name: str,
    ) -> Outage:
        """A 5 Hz stream of 4 machines x 8 sensors; ``mode`` outage of ``outage_s`` in the middle."""
        kafka = KafkaSettings(kafka_bootstrap=proxied_broker.bootstrap)
        pub = MqttSimPublisher(
            "127.0.0.1",
            mosquitto.port,
            SimulatorSettings(machines=4, sensors=8, rate_hz=5, seed=8),
            client_id=f"p-{name}",
        ).connect()
        config = MqttConfig.model_validate(pub.gateway_config(f"gw-{name}"))
        settings = SpoolSettings(**{"dir": tmp_path / "spool", **(spool or {})})
        forwarder = forwarder or ForwarderSettings(offline_after_ms=1500, probe_interval_ms=250)
        run = gateway_run(
            MqttGateway, config, kafka, proxied_topics, settings, forwarder=forwarder, producer=producer
        )
        assert run.gateway.connected.wait(15)
        stop = threading.Event()
        stream = threading.Thread(target=pub.run, args=(stop,), daemon=True)
        stream.start()
        try:
            time.sleep(2.0)
            getattr(proxied_broker.proxy, mode)()
            wait_until(lambda: not run.forwarder.online, 30, "the gateway to notice the outage")
            time.sleep(outage_s)
            assert run.forwarder.spool.pending > 0, "readings were spooled during the outage"
            proxied_broker.proxy.restore()
            wait_until(lambda: run.forwarder.online, 60, "the gateway to notice the broker is back")
            time.sleep(2.0)
        finally:
            proxied_broker.proxy.restore()
            stop.set()
            stream.join(10)
        assert pub.wait_acked(30)
        run.wait_read(len(pub.sent))
        try:
            wait_until(lambda: run.forwarder.spool.pending == 0, 60, "the spool to drain")
        except Exception as exc:
            raise AssertionError(f"{exc}: {run.forwarder.state()}") from exc
        report = run.close()
        pub.close()
        assert not list((tmp_path / "spool").glob("*.seg")), "segments deleted once acknowledged"
        records = read_topic(kafka, proxied_topics.topic_readings, len(pub.sent) - report.dropped)
        return pub.sent, records, report, run

    return run_outage


def assert_complete_and_ordered(sent: list[Sent], records: list[dict[str, Any]], exact: bool = True) -> None:
    got = keys(records)  # partition order
    want = [(s.machine_id, s.sensor, s.event_time) for s in sent]
    late = [r for r in records if r["_timestamp"] != r["event_time"]]
    assert not late, f"record timestamp = event time, spooled readings too: {late[:3]}"
    assert set(got) == set(want), f"lost: {len(set(want) - set(got))}"
    if exact:
        assert per_machine(got) == per_machine(want), "each reading once, each machine in order"
    else:  # duplicates allowed (at-least-once): the first occurrences are in order
        seen: set[tuple[str, str, int]] = set()
        first = [g for g in got if not (g in seen or seen.add(g))]
        assert per_machine(first) == per_machine(want)


def tiny_spool(overflow: str) -> dict[str, Any]:
    """A spool far too small for the outage (8 KiB in 2 KiB segments) with the given overflow policy."""
    return {"max_bytes": 8192, "segment_bytes": 2048, "overflow": overflow}


def assert_nothing_lost(report: Any) -> None:
    assert report.lost == report.dropped == report.pending == 0, report


@pytest.mark.integration
@pytest.mark.parametrize(
    ("mode", "outage_s"), [("refuse", 3.0), ("blackhole", 3.0)], ids=["connection-refused", "black-hole"]
)
def test_short_outage_loses_nothing_and_keeps_order(
    outage: Callable[..., Outage], mode: str, outage_s: float
) -> None:
    sent, records, report, _ = outage(mode=mode, outage_s=outage_s, name=mode)
    assert_complete_and_ordered(sent, records)
    assert report.outages >= 1 and report.spooled > 0
    assert_nothing_lost(report)


@pytest.mark.integration
def test_messages_timing_out_in_the_producer_are_replayed_by_a_new_producer(
    outage: Callable[..., Outage],
) -> None:
    """delivery.timeout.ms shorter than the outage: librdkafka fails what it held (delivery failures);
    those copies come from the spool, and a producer the broker then fences is replaced."""
    sent, records, report, _ = outage(
        mode="refuse", outage_s=4.0, producer=ProducerSettings(delivery_timeout_ms=1500), name="timeout"
    )
    assert report.delivery_failures > 0
    assert_complete_and_ordered(sent, records, exact=False)
    assert_nothing_lost(report)


@pytest.mark.integration
def test_full_spool_blocks_the_source_without_loss(outage: Callable[..., Outage]) -> None:
    """overflow=block and a spool far too small: MQTT messages wait unacknowledged in Mosquitto."""
    sent, records, report, _ = outage(mode="refuse", outage_s=3.0, spool=tiny_spool("block"), name="block")
    assert_complete_and_ordered(sent, records)
    assert report.dropped == 0


@pytest.mark.integration
def test_full_spool_drop_newest_counts_every_dropped_reading(outage: Callable[..., Outage]) -> None:
    sent, records, report, run = outage(
        mode="refuse", outage_s=3.0, spool=tiny_spool("drop-newest"), name="drop"
    )
    got = keys(records)
    assert len(set(got)) == len(got), "no duplicates"
    assert report.dropped > 0 and len(got) + report.dropped == len(sent) == run.emitter.read
    position = {(s.machine_id, s.sensor, s.event_time): i for i, s in enumerate(sent)}
    for machine, series in per_machine(got).items():
        idx = [position[(machine, sensor, t)] for sensor, t in series]
        assert idx == sorted(idx), "what was kept is in order"


@pytest.mark.integration
@pytest.mark.slow
def test_long_outage_during_a_steady_stream(outage: Callable[..., Outage]) -> None:
    sent, records, report, _ = outage(mode="refuse", outage_s=LONG_OUTAGE_S, name="long")
    assert_complete_and_ordered(sent, records)
    assert report.spooled >= LONG_OUTAGE_S * 5 * 32 * 0.9, "the whole outage went through the spool"
    assert_nothing_lost(report)


@pytest.mark.integration
def test_a_burst_far_larger_than_one_batch_arrives_complete_and_in_order(
    kafka: KafkaSettings,
    topics: TopicSettings,
    tmp_path: Path,
    read_topic: Callable[..., list[dict[str, Any]]],
) -> None:
    """20 000 readings handed over faster than they are sent: the input queue holds many batches."""
    from ingest.forwarder import DEAD_LETTERS, READINGS, Forwarder
    from schemas.serde import Serde

    encode = Serde().encoder("Reading", topics.topic_readings)
    t0 = time.time_ns() // 1_000_000
    forwarder = Forwarder(
        kafka,
        {READINGS: topics.topic_readings, DEAD_LETTERS: topics.topic_dead_letters},
        SpoolSettings(dir=tmp_path / "spool"),
        settings=ForwarderSettings(queue_size=50_000),
    )
    messages = []
    for i in range(20_000):
        machine = f"m{i % 7:03d}"
        reading = {
            "plant": "p1",
            "line": "l1",
            "machine_id": machine,
            "sensor": "s",
            "unit": "1",
            "event_time": t0 + i,
            "value": float(i),
            "quality": "GOOD",
            "gateway_id": "burst",
            "seq": i,
            "lot_id": None,
        }
        messages.append((machine.encode(), encode(reading)))
    for key, value in messages:  # queued before the thread starts: one long backlog
        assert forwarder.submit(READINGS, key, value)
    forwarder.start()
    report = forwarder.close()
    assert report.acknowledged == report.submitted == 20_000 and report.lost == 0
    records = read_topic(kafka, topics.topic_readings, 20_000)
    assert sorted(r["seq"] for r in records) == list(range(20_000))
    for machine in {r["machine_id"] for r in records}:
        seqs = [r["seq"] for r in records if r["machine_id"] == machine]
        assert seqs == sorted(seqs)


@pytest.mark.integration
def test_simulate_with_a_spool_folder_runs_through_store_and_forward(
    kafka: KafkaSettings,
    topics: TopicSettings,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    read_topic: Callable[..., list[dict[str, Any]]],
) -> None:
    import json

    from infra.cli import main

    monkeypatch.setenv("MILLSTREAM_KAFKA_BOOTSTRAP", kafka.kafka_bootstrap)
    monkeypatch.setenv("MILLSTREAM_TOPIC_READINGS", topics.topic_readings)
    cfg = tmp_path / "sim.json"
    cfg.write_text(json.dumps({"machines": 4, "sensors": 3, "seed": 2, "spool": {"fsync": "interval"}}))
    argv = ["gateway", "simulate", "--config", str(cfg), "--start-ms", "1767225600000", "--max-scans", "500"]
    assert main([*argv, "--spool-dir", str(tmp_path / "spool")]) == 0
    summary = json.loads(capsys.readouterr().out.strip())
    assert set(summary) == {
        "read",
        "produced",
        "acknowledged",
        "failed",
        "spooled",
        "dropped",
        "scans",
        "values",
    } | {"duration_s"}
    assert summary["scans"] == summary["produced"] == summary["acknowledged"] == 500
    assert summary["values"] == 1500 and summary["failed"] == summary["spooled"] == summary["dropped"] == 0
    records = read_topic(kafka, topics.topic_readings, 500)
    assert len(records) == 500 and {r["_schema"] for r in records} == {"millstream.MachineScan"}
