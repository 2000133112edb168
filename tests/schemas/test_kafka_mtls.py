"""Client certificates (mutual TLS, Strimzi's KafkaUser ``authentication: type: tls``) in every client.

The local broker speaks no TLS, so a TLS-terminating proxy started here stands in front of it: it
presents a server certificate signed by a test CA and requires a client certificate signed by the
same CA (``CERT_REQUIRED``), and the broker advertises the proxy's address, so every connection a
client makes (bootstrap and broker) goes through it. The client key is unencrypted PKCS#8, like
``user.key`` of a Strimzi KafkaUser Secret. The schema registry client is checked against an https
server that requires a client certificate too.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import ipaddress
import json
import os
import select
import socket
import ssl
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pyflink
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.errors import KafkaConnectionError
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from faust.transport.drivers.aiokafka import credentials_to_aiokafka_auth
from pydantic import SecretStr

from infra.flink_jars import jar_paths
from infra.procs import free_port
from infra.stack import LocalBroker, create_topics
from schemas.config import KafkaSettings, SerdeSettings, TopicSettings
from schemas.exceptions import ConfigError
from schemas.serde import Serde
from streams.faust_app import _credentials
from streams.flink.kafka import java_properties

RECORD = {
    "plant": "p1", "line": "l1", "machine_id": "m-7", "sensor": "t", "unit": "Cel",
    "event_time": 1_700_000_000_000, "value": 63.5, "quality": "GOOD", "seq": 9, "lot_id": None,
    "gateway_id": "gw-1",
}  # fmt: skip


# ------------------------------------------------------------------------------------------ certificates
def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


@dataclass(frozen=True)
class Pki:
    ca: Path  # Strimzi: ca.crt of the cluster CA Secret (signed the brokers' certificates)
    clients_ca: Path  # Strimzi: the clients CA, which the brokers trust for client certificates
    server_cert: Path
    server_key: Path
    user_crt: Path  # Strimzi: user.crt of the KafkaUser Secret
    user_key: Path  # Strimzi: user.key (PKCS#8, unencrypted)
    encrypted_key: Path  # the same key, PKCS#8 encrypted with KEY_PASSWORD (PBES2, openssl's default)
    legacy_encrypted_key: Path  # the same key, PKCS#8 encrypted with PBE-SHA1-3DES (Java reads that)
    rsa_traditional_key: Path  # the same key in the PKCS#1 "BEGIN RSA PRIVATE KEY" form


KEY_PASSWORD = "k3y-pa$$"
FILES = (
    "ca.crt",
    "clients-ca.crt",
    "server.crt",
    "server.key",
    "user.crt",
    "user.key",
    "enc.key",
    "enc1.key",
)


def _certificate(
    subject: str, public_key: Any, issuer: str, issuer_key: Any, usage: x509.ObjectIdentifier | None
) -> x509.Certificate:
    """A certificate for one day; ``usage`` None: a CA."""
    now = dt.datetime.now(dt.UTC)
    b = (
        x509.CertificateBuilder()
        .subject_name(_name(subject))
        .issuer_name(_name(issuer))
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=1))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=usage is None, path_length=None), critical=True)
    )
    if usage is not None:
        b = b.add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
    if usage == ExtendedKeyUsageOID.SERVER_AUTH:
        names = [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
        b = b.add_extension(x509.SubjectAlternativeName(names), critical=False)
    return b.sign(issuer_key, hashes.SHA256())


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    d = tmp_path_factory.mktemp("pki")
    pki = Pki(*(d / n for n in (*FILES, "rsa.key")))
    cluster_key, clients_key, server_key = (ec.generate_private_key(ec.SECP256R1()) for _ in range(3))
    user_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)  # Strimzi: RSA 2048
    cluster_ca = _certificate("cluster-ca", cluster_key.public_key(), "cluster-ca", cluster_key, None)
    clients_ca = _certificate("clients-ca", clients_key.public_key(), "clients-ca", clients_key, None)
    server = _certificate(
        "localhost", server_key.public_key(), "cluster-ca", cluster_key, ExtendedKeyUsageOID.SERVER_AUTH
    )
    user = _certificate(
        "millstream-windows",
        user_key.public_key(),
        "clients-ca",
        clients_key,
        ExtendedKeyUsageOID.CLIENT_AUTH,
    )
    pki.ca.write_bytes(_pem(cluster_ca))
    pki.clients_ca.write_bytes(_pem(clients_ca))
    pki.server_cert.write_bytes(_pem(server))
    pki.user_crt.write_bytes(_pem(user))
    pkcs8, pem = serialization.PrivateFormat.PKCS8, serialization.Encoding.PEM
    pki.server_key.write_bytes(server_key.private_bytes(pem, pkcs8, serialization.NoEncryption()))
    pki.user_key.write_bytes(user_key.private_bytes(pem, pkcs8, serialization.NoEncryption()))
    pki.encrypted_key.write_bytes(
        user_key.private_bytes(pem, pkcs8, serialization.BestAvailableEncryption(KEY_PASSWORD.encode()))
    )
    subprocess.run(  # noqa: S603 - fixed command
        ["openssl", "pkcs8", "-topk8", "-v1", "PBE-SHA1-3DES", "-in", str(pki.user_key),  # noqa: S607
         "-passout", f"pass:{KEY_PASSWORD}", "-out", str(pki.legacy_encrypted_key)],
        check=True,
    )  # fmt: skip
    pki.rsa_traditional_key.write_bytes(
        user_key.private_bytes(
            pem, serialization.PrivateFormat.TraditionalOpenSSL, serialization.NoEncryption()
        )
    )
    return pki


def _server_context(pki: Pki) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(pki.server_cert, pki.server_key)
    ctx.load_verify_locations(pki.clients_ca)
    ctx.verify_mode = ssl.CERT_REQUIRED  # mutual TLS: no client certificate, no connection
    return ctx


# ----------------------------------------------------------------------------------------- TLS proxy
class TlsProxy:
    """TLS (client certificate required) on ``port``, plain TCP to ``upstream`` behind it. Blocking
    sockets, one thread per connection: a refused handshake sends the client its TLS alert, as a
    broker's TLS listener does."""

    def __init__(self, port: int, upstream: int, context: ssl.SSLContext) -> None:
        self.upstream, self.context = upstream, context
        self.listener = socket.create_server(("127.0.0.1", port))

    def start(self) -> TlsProxy:
        threading.Thread(target=self._accept, daemon=True).start()
        return self

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:  # closed by stop()
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        try:
            tls = self.context.wrap_socket(conn, server_side=True)
        except OSError:  # ssl.SSLError included: no or a foreign client certificate
            conn.close()
            return
        tls.settimeout(0.5)
        try:
            with tls, socket.create_connection(("127.0.0.1", self.upstream)) as broker:
                while True:
                    ready = [tls] if tls.pending() else select.select([tls, broker], [], [], 1.0)[0]
                    for src in ready:
                        try:
                            data = src.recv(65536)
                        except TimeoutError:  # a TLS record without application data
                            continue
                        if not data:
                            return
                        (broker if src is tls else tls).sendall(data)
        except OSError:
            return

    def stop(self) -> None:
        self.listener.close()


@pytest.fixture(scope="module")
def mtls_bootstrap(pki: Pki, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """host:port of a broker reachable only through mutual TLS."""
    port = free_port()
    broker = LocalBroker(tmp_path_factory.mktemp("mtls-broker"), advertised=f"127.0.0.1:{port}")
    proxy = TlsProxy(port, broker.port, _server_context(pki)).start()
    broker.start()
    try:
        yield f"127.0.0.1:{port}"
    finally:
        broker.stop()
        proxy.stop()


def _settings(bootstrap: str, pki: Pki, **kw: Any) -> KafkaSettings:
    base: dict[str, Any] = {
        "kafka_bootstrap": bootstrap,
        "kafka_security_protocol": "SSL",
        "kafka_ssl_ca_file": pki.ca,
        "kafka_ssl_cert_file": pki.user_crt,
        "kafka_ssl_key_file": pki.user_key,
    }
    return KafkaSettings(**{**base, **kw})


def _topic(kafka: KafkaSettings) -> str:
    name = f"mtls-{uuid.uuid4().hex[:8]}"
    t = TopicSettings(
        topic_readings=name, topic_windows=f"{name}-w", topic_dead_letters=f"{name}-d",
        topic_late=f"{name}-l", topic_spc_signals=f"{name}-s", topic_anomalies=f"{name}-a",
        topic_partitions=1,
    )  # fmt: skip
    create_topics(kafka, t)  # the admin client, through the proxy
    return name


def _librdkafka_round_trip(kafka: KafkaSettings, topic: str, value: bytes) -> bytes:
    p = Producer({**kafka.librdkafka()})
    p.produce(topic, value)
    assert p.flush(15) == 0
    c = Consumer({**kafka.librdkafka(), "group.id": "mtls", "enable.auto.commit": False})
    try:
        c.assign([TopicPartition(topic, 0, OFFSET_BEGINNING)])
        for _ in range(30):
            msg = c.poll(1.0)
            if msg is not None and msg.error() is None and msg.value() == value:
                return value
    finally:
        c.close()
    raise AssertionError(f"{value!r} not read back from {topic}")


async def _aiokafka_round_trip(kafka: KafkaSettings, topic: str, value: bytes) -> bytes:
    auth = credentials_to_aiokafka_auth(_credentials(kafka))  # what the Faust worker hands aiokafka
    producer = AIOKafkaProducer(bootstrap_servers=kafka.kafka_bootstrap, **auth)
    await producer.start()
    try:
        await producer.send_and_wait(topic, value)
    finally:
        await producer.stop()
    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=kafka.kafka_bootstrap, auto_offset_reset="earliest", **auth
    )
    await consumer.start()
    try:
        async with asyncio.timeout(20):
            async for msg in consumer:
                if msg.value == value:
                    return value
    finally:
        await consumer.stop()
    raise AssertionError(f"{value!r} not read back from {topic}")


# ------------------------------------------------------------------------------------------------ tests
def test_librdkafka_and_aiokafka_connect_with_the_client_certificate(mtls_bootstrap: str, pki: Pki) -> None:
    kafka = _settings(mtls_bootstrap, pki)
    topic = _topic(kafka)
    assert _librdkafka_round_trip(kafka, topic, b"from librdkafka") == b"from librdkafka"
    assert asyncio.run(_aiokafka_round_trip(kafka, topic, b"from aiokafka")) == b"from aiokafka"


def test_an_encrypted_key_with_its_password(mtls_bootstrap: str, pki: Pki) -> None:
    kafka = _settings(
        mtls_bootstrap,
        pki,
        kafka_ssl_key_file=pki.encrypted_key,
        kafka_ssl_key_password=SecretStr(KEY_PASSWORD),
    )
    topic = _topic(kafka)
    assert _librdkafka_round_trip(kafka, topic, b"encrypted key") == b"encrypted key"
    assert asyncio.run(_aiokafka_round_trip(kafka, topic, b"encrypted key, aio")) == b"encrypted key, aio"
    wrong = _settings(
        mtls_bootstrap, pki, kafka_ssl_key_file=pki.encrypted_key, kafka_ssl_key_password=SecretStr("nope")
    )
    with pytest.raises(ConfigError, match="MILLSTREAM_KAFKA_SSL_KEY_PASSWORD"):
        _credentials(wrong)


def test_a_client_without_a_certificate_is_refused_readably(mtls_bootstrap: str, pki: Pki) -> None:
    kafka = _settings(mtls_bootstrap, pki, kafka_ssl_cert_file=None, kafka_ssl_key_file=None)
    errors: list[str] = []
    conf: dict[str, Any] = {**kafka.librdkafka(), "error_cb": lambda e: errors.append(str(e))}
    admin = AdminClient(conf)
    with pytest.raises(KafkaException):
        admin.list_topics(timeout=3)
    admin.poll(1)  # serves error_cb
    assert any("certificate required" in e for e in errors), errors

    async def aiokafka_connect() -> None:
        producer = AIOKafkaProducer(
            bootstrap_servers=kafka.kafka_bootstrap,
            request_timeout_ms=5000,
            **credentials_to_aiokafka_auth(_credentials(kafka)),
        )
        try:
            await producer.start()
        finally:
            await producer.stop()

    # aiokafka only says "Connection at ... closed" (TLS 1.3: the refusal comes after its handshake)
    with pytest.raises(KafkaConnectionError, match="Unable to bootstrap"):
        asyncio.run(aiokafka_connect())


def test_the_stream_job_says_why_the_broker_refuses_it(mtls_bootstrap: str, pki: Pki, tmp_path: Path) -> None:
    # aiokafka (Faust) says only "Connection ... closed"; the job checks the handshake before it starts.
    from streams.cli import wait_for_broker

    wait_for_broker(_settings(mtls_bootstrap, pki), 5)  # accepted: no error
    env = {k: v for k, v in os.environ.items() if not k.startswith("MILLSTREAM_")}
    env |= {
        "PYTHONPATH": str(Path(__file__).resolve().parents[2]),
        "MILLSTREAM_KAFKA_BOOTSTRAP": mtls_bootstrap,
        "MILLSTREAM_KAFKA_SECURITY_PROTOCOL": "SSL",
        "MILLSTREAM_KAFKA_SSL_CA_FILE": str(pki.ca),
    }
    for ca, why in ((pki.ca, "CERTIFICATE_REQUIRED"), (pki.clients_ca, "CERTIFICATE_VERIFY_FAILED")):
        proc = subprocess.run(  # noqa: S603 - fixed command
            [sys.executable, "-m", "infra.cli", "run", "faust", "--metrics-port", "0"],
            cwd=tmp_path,
            env={**env, "MILLSTREAM_KAFKA_SSL_CA_FILE": str(ca)},
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert proc.returncode == 1
        line = proc.stderr.strip()
        assert line.startswith(
            f"millstream: error: the TLS connection to the broker at {mtls_bootstrap} failed: "
        )
        assert why in line and "MILLSTREAM_KAFKA_SSL_CERT_FILE" in line, line
        assert "\n" not in line, line


def test_certificate_settings_go_together(pki: Pki) -> None:
    only_cert = KafkaSettings(
        kafka_security_protocol="SSL", kafka_ssl_ca_file=pki.ca, kafka_ssl_cert_file=pki.user_crt
    )
    only_key = KafkaSettings(kafka_security_protocol="SASL_SSL", kafka_ssl_key_file=pki.user_key)
    plaintext = KafkaSettings(kafka_ssl_cert_file=pki.user_crt, kafka_ssl_key_file=pki.user_key)
    cases = [
        (only_cert, "MILLSTREAM_KAFKA_SSL_CERT_FILE needs MILLSTREAM_KAFKA_SSL_KEY_FILE"),
        (only_key, "MILLSTREAM_KAFKA_SSL_KEY_FILE needs MILLSTREAM_KAFKA_SSL_CERT_FILE"),
        (
            plaintext,
            "MILLSTREAM_KAFKA_SSL_CERT_FILE and MILLSTREAM_KAFKA_SSL_KEY_FILE need "
            "MILLSTREAM_KAFKA_SECURITY_PROTOCOL=SSL or SASL_SSL (not PLAINTEXT)",
        ),
    ]
    for kafka, expected in cases:
        assert kafka.credentials_problem() == expected
        for build in (kafka.librdkafka, lambda k=kafka: java_properties(k), lambda k=kafka: _credentials(k)):
            with pytest.raises(ConfigError) as info:
                build()
            assert str(info.value) == expected


def test_millstream_config_names_a_certificate_without_its_key(
    pki: Pki, monkeypatch: pytest.MonkeyPatch
) -> None:
    from infra.commands import effective_config

    for var in [k for k in os.environ if k.upper().startswith("MILLSTREAM_")]:
        monkeypatch.delenv(var)
    monkeypatch.setenv("MILLSTREAM_KAFKA_SECURITY_PROTOCOL", "SSL")
    monkeypatch.setenv("MILLSTREAM_KAFKA_SSL_CERT_FILE", str(pki.user_crt))
    monkeypatch.setenv("MILLSTREAM_SCHEMA_REGISTRY_KEY_FILE", str(pki.user_key))
    _, errors = effective_config()
    assert "  MILLSTREAM_KAFKA_SSL_CERT_FILE needs MILLSTREAM_KAFKA_SSL_KEY_FILE" in errors
    assert "  MILLSTREAM_SCHEMA_REGISTRY_KEY_FILE needs MILLSTREAM_SCHEMA_REGISTRY_CERT_FILE" in errors
    monkeypatch.setenv("MILLSTREAM_KAFKA_SSL_KEY_FILE", str(pki.user_key))
    monkeypatch.setenv("MILLSTREAM_KAFKA_SSL_KEY_PASSWORD", "not-shown")
    monkeypatch.delenv("MILLSTREAM_SCHEMA_REGISTRY_KEY_FILE")
    values, errors = effective_config()
    assert errors == []
    assert values["KafkaSettings"]["MILLSTREAM_KAFKA_SSL_KEY_PASSWORD"] != "not-shown"


def test_the_java_client_takes_only_pkcs8_keys(pki: Pki) -> None:
    kafka = _settings("127.0.0.1:1", pki, kafka_ssl_key_file=pki.rsa_traditional_key)
    assert kafka.librdkafka()["ssl.key.location"] == str(pki.rsa_traditional_key)  # librdkafka reads it
    with pytest.raises(ConfigError, match="openssl pkcs8 -topk8 -nocrypt"):
        java_properties(kafka)
    unlocked = _settings("127.0.0.1:1", pki, kafka_ssl_key_file=pki.encrypted_key)
    with pytest.raises(ConfigError, match="is encrypted: set MILLSTREAM_KAFKA_SSL_KEY_PASSWORD"):
        java_properties(unlocked)
    pbes2 = _settings(
        "127.0.0.1:1",
        pki,
        kafka_ssl_key_file=pki.encrypted_key,
        kafka_ssl_key_password=SecretStr(KEY_PASSWORD),
    )
    with pytest.raises(ConfigError, match="PBES2 .*openssl pkcs8 -topk8 -v1 PBE-SHA1-3DES"):
        java_properties(pbes2)  # kafka-clients on JDK 17: "PBES2 SecretKeyFactory not available"


# ----------------------------------------------------------------------------- Flink: Java kafka-clients
CHECK = """
import java.io.FileReader;
import java.util.Properties;
import java.util.concurrent.TimeUnit;
import org.apache.kafka.clients.admin.AdminClient;
public class Check {
  public static void main(String[] a) throws Exception {
    for (String file : a) {
      Properties props = new Properties();
      try (FileReader r = new FileReader(file)) { props.load(r); }
      try (AdminClient admin = AdminClient.create(props)) {
        System.out.println("topics " + admin.listTopics().names().get(30, TimeUnit.SECONDS));
      } catch (Exception e) {
        Throwable c = e;
        while (c.getCause() != null) c = c.getCause();
        System.out.println("refused " + e + " / " + c);
      }
    }
  }
}
"""


def _java_admin(clients: list[dict[str, str]], tmp_path: Path) -> list[str]:
    """One AdminClient per property set, in one JVM: each one's topics, or why it was refused."""

    def esc(s: str) -> str:
        return s.replace("\\", "\\\\").replace("\n", "\\n").replace("\r", "")

    files = []
    for i, props in enumerate(clients):
        files.append(tmp_path / f"client-{i}.properties")
        files[-1].write_text("".join(f"{esc(k)}={esc(v)}\n" for k, v in props.items()), encoding="utf-8")
    (tmp_path / "Check.java").write_text(CHECK, encoding="utf-8")
    flink_lib = Path(pyflink.__file__).parent / "lib"
    classpath = [*map(str, jar_paths()), str(flink_lib / "*")]  # Flink's own jars: logging for the client
    out = subprocess.run(  # noqa: S603 - fixed command
        ["java", "-cp", ":".join(classpath), str(tmp_path / "Check.java"), *map(str, files)],  # noqa: S607
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    ).stdout
    return [line for line in out.splitlines() if line.startswith(("topics ", "refused "))]


def test_the_flink_jobs_java_client_connects_with_the_client_certificate(
    mtls_bootstrap: str, pki: Pki, tmp_path: Path
) -> None:
    # The properties the Flink job's Kafka source table and sink get (java_properties), in the
    # kafka-clients jar the job ships.
    kafka = _settings(mtls_bootstrap, pki)
    topic = _topic(kafka)
    encrypted = _settings(
        mtls_bootstrap,
        pki,
        kafka_ssl_key_file=pki.legacy_encrypted_key,
        kafka_ssl_key_password=SecretStr(KEY_PASSWORD),
    )
    without = _settings(mtls_bootstrap, pki, kafka_ssl_cert_file=None, kafka_ssl_key_file=None)
    base = {
        "bootstrap.servers": mtls_bootstrap,
        "request.timeout.ms": "10000",
        "default.api.timeout.ms": "15000",
    }
    ok, ok_encrypted, refused = _java_admin(
        [{**base, **java_properties(k)} for k in (kafka, encrypted, without)], tmp_path
    )
    assert ok.startswith("topics ") and topic in ok, ok
    assert ok_encrypted.startswith("topics ") and topic in ok_encrypted, ok_encrypted
    assert refused.startswith("refused "), refused
    assert "SslAuthenticationException" in refused and "certificate_required" in refused, refused


READ_WITH_FLINK = """
import sys
from pyflink.common import Configuration
from pyflink.datastream import StreamExecutionEnvironment
from pyflink.table import StreamTableEnvironment
from infra.flink_jars import jar_paths
from schemas.config import KafkaSettings
from streams.flink.kafka import READINGS_TABLE, readings_table_ddl

topic, count, rest_port = sys.argv[1], int(sys.argv[2]), sys.argv[3]
conf = Configuration()
for k, v in {
    "pipeline.jars": ";".join(p.resolve().as_uri() for p in jar_paths()),
    "parallelism.default": "1",
    "rest.port": rest_port,
    "rest.address": "127.0.0.1",
    "rest.bind-address": "127.0.0.1",
}.items():
    conf.set_string(k, v)
t_env = StreamTableEnvironment.create(StreamExecutionEnvironment.get_execution_environment(conf))
t_env.execute_sql(readings_table_ddl(KafkaSettings(), topic, "mtls-flink", 1000, {0: count}))
with t_env.execute_sql(f"SELECT v FROM {READINGS_TABLE}").collect() as rows:
    print("read", sorted(bytes(r[0]).decode() for r in rows))
"""


@pytest.mark.slow
def test_the_flink_jobs_kafka_source_reads_with_the_client_certificate(
    mtls_bootstrap: str, pki: Pki, tmp_path: Path
) -> None:
    # The job's own source table (readings_table_ddl), settings from the environment as in a
    # deployment, in a local MiniCluster: the inline PEM key store survives the SQL DDL.
    kafka = _settings(mtls_bootstrap, pki)
    topic = _topic(kafka)
    p = Producer({**kafka.librdkafka()})
    for value in (b"r-1", b"r-2"):
        p.produce(topic, value)
    assert p.flush(15) == 0
    env = {k: v for k, v in os.environ.items() if not k.upper().startswith("MILLSTREAM_")}
    env |= {
        "MILLSTREAM_KAFKA_BOOTSTRAP": mtls_bootstrap,
        "MILLSTREAM_KAFKA_SECURITY_PROTOCOL": "SSL",
        "MILLSTREAM_KAFKA_SSL_CA_FILE": str(pki.ca),
        "MILLSTREAM_KAFKA_SSL_CERT_FILE": str(pki.user_crt),
        "MILLSTREAM_KAFKA_SSL_KEY_FILE": str(pki.user_key),
        "FLINK_LOG_DIR": str(tmp_path),
    }
    res = subprocess.run(  # noqa: S603 - fixed command
        [sys.executable, "-c", READ_WITH_FLINK, topic, "2", str(free_port())],
        cwd=Path(__file__).resolve().parents[2],
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert "read ['r-1', 'r-2']" in res.stdout, res.stdout[-2000:] + res.stderr[-4000:]


# ----------------------------------------------------------------------------------- schema registry
class _Registry(BaseHTTPRequestHandler):
    """Just enough of the Schema Registry API for registering a schema."""

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        body = json.dumps({"id": 1}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/vnd.schemaregistry.v1+json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture(scope="module")
def https_registry(pki: Pki) -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Registry)
    context = _server_context(pki)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"https://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_schema_registry_client_certificate(https_registry: str, pki: Pki) -> None:
    settings = SerdeSettings(
        schema_registry_url=https_registry,
        schema_registry_ca_file=pki.ca,
        schema_registry_cert_file=pki.user_crt,
        schema_registry_key_file=pki.user_key,
    )
    data = Serde(settings).encode("Reading", "readings", RECORD)
    assert data[:5] == b"\x00\x00\x00\x00\x01"  # Confluent framing with the id the registry gave
    without = SerdeSettings(schema_registry_url=https_registry, schema_registry_ca_file=pki.ca)
    with pytest.raises(ConfigError, match="refused millstream.Reading .*certificate required"):
        Serde(without).encode("Reading", "readings", RECORD)
    half = SerdeSettings(schema_registry_url=https_registry, schema_registry_cert_file=pki.user_crt)
    assert (
        half.credentials_problem()
        == "MILLSTREAM_SCHEMA_REGISTRY_CERT_FILE needs MILLSTREAM_SCHEMA_REGISTRY_KEY_FILE"
    )
    with pytest.raises(ConfigError, match="CERT_FILE needs MILLSTREAM_SCHEMA_REGISTRY_KEY_FILE"):
        Serde(half)
