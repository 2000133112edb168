"""OPC UA server (asyncua, simulated machines) -> gateway -> real broker -> consumer."""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from infra.procs import free_port, wait_until
from ingest import edge_sim
from ingest.bridge import SOURCE_GAP, Emitter
from ingest.config import SimulatorSettings, SpoolSettings
from ingest.edge_sim import NAMESPACE, OpcUaSimServer, OpcUaSimThread
from ingest.opcua import NamespaceNotFound, OpcUaConfig, OpcUaGateway
from ingest.signals import sensor_specs
from schemas.config import KafkaSettings, TopicSettings

REPO = Path(__file__).resolve().parents[2]
SUMMARY = {
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


@pytest.fixture()
def opcua_server() -> Iterator[Callable[[SimulatorSettings], OpcUaSimThread]]:
    started: list[OpcUaSimThread] = []

    def start(settings: SimulatorSettings) -> OpcUaSimThread:
        sim = OpcUaSimThread(OpcUaSimServer(free_port(), settings)).start()
        started.append(sim)
        return sim

    yield start
    for sim in started:
        sim.stop()


@pytest.mark.integration
def test_every_value_arrives_once_in_order_with_its_timestamp_and_quality(
    kafka: KafkaSettings,
    topics: TopicSettings,
    tmp_path: Path,
    opcua_server: Callable[[SimulatorSettings], OpcUaSimThread],
    gateway_run: Callable[..., Any],
    read_topic: Callable[..., list[dict[str, Any]]],
    checks: Any,
) -> None:
    sim = opcua_server(
        SimulatorSettings(
            machines=3,
            sensors=8,
            seed=11,
            fault_probability=0.01,
            uncertain_probability=0.04,
            bad_probability=0.02,
        )
    )
    config = OpcUaConfig.model_validate(sim.server.gateway_config("opcua-e2e"))
    run = gateway_run(OpcUaGateway, config, kafka, topics, SpoolSettings(dir=tmp_path / "spool"))
    assert run.gateway.subscribed.wait(30), "the gateway did not subscribe"
    sim.ticks(40, pause_s=0.01)
    sent = sim.server.sent
    run.wait_read(len(sent))
    report = run.close()
    assert report.acknowledged == report.produced == len(sent) and report.spooled == report.lost == 0

    records = read_topic(kafka, topics.topic_readings, len(sent))
    assert len(records) == len(sent) == 41 * 3 * 8  # the initial values + 40 scans
    assert checks.by_series(records) == checks.sent_series(sent, bad_has_value=False), (
        "each value once, in order, same time/value/quality"
    )
    checks.machine_order(records)
    qualities = {r["quality"] for r in records}
    assert qualities == {"GOOD", "UNCERTAIN", "BAD"}, "status codes of every severity were mapped"
    units = {s.name: s.unit for s in sensor_specs(8)}
    assert all(r["unit"] == units[r["sensor"]] and r["gateway_id"] == "opcua-e2e" for r in records)


@pytest.mark.integration
def test_server_restart_resubscribes_reports_the_gap_and_duplicates_only_what_dedup_removes(
    kafka: KafkaSettings,
    topics: TopicSettings,
    tmp_path: Path,
    opcua_server: Callable[[SimulatorSettings], OpcUaSimThread],
    gateway_run: Callable[..., Any],
    read_topic: Callable[..., list[dict[str, Any]]],
    caplog: pytest.LogCaptureFixture,
    checks: Any,
) -> None:
    caplog.set_level(logging.WARNING, logger="ingest.forwarder")
    sim = opcua_server(SimulatorSettings(machines=2, sensors=4, seed=3, fault_probability=0))
    config = OpcUaConfig.model_validate(
        {
            **sim.server.gateway_config("opcua-restart", browse_paths=True),
            "reconnect_initial_s": 0.2,
            "reconnect_max_s": 1.0,
            "watchdog_interval_s": 0.5,
        }
    )
    nodes = 2 * 4
    run = gateway_run(OpcUaGateway, config, kafka, topics, SpoolSettings(dir=tmp_path / "spool"))
    assert run.gateway.subscribed.wait(30)
    sim.ticks(10, pause_s=0.01)
    run.wait_read(len(sim.server.sent))

    sim.restart(down_s=2.0)  # the new server starts with the last values (and their timestamps)
    wait_until(lambda: run.gateway.reconnects == 1 and run.gateway.subscribed.is_set(), 30, "re-subscription")
    sim.ticks(10, pause_s=0.01)
    sent = sim.server.sent
    run.wait_read(len(sent) + nodes)  # + the current values the new subscription starts with
    run.close()

    gap = run.gateway.gaps[0]
    assert gap >= 2.0, "the gap covers at least the server's downtime"
    assert SOURCE_GAP.labels("opcua-restart", "opcua")._value.get() == gap
    assert any("gap of" in r.getMessage() and "opcua-restart" in r.getMessage() for r in caplog.records)

    records = read_topic(kafka, topics.topic_readings, len(sent) + nodes)
    deduped: dict[tuple[str, str, int], dict[str, Any]] = {}
    for r in records:
        deduped.setdefault((r["machine_id"], r["sensor"], r["event_time"]), r)
    assert len(records) - len(deduped) == nodes, "only the re-sent current values are duplicates"
    assert set(deduped) == {(s.machine_id, s.sensor, s.event_time) for s in sent}, "nothing lost"
    assert checks.by_series(list(deduped.values())) == checks.sent_series(sent, bad_has_value=False)
    checks.machine_order(records)


@pytest.mark.integration
def test_cli_gateway_runs_from_a_yaml_file_and_summarises_on_sigterm(
    kafka: KafkaSettings,
    topics: TopicSettings,
    tmp_path: Path,
    opcua_server: Callable[[SimulatorSettings], OpcUaSimThread],
    read_topic: Callable[..., list[dict[str, Any]]],
    checks: Any,
) -> None:
    sim = opcua_server(SimulatorSettings(machines=2, sensors=3, seed=5, fault_probability=0))
    cfg = tmp_path / "gateway.yaml"
    cfg.write_text(
        yaml.safe_dump(
            {
                **sim.server.gateway_config("opcua-cli"),
                "spool": {"fsync": "interval", "fsync_interval_ms": 100},
                "producer": {"linger_ms": 5},
            }
        )
    )
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "infra.cli", "gateway", "opcua", "--config", str(cfg)]
        + ["--spool-dir", str(tmp_path / "spool"), "--metrics-port", str(port)],
        cwd=REPO,
        env={
            **os.environ,
            "MILLSTREAM_KAFKA_BOOTSTRAP": kafka.kafka_bootstrap,
            "MILLSTREAM_TOPIC_READINGS": topics.topic_readings,
            "MILLSTREAM_TOPIC_DEAD_LETTERS": topics.topic_dead_letters,
            "PYTHONPATH": str(REPO),
        },
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_until(
            lambda: checks.metric(port, 'millstream_gateway_source_connected{gateway="opcua-cli"') == 1,
            60,
            "sub",
        )
        sim.ticks(20, pause_s=0.01)
        sent = sim.server.sent
        wait_until(
            lambda: checks.metric(port, "millstream_gateway_values_total") >= len(sent), 60, "all values"
        )
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err
    lines = [x for x in out.splitlines() if x.strip()]
    assert len(lines) == 1, lines
    s = json.loads(lines[0])
    assert SUMMARY <= set(s)
    assert s["read"] == s["values"] == s["scans"] == len(sent) == 21 * 2 * 3
    assert s["produced"] == s["acknowledged"] == len(sent)
    assert s["failed"] == s["spooled"] == s["dropped"] == s["dead_letters"] == s["spool_pending"] == 0
    assert checks.by_series(read_topic(kafka, topics.topic_readings, len(sent))) == checks.sent_series(
        sent, bad_has_value=False
    )


@pytest.mark.integration
def test_a_namespace_uri_the_server_lacks_is_fatal_at_the_first_connection_and_named(
    opcua_server: Callable[[SimulatorSettings], OpcUaSimThread], idle_emitter: Emitter
) -> None:
    sim = opcua_server(SimulatorSettings(machines=1, sensors=2, fault_probability=0))
    config = OpcUaConfig.model_validate({**sim.server.gateway_config(), "namespaces": {"sim": "urn:wrong"}})
    stop = threading.Event()
    timer = threading.Timer(30, stop.set)  # a gateway that retried instead would end here
    timer.start()
    try:
        with pytest.raises(NamespaceNotFound) as info:
            OpcUaGateway(config, idle_emitter).run_blocking(stop)
    finally:
        timer.cancel()
    text = str(info.value)
    assert "'urn:wrong' (alias sim)" in text and sim.server.endpoint in text
    assert NAMESPACE in text, "the error lists the namespaces the server has"


@pytest.mark.integration
def test_a_namespace_missing_after_a_server_restart_is_retried(
    kafka: KafkaSettings,
    topics: TopicSettings,
    tmp_path: Path,
    opcua_server: Callable[[SimulatorSettings], OpcUaSimThread],
    gateway_run: Callable[..., Any],
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    caplog.set_level(logging.ERROR, logger="ingest.opcua")
    sim = opcua_server(SimulatorSettings(machines=1, sensors=2, fault_probability=0))
    config = OpcUaConfig.model_validate(
        {**sim.server.gateway_config("opcua-ns"), "reconnect_initial_s": 0.2, "reconnect_max_s": 0.5}
    )
    run = gateway_run(OpcUaGateway, config, kafka, topics, SpoolSettings(dir=tmp_path / "spool"))
    assert run.gateway.subscribed.wait(30)
    monkeypatch.setattr(edge_sim, "NAMESPACE", "urn:renamed")  # the server comes back without our URI
    sim.restart(down_s=0.5)
    wait_until(
        lambda: any(f"no namespace {NAMESPACE!r}" in r.getMessage() for r in caplog.records),
        30,
        "the missing namespace to be reported",
    )
    assert run._thread.is_alive(), "not fatal after the first subscription"
    monkeypatch.setattr(edge_sim, "NAMESPACE", NAMESPACE)
    sim.restart(down_s=0.1)
    wait_until(lambda: run.gateway.reconnects == 1 and run.gateway.subscribed.is_set(), 30, "re-subscription")


@pytest.mark.integration
def test_a_node_the_server_lacks_is_logged_by_status_name_and_the_others_subscribed(
    kafka: KafkaSettings,
    topics: TopicSettings,
    tmp_path: Path,
    opcua_server: Callable[[SimulatorSettings], OpcUaSimThread],
    gateway_run: Callable[..., Any],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.ERROR, logger="ingest.opcua")
    sim = opcua_server(SimulatorSettings(machines=1, sensors=2, fault_probability=0))
    data = sim.server.gateway_config("opcua-missing")
    data["nodes"][0]["node_id"] = "ns={sim};s=p1/l1/m001/not-there"
    run = gateway_run(
        OpcUaGateway, OpcUaConfig.model_validate(data), kafka, topics, SpoolSettings(dir=tmp_path / "spool")
    )
    assert run.gateway.subscribed.wait(30)
    missing = data["nodes"][0]
    lines = [r.getMessage() for r in caplog.records if "cannot monitor" in r.getMessage()]
    assert len(lines) == 1 and "BadNodeIdUnknown" in lines[0], lines
    assert f"({missing['machine']}/{missing['sensor']})" in lines[0]
    run.wait_read(1)  # the other node's current value arrives


def test_subscription_status_changes_are_logged_by_name() -> None:
    """A StatusChangeNotification's code by its name and meaning (OPC UA Part 6, StatusCode table), not
    as ``StatusCode(value=2148270080)``."""
    from asyncua import ua

    from ingest.opcua import _status_text

    assert _status_text(ua.StatusCode(0x800C0000)) == (
        "BadShutdown (The operation was cancelled because the application is shutting down)"
    )
    assert _status_text(ua.StatusCode(0x12345678)) == "status code 0x12345678"
