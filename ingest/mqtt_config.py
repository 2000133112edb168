"""The MQTT gateway's configuration file: topic mappings, payload format, connection settings, and
the load-time checks of topic patterns and fixed units (see :mod:`ingest.mqtt` for the example)."""

from __future__ import annotations

import ssl
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, model_validator

from ingest.validation import ValidationConfig

FIELDS = ("plant", "line", "machine", "sensor")


class PayloadFormat(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    format: Literal["json"] = "json"
    value_field: str = "value"
    time_field: str | None = "ts"
    time_format: Literal["epoch_ms", "epoch_s", "iso8601"] = "epoch_ms"
    missing_time: Literal["gateway", "reject"] = "gateway"
    unit_field: str | None = "unit"
    quality_field: str | None = "quality"
    lot_field: str | None = "lot_id"


class TopicMapping(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    pattern: str
    plant: str | None = None
    line: str | None = None
    machine: str | None = None
    sensor: str | None = None
    unit: str | None = None
    units: dict[str, str] = Field(default_factory=dict)
    payload: PayloadFormat | None = None

    @model_validator(mode="after")
    def _pattern(self) -> TopicMapping:
        parse_pattern(self)  # raises ValueError naming the pattern and what is wrong with it
        return self


def parse_pattern(mapping: TopicMapping) -> list[tuple[str, str]]:
    """The levels of a topic pattern: ("lit", text) | ("var", field) | ("any", "")."""
    pattern = mapping.pattern
    levels: list[tuple[str, str]] = []
    for level in pattern.split("/"):
        if level.startswith("{") and level.endswith("}"):
            name = level[1:-1]
            if name not in FIELDS:
                use = ", ".join(f"{{{f}}}" for f in FIELDS)
                msg = f"pattern {pattern!r}: unknown placeholder {{{name}}} (use {use})"
                raise ValueError(msg)
            if ("var", name) in levels:
                msg = f"pattern {pattern!r}: placeholder {{{name}}} appears twice"
                raise ValueError(msg)
            levels.append(("var", name))
        elif level == "+":
            levels.append(("any", ""))
        elif level == "#":
            msg = (
                f"pattern {pattern!r}: '#' (multi-level wildcard) is not supported; give every level: "
                "a literal, one placeholder or '+' (a level that is ignored)"
            )
            raise ValueError(msg)
        elif "+" in level or "#" in level or "{" in level:
            msg = (
                f"pattern {pattern!r}: level {level!r} mixes text with a placeholder or wildcard; "
                "a placeholder or '+' must be a whole level"
            )
            raise ValueError(msg)
        else:
            levels.append(("lit", level))
    captured = {v for k, v in levels if k == "var"}
    for name in FIELDS:
        if name not in captured and getattr(mapping, name) is None:
            msg = f"pattern {pattern!r} captures no {{{name}}} and the mapping sets no {name}"
            raise ValueError(msg)
    return levels


class MqttTls(BaseModel):
    """MQTT over TLS (``tls:`` in the file; its presence turns TLS on). ``ca_file``: the CA (PEM)
    that issued the broker's certificate, else the system's CAs; ``cert_file``/``key_file``: the
    gateway's client certificate and key (PEM) for brokers that require one (mutual TLS)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    ca_file: Path | None = None
    cert_file: Path | None = None
    key_file: Path | None = None
    key_password: SecretStr | None = None
    insecure_skip_hostname_check: bool = False  # accept a broker certificate for another host name

    @model_validator(mode="after")
    def _check(self) -> MqttTls:
        if (self.cert_file is None) != (self.key_file is None):
            given, missing = ("cert_file", "key_file") if self.key_file is None else ("key_file", "cert_file")
            msg = f"{given} without {missing} (a client certificate needs its private key, both PEM)"
            raise ValueError(msg)
        if self.key_password is not None and self.key_file is None:
            msg = "key_password without key_file"
            raise ValueError(msg)
        self.context()  # the files are readable and the key is the certificate's
        return self

    def context(self) -> ssl.SSLContext:
        """The client's TLS context: the broker's certificate verified (and its host name unless
        ``insecure_skip_hostname_check``), the client certificate loaded. ValueError naming the
        file when one cannot be used."""
        try:
            ctx = ssl.create_default_context(cafile=str(self.ca_file) if self.ca_file else None)
        except (OSError, ssl.SSLError) as exc:
            msg = f"ca_file {self.ca_file}: {_reason(exc)} (a PEM file of CA certificates)"
            raise ValueError(msg) from None
        if self.insecure_skip_hostname_check:
            ctx.check_hostname = False
        if self.cert_file is not None and self.key_file is not None:
            password = self.key_password.get_secret_value() if self.key_password else ""
            try:  # a callable: OpenSSL would otherwise ask for the password on the terminal
                ctx.load_cert_chain(self.cert_file, self.key_file, password=lambda: password)
            except (OSError, ssl.SSLError) as exc:
                reason = _reason(exc)
                pair = f"cert_file {self.cert_file} / key_file {self.key_file}"
                if "KEY_VALUES_MISMATCH" in reason:
                    msg = f"key_file {self.key_file} is not the private key of cert_file {self.cert_file}"
                elif isinstance(exc, ssl.SSLError):
                    hint = "wrong key_password?" if self.key_password else "encrypted? set key_password"
                    msg = (
                        f"cert_file {self.cert_file} / key_file {self.key_file}: {reason} (PEM files; {hint})"
                    )
                else:
                    msg = f"{pair}: {reason}"
                raise ValueError(msg) from None
        return ctx


def _reason(exc: Exception) -> str:
    if isinstance(exc, OSError) and not isinstance(exc, ssl.SSLError) and exc.strerror:
        return f"{exc.strerror}" + (f": {exc.filename}" if exc.filename else "")
    return str(exc)


class MqttConfig(BaseModel):
    """The configuration file of an MQTT gateway (without the spool/producer sections)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    gateway_id: str = "mqtt-1"
    host: str = "127.0.0.1"
    port: int = Field(1883, ge=1, le=65535)
    client_id: str | None = None
    protocol: Literal["3.1.1", "5"] = "3.1.1"
    qos: Literal[0, 1] = 1
    keepalive_s: int = Field(30, ge=5)
    session_expiry_s: int = Field(7 * 24 * 3600, ge=0)
    reconnect_min_s: int = Field(1, ge=1)
    reconnect_max_s: int = Field(30, ge=1)
    username: str | None = None
    password: SecretStr | None = None
    tls: MqttTls | None = None
    topics: list[TopicMapping] = Field(min_length=1)
    payload: PayloadFormat = Field(default_factory=PayloadFormat)
    validation: ValidationConfig = Field(default_factory=ValidationConfig)

    @model_validator(mode="after")
    def _static_units(self) -> MqttConfig:
        """Units fixed in the mapping (used when a payload carries none) must pass validation."""
        problems = []
        for i, m in enumerate(self.topics):
            fixed = [(m.sensor, m.unit, "unit")] if m.unit is not None else []
            fixed += [(sensor, unit, f"units.{sensor}") for sensor, unit in m.units.items()]
            for sensor, unit, key in fixed:
                problem = self.validation.static_unit_problem(unit, sensor)
                if problem is not None:
                    problems.append(f"topics[{i}].{key}: {problem}")
        if problems:
            raise ValueError("\n".join(problems))
        return self


class TopicPattern:
    """``plant/{plant}/line/{line}/machine/{machine}/{sensor}`` -> subscription filter and matcher."""

    def __init__(self, mapping: TopicMapping) -> None:
        self.mapping = mapping
        self.levels = parse_pattern(mapping)
        self.filter = "/".join(text if kind == "lit" else "+" for kind, text in self.levels)

    def match(self, topic: str) -> dict[str, str] | None:
        parts = topic.split("/")
        if len(parts) != len(self.levels):
            return None
        out = {name: getattr(self.mapping, name) for name in FIELDS}
        for (kind, text), part in zip(self.levels, parts, strict=True):
            if kind == "lit" and part != text:
                return None
            if kind == "var":
                out[text] = part
        return out
