"""OPC UA security: an asyncua server that accepts only Basic256Sha256 SignAndEncrypt from
clients whose certificate it trusts; the gateway reads over that channel, and a gateway without
security, with another mode, with an untrusted certificate or distrusting the server is refused
with a line that says what to change. Certificates are made here with ``cryptography``."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from infra.procs import free_port, wait_until
from ingest.bridge import Emitter
from ingest.config import SimulatorSettings, SpoolSettings
from ingest.edge_sim import OpcUaSimServer, OpcUaSimThread, SimSecurity
from ingest.opcua import OpcUaConfig, OpcUaGateway, SecurityMismatch
from schemas.config import KafkaSettings, TopicSettings
from tests.ingest.pki import opcua_application, write_cert, write_key

GATEWAY_URI = "urn:acme:millstream:opcua-press-hall"
KEY_PASSWORD = "gw-k3y"


@dataclass(frozen=True)
class OpcUaPki:
    server_cert: Path  # DER, like most PLCs export it
    server_key: Path
    trusted_clients: Path  # the server's trust list (a folder)
    trusted_servers: Path  # the gateway's (a folder)
    gateway_cert: Path  # PEM in a .crt file (asyncua alone would read it as DER)
    gateway_key: Path  # PKCS#8 PEM, encrypted with KEY_PASSWORD
    stranger_cert: Path  # a gateway certificate the server does not trust
    stranger_key: Path


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> OpcUaPki:
    d = tmp_path_factory.mktemp("opcua-pki")
    for sub in ("server", "trusted-clients", "trusted-servers", "gateway"):
        (d / sub).mkdir()
    server, server_key = opcua_application("PLC-7", "urn:acme:plc7", client=False)
    gateway, gateway_key = opcua_application("millstream-opcua", GATEWAY_URI, client=True)
    stranger, stranger_key = opcua_application("someone-else", GATEWAY_URI, client=True)
    write_cert(d / "trusted-clients" / "millstream-opcua.der", gateway)
    write_cert(d / "trusted-servers" / "plc7.der", server)
    return OpcUaPki(
        server_cert=write_cert(d / "server" / "plc7.der", server),
        server_key=write_key(d / "server" / "plc7-key.pem", server_key),
        trusted_clients=d / "trusted-clients",
        trusted_servers=d / "trusted-servers",
        gateway_cert=write_cert(d / "gateway" / "gateway.crt", gateway),
        gateway_key=write_key(d / "gateway" / "gateway.key", gateway_key, KEY_PASSWORD),
        stranger_cert=write_cert(d / "gateway" / "stranger.pem", stranger),
        stranger_key=write_key(d / "gateway" / "stranger.key", stranger_key),
    )


@pytest.fixture()
def secure_server(pki: OpcUaPki) -> Iterator[OpcUaSimThread]:
    security = SimSecurity(pki.server_cert, pki.server_key, pki.trusted_clients)
    settings = SimulatorSettings(machines=2, sensors=3, seed=5, fault_probability=0)
    sim = OpcUaSimThread(OpcUaSimServer(free_port(), settings, security=security)).start()
    yield sim
    sim.stop()


def secured(pki: OpcUaPki, **overrides: Any) -> dict[str, Any]:
    return {
        "policy": "Basic256Sha256",
        "mode": "SignAndEncrypt",
        "cert_file": str(pki.gateway_cert),
        "key_file": str(pki.gateway_key),
        "key_password": KEY_PASSWORD,
        "server_certificate": str(pki.trusted_servers),
        **overrides,
    }


OFFLINE = {  # for the load-time checks: no server needed
    "endpoint": "opc.tcp://127.0.0.1:4840/",
    "nodes": [
        {"node_id": "ns=2;s=T", "plant": "p1", "line": "l1", "machine": "m1", "sensor": "t", "unit": "Cel"}
    ],
}


def config(sim: OpcUaSimThread | None, security: dict[str, Any] | None) -> OpcUaConfig:
    data = sim.server.gateway_config("opcua-sec") if sim is not None else OFFLINE
    data = {**data, "reconnect_initial_s": 0.2, "reconnect_max_s": 0.5}
    return OpcUaConfig.model_validate({**data, "security": security} if security is not None else data)


def fatal_at_first_connection(cfg: OpcUaConfig, emitter: Emitter) -> str:
    stop = threading.Event()
    timer = threading.Timer(30, stop.set)  # a gateway that retried instead would end here
    timer.start()
    try:
        with pytest.raises(SecurityMismatch) as info:
            OpcUaGateway(cfg, emitter).run_blocking(stop)
    finally:
        timer.cancel()
    return str(info.value)


@pytest.mark.integration
def test_the_gateway_reads_over_basic256sha256_sign_and_encrypt(
    kafka: KafkaSettings,
    topics: TopicSettings,
    tmp_path: Path,
    pki: OpcUaPki,
    secure_server: OpcUaSimThread,
    gateway_run: Callable[..., Any],
    read_topic: Callable[..., list[dict[str, Any]]],
    checks: Any,
) -> None:
    cfg = config(secure_server, secured(pki))
    assert cfg.security.application_uri_of(cfg.security.certificate()) == GATEWAY_URI, "from the SAN"
    run = gateway_run(OpcUaGateway, cfg, kafka, topics, SpoolSettings(dir=tmp_path / "spool"))
    assert run.gateway.subscribed.wait(30), "the gateway did not subscribe over the secured channel"
    secure_server.ticks(5, pause_s=0.02)
    sent = secure_server.server.sent
    run.wait_read(len(sent))
    report = run.close()
    assert report.acknowledged == len(sent) == 6 * 6  # the initial values + 5 scans of 2 x 3 nodes
    records = read_topic(kafka, topics.topic_readings, len(sent))
    assert checks.by_series(records) == checks.sent_series(sent, bad_has_value=False)


@pytest.mark.integration
@pytest.mark.parametrize(
    ("security", "expected"),
    [
        (None, "no endpoint with security policy None, mode None; it offers Basic256Sha256 SignAndEncrypt"),
        ({"mode": "Sign"}, "no endpoint with security policy Basic256Sha256, mode Sign; it offers "),
        ({"policy": "Aes256_Sha256_RsaPss"}, "policy Aes256_Sha256_RsaPss, mode SignAndEncrypt; it offers "),
    ],
)
def test_a_gateway_without_the_servers_security_is_refused_and_told_what_it_offers(
    pki: OpcUaPki,
    secure_server: OpcUaSimThread,
    idle_emitter: Emitter,
    security: dict[str, Any] | None,
    expected: str,
) -> None:
    text = fatal_at_first_connection(
        config(secure_server, None if security is None else secured(pki, **security)), idle_emitter
    )
    assert text.startswith(f"OPC UA {secure_server.server.endpoint}: the server offers ") and expected in text
    assert "set security.policy and security.mode" in text


@pytest.mark.integration
def test_a_server_certificate_the_gateway_does_not_trust_is_refused(
    pki: OpcUaPki, secure_server: OpcUaSimThread, idle_emitter: Emitter, tmp_path: Path
) -> None:
    other, _ = opcua_application("impostor", "urn:acme:plc7", client=False)
    cfg = config(secure_server, secured(pki, server_certificate=str(write_cert(tmp_path / "x.der", other))))
    text = fatal_at_first_connection(cfg, idle_emitter)
    assert "the server's certificate (CN=PLC-7, SHA-1 thumbprint " in text and "is not trusted" in text


@pytest.mark.integration
def test_a_gateway_certificate_the_server_does_not_trust_is_logged_with_what_to_do_and_retried(
    pki: OpcUaPki,
    secure_server: OpcUaSimThread,
    idle_emitter: Emitter,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.ERROR, logger="ingest.opcua")
    stranger = secured(
        pki, cert_file=str(pki.stranger_cert), key_file=str(pki.stranger_key), key_password=None
    )
    gateway = OpcUaGateway(config(secure_server, stranger), idle_emitter)

    def refusals() -> list[str]:
        return [r.getMessage() for r in caplog.records if r.name == "ingest.opcua"]

    stop = threading.Event()
    thread = threading.Thread(target=gateway.run_blocking, args=(stop,), daemon=True)
    thread.start()
    try:
        wait_until(lambda: len(refusals()) >= 2, 30, "two refused attempts")  # retried, not fatal
    finally:
        stop.set()
        thread.join(15)
    assert not gateway.ever_subscribed
    line = refusals()[0]
    assert "the server refused the gateway's certificate: BadCertificateUntrusted" in line
    assert f"trust cert_file {pki.stranger_cert} (CN=someone-else, SHA-1 thumbprint " in line, line


# ------------------------------------------------------------------ checked when the file loads
@pytest.mark.parametrize(
    ("security", "expected"),
    [
        (
            {"policy": "None", "mode": "Sign"},
            "mode without a policy (policy None: no signing, no encryption)",
        ),
        ({"cert_file": "/x.der", "key_file": "/x.key"}, "cert_file, key_file without a policy"),
        ({"policy": "Basic256Sha256"}, "policy Basic256Sha256 needs cert_file, key_file, server_certificate"),
        ({"policy": "Basic256Sha256", "mode": "Encrypt"}, "Input should be 'Sign' or 'SignAndEncrypt'"),
        ({"policy": "Basic128Rsa15"}, "Input should be 'None', 'Basic256Sha256', 'Aes128_Sha256_RsaOaep'"),
    ],
)
def test_half_set_security_is_a_configuration_error(security: dict[str, Any], expected: str) -> None:
    with pytest.raises(ValidationError) as info:
        config(None, security)
    assert expected in str(info.value)


def test_the_files_are_checked_when_the_configuration_loads(pki: OpcUaPki, tmp_path: Path) -> None:
    def problem(**overrides: Any) -> str:
        with pytest.raises(ValidationError) as info:
            config(None, secured(pki, **overrides))
        return str(info.value)

    assert f"cert_file {tmp_path}/none.der: cannot read it: No such file or directory" in problem(
        cert_file=str(tmp_path / "none.der")
    )
    assert "(set key_password)" in problem(key_password=None)
    assert "key_password is wrong" in problem(key_password="nope")
    assert f"key_file {pki.stranger_key} is not the private key of cert_file" in problem(
        key_file=str(pki.stranger_key), key_password=None
    )
    assert "application_uri 'urn:other' is not in the subjectAltName" in problem(application_uri="urn:other")
    assert f"folder {tmp_path} holds no certificate" in problem(server_certificate=str(tmp_path))
    no_uri = tmp_path / "no-uri.pem"
    write_cert(no_uri, pki_certificate_without_uri(tmp_path))
    assert "has no URI in its subjectAltName" in problem(
        cert_file=str(no_uri), key_file=str(tmp_path / "no-uri.key"), key_password=None
    )


def pki_certificate_without_uri(tmp_path: Path) -> Any:
    from tests.ingest.pki import certificate, rsa_key

    key = rsa_key()
    write_key(tmp_path / "no-uri.key", key)
    return certificate("no-uri", key)
