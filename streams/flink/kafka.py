"""Kafka source and sink of the Flink job.

* Source: the Kafka *table* connector, turned into a DataStream. PyFlink's DataStream KafkaSource
  only offers value-only deserialisers, while the table source also yields each record's key,
  partition and offset (dead letters must name them: the dead_letters table is keyed by topic,
  partition and offset) and still generates watermarks per partition inside the source.
* PyFlink 2.0's ``KafkaTopicPartition`` and ``KafkaOffsetResetStrategy`` name the *shaded* Kafka
  classes of the SQL connector jar; the job ships the plain ``flink-connector-kafka`` jar with
  ``kafka-clients``, so offsets initializers are built here against the unshaded classes.
* The sink takes ``Row(topic, value bytes)`` elements and picks the topic from the first field with
  the Java helpers that PyFlink's own topic selector uses, minus the extra Python ``map`` PyFlink adds
  in front of the sink (one Python hop less per output record). Records have no key: PyFlink offers
  no way to serialise a key from one field and the value from another (see docs/scaling-out.md).
"""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

from pydantic import SecretStr

from schemas.config import KafkaSettings
from schemas.exceptions import ConfigError

JAAS = {
    "PLAIN": "org.apache.kafka.common.security.plain.PlainLoginModule",
    "SCRAM-SHA-256": "org.apache.kafka.common.security.scram.ScramLoginModule",
    "SCRAM-SHA-512": "org.apache.kafka.common.security.scram.ScramLoginModule",
}


def java_properties(kafka: KafkaSettings) -> dict[str, str]:
    """KafkaSettings as Java client properties (security, SASL, client certificate)."""
    kafka.require_credentials()
    props = {"security.protocol": kafka.kafka_security_protocol}
    if kafka.kafka_security_protocol.startswith("SASL"):
        module = JAAS.get(kafka.kafka_sasl_mechanism.upper(), JAAS["SCRAM-SHA-512"])
        user = _jaas_quote(kafka.kafka_username or "")
        password = _jaas_quote(kafka.kafka_password.get_secret_value() if kafka.kafka_password else "")
        props["sasl.mechanism"] = kafka.kafka_sasl_mechanism
        props["sasl.jaas.config"] = f'{module} required username="{user}" password="{password}";'
    if kafka.tls and kafka.kafka_ssl_ca_file is not None:
        props["ssl.truststore.type"] = "PEM"
        props["ssl.truststore.location"] = str(kafka.kafka_ssl_ca_file)
    if kafka.kafka_ssl_cert_file is not None and kafka.kafka_ssl_key_file is not None:
        props.update(
            _pem_keystore(kafka.kafka_ssl_cert_file, kafka.kafka_ssl_key_file, kafka.kafka_ssl_key_password)
        )
    return props


def _pem_keystore(cert_file: Path, key_file: Path, key_password: SecretStr | None) -> dict[str, str]:
    """The client certificate as an inline PEM key store. kafka-clients reads a PEM key store *file*
    only with ``ssl.key.password`` (an encrypted key) and only with key and chain in one file; the
    inline form takes Strimzi's separate, unencrypted ``user.crt`` and ``user.key`` as they are, and
    the files are read here, where the job is built, so the TaskManagers need no copy of them."""
    key = key_file.read_text(encoding="ascii", errors="replace")
    encrypted = "-----BEGIN ENCRYPTED PRIVATE KEY-----" in key
    if not encrypted and "-----BEGIN PRIVATE KEY-----" not in key:
        msg = (
            f"MILLSTREAM_KAFKA_SSL_KEY_FILE={key_file} is not a PKCS#8 PEM key (BEGIN PRIVATE KEY), the "
            "only form the Flink job's Java Kafka client reads; convert it with `openssl pkcs8 -topk8 "
            "-nocrypt -in KEY -out KEY.pk8` (or -v1 PBE-SHA1-3DES and MILLSTREAM_KAFKA_SSL_KEY_PASSWORD)"
        )
        raise ConfigError(msg)
    if encrypted and key_password is None:
        msg = f"MILLSTREAM_KAFKA_SSL_KEY_FILE={key_file} is encrypted: set MILLSTREAM_KAFKA_SSL_KEY_PASSWORD"
        raise ConfigError(msg)
    if encrypted and _PBES2_OID in _pem_body(key)[:32]:
        msg = (
            f"MILLSTREAM_KAFKA_SSL_KEY_FILE={key_file} is encrypted with PBES2 (openssl's default), which "
            "the Flink job's Java Kafka client cannot read on JDK 17 ('PBES2 SecretKeyFactory not "
            "available'): use the unencrypted key (Strimzi's user.key is one), or encrypt it with "
            "`openssl pkcs8 -topk8 -v1 PBE-SHA1-3DES -in KEY -out KEY.enc`"
        )
        raise ConfigError(msg)
    props = {
        "ssl.keystore.type": "PEM",
        "ssl.keystore.certificate.chain": cert_file.read_text(encoding="ascii"),
        "ssl.keystore.key": key,
    }
    if encrypted and key_password is not None:
        # kafka-clients reads an unencrypted key only without a key password
        props["ssl.key.password"] = key_password.get_secret_value()
    return props


# DER of the PBES2 object identifier (1.2.840.113549.1.5.13), the algorithm of an encrypted PKCS#8 key
_PBES2_OID = bytes.fromhex("06092a864886f70d01050d")


def _pem_body(pem: str) -> bytes:
    """The DER bytes of a one-block PEM text (empty when it does not decode)."""
    lines = pem.strip().splitlines()
    body = "".join(line.strip() for line in lines if line.strip() and not line.startswith("-----"))
    try:
        return base64.b64decode(body)
    except ValueError:
        return b""


def _jaas_quote(value: str) -> str:
    """``value`` for a double-quoted JAAS option: the Java parser takes a backslash as an escape."""
    return value.replace("\\", "\\\\").replace('"', '\\"')


def _jvm() -> Any:
    from pyflink.java_gateway import get_gateway

    return get_gateway().jvm


def _initializers() -> Any:
    return _jvm().org.apache.flink.connector.kafka.source.enumerator.initializer.OffsetsInitializer


def _earliest() -> Any:
    return _jvm().org.apache.kafka.clients.consumer.OffsetResetStrategy.EARLIEST


def committed_or_earliest() -> Any:
    """Start from the consumer group's committed offsets, or the earliest offset without them."""
    from pyflink.datastream.connectors.kafka import KafkaOffsetsInitializer

    return KafkaOffsetsInitializer(_initializers().committedOffsets(_earliest()))


def earliest() -> Any:
    from pyflink.datastream.connectors.kafka import KafkaOffsetsInitializer

    return KafkaOffsetsInitializer(_initializers().earliest())


def exact_offsets(topic: str, offsets: dict[int, int]) -> Any:
    """Offsets per partition (e.g. the stopping offsets of a bounded replay)."""
    from pyflink.datastream.connectors.kafka import KafkaOffsetsInitializer
    from pyflink.util.java_utils import get_java_class

    jvm = _jvm()
    wrapper = jvm.org.apache.flink.python.util.HashMapWrapper(None, get_java_class(jvm.Long))
    for partition, offset in offsets.items():
        wrapper.put(jvm.org.apache.kafka.common.TopicPartition(topic, int(partition)), int(offset))
    return KafkaOffsetsInitializer(_initializers().offsets(wrapper.asMap(), _earliest()))


READINGS_TABLE = "millstream_readings"


def _interval(ms: int) -> str:
    return f"INTERVAL '{ms / 1000:.3f}' SECOND"


def reading_headers() -> list[bytes]:
    """Single-object headers (C3 01 + fingerprint) of every shipped version of the reading schemas."""
    from schemas.registry import default_schemas
    from schemas.serde import SINGLE_OBJECT_MAGIC
    from streams.pipeline import READING_NAMES

    return sorted(
        SINGLE_OBJECT_MAGIC + sv.fingerprint_bytes
        for sv in default_schemas().versions
        if sv.name in READING_NAMES
    )


def _latin1(data: bytes) -> str:
    """``data`` as a SQL string expression, one character per byte (Flink SQL has no binary SUBSTRING)."""
    return f"DECODE(X'{data.hex()}', 'ISO-8859-1')"


def _reading_framed(headers: list[bytes]) -> str:
    """SQL condition: the value starts like a reading (Confluent framing: any schema id, the registry's
    ids are unknown here)."""
    from schemas.serde import CONFLUENT_MAGIC

    value = "DECODE(`v`, 'ISO-8859-1')"
    width = {len(h) for h in headers}
    assert len(width) <= 1, "reading headers of one length"
    confluent = _latin1(bytes([CONFLUENT_MAGIC]))
    tests = [f"SUBSTRING({value} FROM 1 FOR 1) = {confluent}"]
    if headers:
        tests.append(
            f"SUBSTRING({value} FROM 1 FOR {width.pop()}) IN ({', '.join(_latin1(h) for h in headers)})"
        )
    return " OR ".join(tests)


def readings_table_ddl(
    kafka: KafkaSettings,
    topic: str,
    group_id: str,
    out_of_orderness_ms: int,
    stop_offsets: dict[int, int] | None = None,
    headers: list[bytes] | None = None,
) -> str:
    """The readings topic as a table: key, raw value, partition, offset and the record timestamp.

    The watermark is declared on the record timestamp, so the planner pushes it into the KafkaSource:
    one watermark per partition (split), combined by taking the minimum. ``ts - (delay + 1 ms)``
    reproduces the DataStream bounded-out-of-orderness generator (``max - delay - 1``) that
    ``streams.flink.keyed`` expects. The timestamp counts at most up to the wall clock
    (``LEAST(ts, CURRENT_TIMESTAMP)``): the job validates a reading after the source, so a reading
    from a device clock a day ahead would otherwise move the watermark a day ahead, and every later
    reading would be late until the wall clock caught up.

    Only values framed as a reading (``headers``, default :func:`reading_headers`; or Confluent
    framing) count for the watermark; for the rest it is NULL, which Flink's generator skips. A null,
    empty or foreign value is stamped with its producer's clock: during a catch-up it would move the
    watermark to the wall clock, and the rest of the backlog would go to the late topic, where the
    Faust job (whose watermark only decoded readings move) aggregates it.
    """
    headers = reading_headers() if headers is None else headers
    options = {
        "connector": "kafka",
        "topic": topic,
        "properties.bootstrap.servers": kafka.kafka_bootstrap,
        "properties.group.id": group_id,
        "key.format": "raw",
        "key.fields": "k",
        "value.format": "raw",
        "value.fields-include": "EXCEPT_KEY",
        "scan.topic-partition-discovery.interval": "60 s",
    }
    if stop_offsets is None:
        options["scan.startup.mode"] = "group-offsets"
        options["properties.auto.offset.reset"] = "earliest"
    else:
        options["scan.startup.mode"] = "earliest-offset"
        options["scan.bounded.mode"] = "specific-offsets"
        options["scan.bounded.specific-offsets"] = ";".join(
            f"partition:{p},offset:{o}" for p, o in sorted(stop_offsets.items())
        )
    for k, v in java_properties(kafka).items():
        options[f"properties.{k}"] = v
    with_ = ",\n  ".join(f"'{k}' = '{str(v).replace(chr(39), chr(39) * 2)}'" for k, v in options.items())
    return f"""CREATE TEMPORARY TABLE {READINGS_TABLE} (
  `k` BYTES,
  `v` BYTES,
  `partition` INT METADATA VIRTUAL,
  `offset` BIGINT METADATA VIRTUAL,
  `ts` TIMESTAMP_LTZ(3) METADATA FROM 'timestamp',
  WATERMARK FOR `ts` AS CASE WHEN {_reading_framed(headers)}
    THEN LEAST(`ts`, CURRENT_TIMESTAMP) - {_interval(out_of_orderness_ms + 1)}
    ELSE CAST(NULL AS TIMESTAMP_LTZ(3)) END
) WITH (
  {with_}
)"""


def topic_sink(
    kafka: KafkaSettings,
    exactly_once: bool,
    transactional_id_prefix: str,
    transaction_timeout_ms: int,
) -> Any:
    """A KafkaSink for ``Row(topic, value)`` elements."""
    from pyflink.datastream.connectors.base import DeliveryGuarantee
    from pyflink.datastream.connectors.kafka import KafkaSink
    from pyflink.util.java_utils import get_java_class

    jvm = _jvm()
    utils = jvm.org.apache.flink.python.util.PythonConnectorUtils
    record = jvm.org.apache.flink.connector.kafka.sink.KafkaRecordSerializationSchemaBuilder()
    record.setTopicSelector(
        utils.createFirstColumnTopicSelector(
            get_java_class(jvm.org.apache.flink.connector.kafka.sink.TopicSelector)
        )
    )
    record.setValueSerializationSchema(
        utils.SecondColumnSerializationSchema(jvm.org.apache.flink.api.common.serialization.ByteArraySchema())
    )
    builder = KafkaSink.builder().set_bootstrap_servers(kafka.kafka_bootstrap)
    if exactly_once:
        builder.set_delivery_guarantee(DeliveryGuarantee.EXACTLY_ONCE)
        builder.set_transactional_id_prefix(transactional_id_prefix)
        builder.set_property("transaction.timeout.ms", str(transaction_timeout_ms))
    else:
        builder.set_delivery_guarantee(DeliveryGuarantee.AT_LEAST_ONCE)
    builder.set_property("acks", "all")
    for k, v in java_properties(kafka).items():
        builder.set_property(k, v)
    builder._j_builder.setRecordSerializer(record.build())  # noqa: SLF001 - see the module docstring
    return builder.build()
