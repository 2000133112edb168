"""Settings shared by every component: the schema registry, the Kafka connection and the topics.

Each field is read from the environment variable named in its description (``MILLSTREAM_...``).
"""

from __future__ import annotations

import re
import ssl
from pathlib import Path
from typing import Annotated

from pydantic import BeforeValidator, Field, FilePath, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from schemas.exceptions import ConfigError

_TOPIC_NAME = re.compile(r"[A-Za-z0-9._-]{1,249}")


def _non_empty_path(v: object) -> object:
    if isinstance(v, str) and not v.strip():
        msg = "empty: unset the variable for the default, or name a folder or file"
        raise ValueError(msg)
    return v


# A path setting: an empty value is refused (it would mean the working directory).
NonEmptyPath = Annotated[Path, BeforeValidator(_non_empty_path)]

_MODEL = SettingsConfigDict(env_prefix="MILLSTREAM_", frozen=True, extra="ignore", allow_inf_nan=False)


class SerdeSettings(BaseSettings):
    """How values are framed on the wire."""

    model_config = _MODEL

    schema_registry_url: str | None = Field(
        None,
        description="MILLSTREAM_SCHEMA_REGISTRY_URL: Confluent-compatible Schema Registry; when set, "
        "values are written in Confluent wire format. Unset: Avro single-object encoding.",
    )
    schema_registry_user: str | None = Field(
        None, description="MILLSTREAM_SCHEMA_REGISTRY_USER: basic-auth user."
    )
    schema_registry_password: SecretStr | None = Field(
        None, description="MILLSTREAM_SCHEMA_REGISTRY_PASSWORD: basic-auth password (secret)."
    )
    schema_registry_ca_file: FilePath | None = Field(
        None,
        description="MILLSTREAM_SCHEMA_REGISTRY_CA_FILE: PEM file of the CA that signed an https registry's "
        "certificate. Unset: the system's trusted CAs.",
    )
    schema_registry_cert_file: FilePath | None = Field(
        None,
        description="MILLSTREAM_SCHEMA_REGISTRY_CERT_FILE: PEM client certificate for a registry that asks "
        "for one (mutual TLS); set together with MILLSTREAM_SCHEMA_REGISTRY_KEY_FILE.",
    )
    schema_registry_key_file: FilePath | None = Field(
        None,
        description="MILLSTREAM_SCHEMA_REGISTRY_KEY_FILE: PEM private key of "
        "MILLSTREAM_SCHEMA_REGISTRY_CERT_FILE (unencrypted).",
    )

    def credentials_problem(self) -> str | None:
        """Why the registry client cannot present its client certificate (a certificate without its
        key or a key without its certificate), or None."""
        return _pair_problem(
            ("MILLSTREAM_SCHEMA_REGISTRY_CERT_FILE", self.schema_registry_cert_file),
            ("MILLSTREAM_SCHEMA_REGISTRY_KEY_FILE", self.schema_registry_key_file),
        )

    def registry_conf(self) -> dict[str, str]:
        """The TLS settings of confluent-kafka's SchemaRegistryClient (:class:`ConfigError` on a
        certificate without its key, or the other way round)."""
        problem = self.credentials_problem()
        if problem is not None:
            raise ConfigError(problem)
        conf = {}
        if self.schema_registry_ca_file is not None:
            conf["ssl.ca.location"] = str(self.schema_registry_ca_file)
        if self.schema_registry_cert_file is not None and self.schema_registry_key_file is not None:
            conf["ssl.certificate.location"] = str(self.schema_registry_cert_file)
            conf["ssl.key.location"] = str(self.schema_registry_key_file)
        return conf


def _pair_problem(first: tuple[str, object], second: tuple[str, object]) -> str | None:
    """'A needs B' when exactly one of two settings that go together is set."""
    (name_a, a), (name_b, b) = first, second
    if (a is None) == (b is None):
        return None
    return f"{name_a} needs {name_b}" if b is None else f"{name_b} needs {name_a}"


class KafkaSettings(BaseSettings):
    """Connection to the Kafka cluster (any Kafka-protocol broker)."""

    model_config = _MODEL

    kafka_bootstrap: str = Field(
        "127.0.0.1:9092", description="MILLSTREAM_KAFKA_BOOTSTRAP: comma-separated host:port list."
    )
    kafka_security_protocol: str = Field(
        "PLAINTEXT",
        description="MILLSTREAM_KAFKA_SECURITY_PROTOCOL: PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL.",
    )
    kafka_sasl_mechanism: str = Field(
        "SCRAM-SHA-512",
        description="MILLSTREAM_KAFKA_SASL_MECHANISM: PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512; used with "
        "SASL_* protocols.",
    )
    kafka_username: str | None = Field(None, description="MILLSTREAM_KAFKA_USERNAME: SASL user.")
    kafka_password: SecretStr | None = Field(
        None, description="MILLSTREAM_KAFKA_PASSWORD: SASL password (secret)."
    )
    kafka_ssl_ca_file: FilePath | None = Field(
        None,
        description="MILLSTREAM_KAFKA_SSL_CA_FILE: PEM file of the CA that signed the brokers' certificates "
        "(Strimzi: ca.crt of the <cluster>-cluster-ca-cert Secret), for SSL and SASL_SSL. Unset: the "
        "system's trusted CAs.",
    )
    kafka_ssl_cert_file: FilePath | None = Field(
        None,
        description="MILLSTREAM_KAFKA_SSL_CERT_FILE: PEM client certificate for brokers that authenticate "
        "clients by certificate (mutual TLS; Strimzi KafkaUser `authentication: type: tls`: user.crt of "
        "the user's Secret), for SSL and SASL_SSL; set together with MILLSTREAM_KAFKA_SSL_KEY_FILE.",
    )
    kafka_ssl_key_file: FilePath | None = Field(
        None,
        description="MILLSTREAM_KAFKA_SSL_KEY_FILE: PEM private key of MILLSTREAM_KAFKA_SSL_CERT_FILE "
        "(Strimzi: user.key). PKCS#8 (`BEGIN PRIVATE KEY`, as Strimzi writes it) for the Flink job: its "
        "Java client reads no other form, and an encrypted key only with the PBE-SHA1-3DES cipher.",
    )
    kafka_ssl_key_password: SecretStr | None = Field(
        None,
        description="MILLSTREAM_KAFKA_SSL_KEY_PASSWORD: password of an encrypted "
        "MILLSTREAM_KAFKA_SSL_KEY_FILE (secret). Unset for an unencrypted key (Strimzi's user.key is one).",
    )
    kafka_session_timeout_ms: int = Field(
        6000,
        ge=1000,
        description="MILLSTREAM_KAFKA_SESSION_TIMEOUT_MS: consumer-group session timeout. Low values let a "
        "restarted worker rejoin in seconds; raise it on a busy production cluster.",
    )

    @field_validator("kafka_bootstrap")
    @classmethod
    def _bootstrap(cls, v: str) -> str:
        servers = [part.strip() for part in v.split(",")]
        if not all(servers) or not all(s.rpartition(":")[2].isdigit() for s in servers):
            msg = "a comma-separated list of host:port, e.g. kafka-0:9092,kafka-1:9092"
            raise ValueError(msg)
        return v

    @field_validator("kafka_security_protocol")
    @classmethod
    def _protocol(cls, v: str) -> str:
        allowed = {"PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"}
        if v.upper() not in allowed:
            msg = f"must be one of {sorted(allowed)}"
            raise ValueError(msg)
        return v.upper()

    @field_validator("kafka_sasl_mechanism")
    @classmethod
    def _mechanism(cls, v: str) -> str:
        allowed = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")  # what every engine's client is set up for
        if v.upper() not in allowed:
            msg = f"must be one of {', '.join(allowed)}"
            raise ValueError(msg)
        return v.upper()

    def librdkafka(self) -> dict[str, str | int]:
        """Connection settings in confluent-kafka (librdkafka) form (:class:`ConfigError` when a SASL
        protocol has no user or password: librdkafka's own error does not name the settings)."""
        self.require_credentials()
        conf: dict[str, str | int] = {
            "bootstrap.servers": self.kafka_bootstrap,
            "security.protocol": self.kafka_security_protocol,
        }
        if self.kafka_security_protocol.startswith("SASL"):
            conf["sasl.mechanism"] = self.kafka_sasl_mechanism
            conf["sasl.username"] = self.kafka_username or ""
            conf["sasl.password"] = self.kafka_password.get_secret_value() if self.kafka_password else ""
        if self.tls and self.kafka_ssl_ca_file is not None:
            conf["ssl.ca.location"] = str(self.kafka_ssl_ca_file)
        if self.kafka_ssl_cert_file is not None and self.kafka_ssl_key_file is not None:
            conf["ssl.certificate.location"] = str(self.kafka_ssl_cert_file)
            conf["ssl.key.location"] = str(self.kafka_ssl_key_file)
            if self.kafka_ssl_key_password is not None:
                conf["ssl.key.password"] = self.kafka_ssl_key_password.get_secret_value()
        return conf

    def credentials_problem(self) -> str | None:
        """Why the Kafka clients cannot log in with these settings (a SASL protocol without a user or
        a password; a client certificate without its key, or without TLS), or None. Not a validation
        error: on Kubernetes the credentials come from a Secret, which a check of the ConfigMap alone
        does not see."""
        certificate = self.kafka_ssl_cert_file is not None or self.kafka_ssl_key_file is not None
        if certificate and not self.tls:
            return (
                "MILLSTREAM_KAFKA_SSL_CERT_FILE and MILLSTREAM_KAFKA_SSL_KEY_FILE need "
                f"MILLSTREAM_KAFKA_SECURITY_PROTOCOL=SSL or SASL_SSL (not {self.kafka_security_protocol})"
            )
        pair = _pair_problem(
            ("MILLSTREAM_KAFKA_SSL_CERT_FILE", self.kafka_ssl_cert_file),
            ("MILLSTREAM_KAFKA_SSL_KEY_FILE", self.kafka_ssl_key_file),
        )
        if pair is not None:
            return pair
        if self.kafka_ssl_key_password is not None and self.kafka_ssl_key_file is None:
            return "MILLSTREAM_KAFKA_SSL_KEY_PASSWORD needs MILLSTREAM_KAFKA_SSL_KEY_FILE"
        if not self.kafka_security_protocol.startswith("SASL"):
            return None
        missing = [
            name
            for name, value in (
                ("MILLSTREAM_KAFKA_USERNAME", self.kafka_username),
                ("MILLSTREAM_KAFKA_PASSWORD", self.kafka_password),
            )
            if not value
        ]
        if not missing:
            return None
        return (
            f"MILLSTREAM_KAFKA_SECURITY_PROTOCOL={self.kafka_security_protocol} needs {' and '.join(missing)}"
        )

    def require_credentials(self) -> None:
        """Raise :class:`ConfigError` when :meth:`credentials_problem` finds one."""
        problem = self.credentials_problem()
        if problem is not None:
            raise ConfigError(problem)

    @property
    def tls(self) -> bool:
        """Whether the connection is encrypted (SSL or SASL_SSL)."""
        return self.kafka_security_protocol in ("SSL", "SASL_SSL")

    def ssl_context(self) -> ssl.SSLContext | None:
        """The TLS context of Python (asyncio) clients, with the client certificate when one is set:
        None without TLS. :class:`ConfigError` when the certificate and key do not load."""
        if not self.tls:
            return None
        self.require_credentials()
        cafile = str(self.kafka_ssl_ca_file) if self.kafka_ssl_ca_file is not None else None
        context = ssl.create_default_context(cafile=cafile)
        if self.kafka_ssl_cert_file is not None and self.kafka_ssl_key_file is not None:
            password = self.kafka_ssl_key_password.get_secret_value() if self.kafka_ssl_key_password else None
            try:
                context.load_cert_chain(self.kafka_ssl_cert_file, self.kafka_ssl_key_file, password)
            except ssl.SSLError as exc:
                msg = (
                    f"MILLSTREAM_KAFKA_SSL_CERT_FILE={self.kafka_ssl_cert_file} and "
                    f"MILLSTREAM_KAFKA_SSL_KEY_FILE={self.kafka_ssl_key_file} do not load as a certificate "
                    f"and its private key (a wrong or missing MILLSTREAM_KAFKA_SSL_KEY_PASSWORD?): {exc}"
                )
                raise ConfigError(msg) from exc
        return context


class TopicSettings(BaseSettings):
    """Topic names and layout. k8s KafkaTopic resources must match these (a test compares them)."""

    model_config = _MODEL

    topic_readings: str = Field(
        "millstream.readings.v1", description="MILLSTREAM_TOPIC_READINGS: gateway output."
    )
    topic_windows: str = Field(
        "millstream.windows.v1", description="MILLSTREAM_TOPIC_WINDOWS: window aggregates."
    )
    topic_dead_letters: str = Field(
        "millstream.dead-letters.v1",
        description="MILLSTREAM_TOPIC_DEAD_LETTERS: records no stage could process.",
    )
    topic_late: str = Field(
        "millstream.late.v1", description="MILLSTREAM_TOPIC_LATE: readings later than the allowed lateness."
    )
    topic_spc_signals: str = Field(
        "millstream.spc-signals.v1", description="MILLSTREAM_TOPIC_SPC_SIGNALS: SPC rule violations."
    )
    topic_anomalies: str = Field(
        "millstream.anomalies.v1", description="MILLSTREAM_TOPIC_ANOMALIES: anomaly events (open and close)."
    )
    topic_partitions: int = Field(
        6, ge=1, description="MILLSTREAM_TOPIC_PARTITIONS: partitions of every topic (parallelism ceiling)."
    )
    topic_replication: int = Field(1, ge=1, description="MILLSTREAM_TOPIC_REPLICATION: replication factor.")
    topic_retention_ms: int = Field(
        7 * 24 * 3600 * 1000,
        ge=-1,
        description="MILLSTREAM_TOPIC_RETENTION_MS: retention of data topics (-1: kept for ever).",
    )

    @field_validator(
        "topic_readings", "topic_windows", "topic_dead_letters", "topic_late", "topic_spc_signals",
        "topic_anomalies",
    )  # fmt: skip
    @classmethod
    def _kafka_topic_name(cls, v: str) -> str:
        if not _TOPIC_NAME.fullmatch(v) or v in (".", ".."):
            msg = "not a Kafka topic name: 1 to 249 letters, digits, '.', '_' or '-'"
            raise ValueError(msg)
        return v

    def all_topics(self) -> list[str]:
        """Every topic the pipeline reads or writes."""
        return [
            self.topic_readings,
            self.topic_windows,
            self.topic_dead_letters,
            self.topic_late,
            self.topic_spc_signals,
            self.topic_anomalies,
        ]
