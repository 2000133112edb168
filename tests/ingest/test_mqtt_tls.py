"""MQTT over TLS: a Mosquitto TLS listener that requires client certificates (devices publish on its
plain local listener); the gateway connects with the CA and its client certificate and forwards
every message, and each wrong setting is named in one log line. Certificates are made here."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID
from pydantic import ValidationError

from infra.procs import wait_until
from ingest.config import SimulatorSettings, SpoolSettings
from ingest.edge_sim import MqttSimPublisher
from ingest.mqtt import MqttConfig, MqttGateway
from schemas.config import KafkaSettings, TopicSettings
from tests.ingest.conftest import Mosquitto, TlsListener
from tests.ingest.pki import certificate, write_cert, write_key

KEY_PASSWORD = "mqtt-k3y"
CLIENT = ExtendedKeyUsageOID.CLIENT_AUTH


@dataclass(frozen=True)
class MqttPki:
    ca: Path
    broker_cert: Path  # for "localhost" only: connecting to 127.0.0.1 is a host name mismatch
    broker_key: Path
    gateway_cert: Path
    gateway_key: Path  # encrypted with KEY_PASSWORD
    other_ca: Path  # a CA that did not issue the broker's certificate
    stranger_cert: Path  # issued by other_ca: the broker does not accept it
    stranger_key: Path


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> MqttPki:
    d = tmp_path_factory.mktemp("mqtt-pki")
    ca_key, broker_key, gateway_key, other_key, stranger_key = (
        ec.generate_private_key(ec.SECP256R1()) for _ in range(5)
    )
    plant_ca = ("plant-ca", ca_key)
    broker = certificate(
        "mqtt-broker", broker_key, plant_ca, usage=ExtendedKeyUsageOID.SERVER_AUTH, hosts=("localhost",)
    )
    return MqttPki(
        ca=write_cert(d / "ca.crt", certificate("plant-ca", ca_key, ca=True)),
        broker_cert=write_cert(d / "broker.crt", broker),
        broker_key=write_key(d / "broker.key", broker_key),
        gateway_cert=write_cert(
            d / "gateway.crt", certificate("millstream-mqtt", gateway_key, plant_ca, usage=CLIENT)
        ),
        gateway_key=write_key(d / "gateway.key", gateway_key, KEY_PASSWORD),
        other_ca=write_cert(d / "other-ca.crt", certificate("other-ca", other_key, ca=True)),
        stranger_cert=write_cert(
            d / "stranger.crt", certificate("stranger", stranger_key, ("other-ca", other_key), usage=CLIENT)
        ),
        stranger_key=write_key(d / "stranger.key", stranger_key),
    )


@pytest.fixture(scope="module")
def tls_mosquitto(pki: MqttPki, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mosquitto]:
    m = Mosquitto(
        tmp_path_factory.mktemp("tls-mosquitto"), tls=TlsListener(pki.ca, pki.broker_cert, pki.broker_key)
    )
    m.start()
    try:
        yield m
    finally:
        m.stop()


def tls_config(
    m: Mosquitto, pki: MqttPki, host: str = "localhost", port: int | None = None, **tls: Any
) -> MqttConfig:
    settings = {
        "ca_file": str(pki.ca),
        "cert_file": str(pki.gateway_cert),
        "key_file": str(pki.gateway_key),
        "key_password": KEY_PASSWORD,
        **tls,
    }
    return MqttConfig.model_validate(
        {
            "gateway_id": "mqtt-tls",
            "host": host,
            "port": port or m.tls_port,
            "reconnect_min_s": 1,
            "reconnect_max_s": 1,
            "topics": [{"pattern": "plant/{plant}/line/{line}/machine/{machine}/{sensor}"}],
            "tls": {k: v for k, v in settings.items() if v is not None},
        }
    )


@pytest.mark.integration
def test_the_gateway_forwards_over_tls_with_its_client_certificate(
    kafka: KafkaSettings,
    topics: TopicSettings,
    tmp_path: Path,
    pki: MqttPki,
    tls_mosquitto: Mosquitto,
    gateway_run: Callable[..., Any],
    read_topic: Callable[..., list[dict[str, Any]]],
    checks: Any,
) -> None:
    run = gateway_run(
        MqttGateway, tls_config(tls_mosquitto, pki), kafka, topics, SpoolSettings(dir=tmp_path / "s")
    )
    assert run.gateway.connected.wait(15), "no TLS connection with the client certificate"
    devices = SimulatorSettings(machines=2, sensors=3, seed=4)
    pub = MqttSimPublisher("127.0.0.1", tls_mosquitto.port, devices, client_id="pub-tls").connect()
    try:
        now = time.time_ns() // 1_000_000
        for k in range(5):
            pub.publish_tick(now - 1000 + 100 * k)
        assert pub.wait_acked(30)
    finally:
        pub.close()
    run.wait_read(len(pub.sent))
    report = run.close()
    assert report.acknowledged == len(pub.sent) == 5 * 2 * 3
    records = read_topic(kafka, topics.topic_readings, len(pub.sent))
    assert checks.by_series(records, digits=9) == checks.sent_series(pub.sent, digits=9)


@pytest.mark.integration
@pytest.mark.parametrize(
    ("case", "expected"),
    [
        ("no client certificate", "TLS: the broker requires a client certificate ("),
        ("untrusted client certificate", "TLS: the broker refused the gateway's certificate tls.cert_file "),
        ("broker not trusted", "TLS: the broker's certificate is not trusted ("),
        ("host name mismatch", "TLS: the broker's certificate is not for 127.0.0.1 (IP address mismatch"),
        ("plain port", "TLS: the TLS handshake failed ([Errno 104] Connection reset by peer): is port "),
    ],
)
def test_a_refused_tls_connection_says_which_setting_to_change(
    pki: MqttPki,
    tls_mosquitto: Mosquitto,
    idle_gateway: Callable[[MqttConfig], MqttGateway],
    caplog: pytest.LogCaptureFixture,
    case: str,
    expected: str,
) -> None:
    caplog.set_level(logging.ERROR, logger="ingest.mqtt")
    cases: dict[str, dict[str, str | None]] = {
        "no client certificate": {"cert_file": None, "key_file": None, "key_password": None},
        "untrusted client certificate": {
            "cert_file": str(pki.stranger_cert),
            "key_file": str(pki.stranger_key),
            "key_password": None,
        },
        "broker not trusted": {"ca_file": str(pki.other_ca)},
        "host name mismatch": {},
        "plain port": {},
    }
    tls = cases[case]
    host = "127.0.0.1" if case == "host name mismatch" else "localhost"
    port = tls_mosquitto.port if case == "plain port" else tls_mosquitto.tls_port
    gateway = idle_gateway(tls_config(tls_mosquitto, pki, host=host, port=port, **tls))

    def lines() -> list[str]:
        return [r.getMessage() for r in caplog.records if r.name == "ingest.mqtt" and "TLS" in r.getMessage()]

    wait_until(lambda: bool(lines()), 15, f"a TLS error line ({case})")
    assert not gateway.connected.is_set()
    assert expected in lines()[0], lines()[0]
    assert f"MQTT {host}:{port}: TLS: " in lines()[0]


def test_host_name_check_can_be_skipped_by_its_clearly_named_flag(
    pki: MqttPki, tls_mosquitto: Mosquitto, idle_gateway: Callable[[MqttConfig], MqttGateway]
) -> None:
    gateway = idle_gateway(
        tls_config(tls_mosquitto, pki, host="127.0.0.1", insecure_skip_hostname_check=True)
    )
    assert gateway.connected.wait(15)


@pytest.fixture()
def idle_gateway(tmp_path: Path) -> Iterator[Callable[[MqttConfig], MqttGateway]]:
    """A running gateway (its network loop) on an Emitter whose forwarder never starts."""
    from infra.procs import free_port
    from ingest.bridge import Emitter
    from ingest.forwarder import DEAD_LETTERS, READINGS, Forwarder
    from ingest.validation import Validator

    fwd = Forwarder(
        KafkaSettings(kafka_bootstrap=f"127.0.0.1:{free_port()}"),
        {READINGS: "readings", DEAD_LETTERS: "dlq"},
        SpoolSettings(dir=tmp_path / "spool"),
    )
    started: list[MqttGateway] = []

    def start(config: MqttConfig) -> MqttGateway:
        gateway = MqttGateway(config, Emitter(fwd, Validator(gateway_id="mqtt-tls"), seq_start=1))
        gateway.client.connect_async(config.host, config.port, config.keepalive_s)
        gateway.client.loop_start()  # run_blocking without its forwarder checks
        started.append(gateway)
        return gateway

    yield start
    for gateway in started:
        gateway.close()
    fwd.link.close(timeout=0.1)


# ------------------------------------------------------------------ checked when the file loads
def test_tls_files_are_checked_when_the_configuration_loads(pki: MqttPki, tmp_path: Path) -> None:
    m = Mosquitto(tmp_path, port=1)
    m.tls_port = 8883

    def problem(**tls: Any) -> str:
        with pytest.raises(ValidationError) as info:
            tls_config(m, pki, **tls)
        return str(info.value)

    assert "cert_file without key_file (a client certificate needs its private key" in problem(key_file=None)
    assert "key_file without cert_file" in problem(cert_file=None, key_password=None)
    assert f"ca_file {tmp_path}/none.crt: No such file or directory" in problem(
        ca_file=str(tmp_path / "none.crt")
    )
    assert "(PEM files; wrong key_password?)" in problem(key_password="nope")
    assert "(PEM files; encrypted? set key_password)" in problem(key_password=None)
    assert f"key_file {pki.stranger_key} is not the private key of cert_file {pki.gateway_cert}" in problem(
        key_file=str(pki.stranger_key), key_password=None
    )
    assert tls_config(m, pki).tls is not None and tls_config(m, pki).port == 8883
