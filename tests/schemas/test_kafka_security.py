"""One set of MILLSTREAM_KAFKA_* security settings reaches every engine's Kafka client alike.

No TLS or SASL broker runs here (the local broker speaks neither), so this compares the clients'
configurations built from the same settings, and lets the real clients (librdkafka, Python's ssl)
load the CA file.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from confluent_kafka import Consumer, Producer
from confluent_kafka.admin import AdminClient
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from faust.transport.drivers.aiokafka import credentials_to_aiokafka_auth
from pydantic import SecretStr

from schemas.config import KafkaSettings
from streams.faust_app import _credentials
from streams.flink.kafka import java_properties, readings_table_ddl


@pytest.fixture(scope="module")
def ca_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A self-signed CA certificate, like Strimzi's cluster CA."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "millstream-test-cluster-ca")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    path = tmp_path_factory.mktemp("ca") / "ca.crt"
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return path


@pytest.mark.parametrize("protocol", ["SSL", "SASL_SSL"])
def test_every_client_trusts_the_configured_ca(ca_file: Path, protocol: str) -> None:
    kafka = KafkaSettings(
        kafka_bootstrap="127.0.0.1:1",
        kafka_security_protocol=protocol,
        kafka_sasl_mechanism="SCRAM-SHA-256",
        kafka_username="millstream-windows",
        kafka_password=SecretStr("pw"),
        kafka_ssl_ca_file=ca_file,
    )
    # librdkafka: gateways, sink, replay, catch-up and admin clients all start from librdkafka()
    conf: dict[str, str | int | float | bool] = {**kafka.librdkafka()}
    assert conf["ssl.ca.location"] == str(ca_file)
    Producer(conf)  # librdkafka reads the CA file when a client is created
    Consumer({**conf, "group.id": "g"})
    AdminClient(conf)
    # Faust (aiokafka)
    auth = credentials_to_aiokafka_auth(_credentials(kafka))
    assert auth["security_protocol"] == protocol
    subjects = [c["subject"] for c in auth["ssl_context"].get_ca_certs()]
    assert ((("commonName", "millstream-test-cluster-ca"),),) in subjects
    # Flink (Java kafka-clients), in the source table and in the sink's properties
    props = java_properties(kafka)
    assert props["security.protocol"] == protocol
    assert props["ssl.truststore.type"] == "PEM"
    assert props["ssl.truststore.location"] == str(ca_file)
    ddl = readings_table_ddl(kafka, "readings", "g", 1000)
    assert f"'properties.ssl.truststore.location' = '{ca_file}'" in ddl


def test_sasl_settings_agree_across_engines() -> None:
    kafka = KafkaSettings(
        kafka_security_protocol="SASL_PLAINTEXT",
        kafka_sasl_mechanism="SCRAM-SHA-256",
        kafka_username="u",
        kafka_password=SecretStr("p"),
    )
    conf = kafka.librdkafka()
    auth = credentials_to_aiokafka_auth(_credentials(kafka))
    props = java_properties(kafka)
    assert (conf["security.protocol"], auth["security_protocol"], props["security.protocol"]) == (
        "SASL_PLAINTEXT",
        "SASL_PLAINTEXT",
        "SASL_PLAINTEXT",
    )
    assert conf["sasl.mechanism"] == auth["sasl_mechanism"] == props["sasl.mechanism"] == "SCRAM-SHA-256"
    assert (conf["sasl.username"], conf["sasl.password"]) == ("u", "p")
    assert (auth["sasl_plain_username"], auth["sasl_plain_password"]) == ("u", "p")
    assert 'ScramLoginModule required username="u" password="p";' in props["sasl.jaas.config"]
    assert auth["ssl_context"] is None
    assert "ssl.ca.location" not in conf
    assert "ssl.truststore.type" not in props


def test_without_a_ca_file_clients_use_the_system_cas() -> None:
    kafka = KafkaSettings(kafka_security_protocol="SSL")
    assert "ssl.ca.location" not in kafka.librdkafka()
    assert "ssl.truststore.location" not in java_properties(kafka)
    assert credentials_to_aiokafka_auth(_credentials(kafka))["ssl_context"] is not None
