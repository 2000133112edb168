"""Avro serde for Kafka values.

Two wire formats, both decodable by every consumer:

* Avro single-object encoding (the default, no registry needed): ``C3 01`` + the writer schema's
  CRC-64-AVRO fingerprint (8 bytes, little-endian) + the Avro body. Writer schemas are resolved from
  the ``*.avsc`` files shipped in this package, so every version ever released stays readable.
* Confluent wire format (when ``MILLSTREAM_SCHEMA_REGISTRY_URL`` is set): ``00`` + the registry's
  schema id (4 bytes, big-endian) + the Avro body. Schemas are registered under the topic's
  ``<topic>-value`` subject (TopicNameStrategy) through confluent-kafka's Schema Registry client.

Records are plain dicts; timestamps are integer epoch milliseconds (UTC).
"""

from __future__ import annotations

import io
import json
import logging
import ssl
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from fastavro import parse_schema, schemaless_reader, schemaless_writer
from fastavro.read import SchemaResolutionError

from schemas.config import SerdeSettings
from schemas.exceptions import (
    DECODE_ERROR,
    UNKNOWN_SCHEMA,
    ConfigError,
    DecodeError,
    EncodeError,
    RegistryUnavailableError,
)
from schemas.registry import SchemaSet, SchemaVersion, default_schemas, strip_logical_types

logger = logging.getLogger(__name__)

SINGLE_OBJECT_MAGIC = b"\xc3\x01"
CONFLUENT_MAGIC = 0

Record = dict[str, Any]


@dataclass(frozen=True)
class Decoded:
    """A decoded value: the record's full schema name and the record (read with the newest schema)."""

    name: str
    record: Record


class Serde:
    """Encode and decode Millstream records. One instance per process; thread-compatible."""

    def __init__(self, settings: SerdeSettings | None = None, schemas: SchemaSet | None = None) -> None:
        self.settings = settings or SerdeSettings()
        self.schemas = schemas or default_schemas()
        self._readers: dict[int, tuple[str, Any, Any]] = {}
        for sv in self.schemas.versions:
            latest = self.schemas.latest(sv.name)
            self._readers[sv.fingerprint] = (sv.name, sv.parsed, latest.parsed)
        self._registry: Any = None
        self._registry_ids: dict[tuple[str, str], int] = {}
        self._registry_readers: dict[int, tuple[str, Any, Any]] = {}
        self._time_offsets: dict[int, int | None] = {}  # id(writer schema) -> strings before event_time
        if self.settings.schema_registry_url:
            self._registry = _registry_client(self.settings)

    # ------------------------------------------------------------------ encoding
    def encoder(self, name: str, topic: str) -> Callable[[Record], bytes]:
        """A function that encodes records of schema ``name`` for ``topic``.

        With a registry configured the schema is registered (or looked up) once, here.
        """
        sv = self.schemas.latest(name)
        if self._registry is not None:
            header = bytes([CONFLUENT_MAGIC]) + self._register(sv, topic).to_bytes(4, "big")
        else:
            header = SINGLE_OBJECT_MAGIC + sv.fingerprint_bytes
        parsed = sv.parsed

        def encode(record: Record) -> bytes:
            buf = io.BytesIO()
            buf.write(header)
            try:
                schemaless_writer(buf, parsed, record)
            except (ValueError, TypeError, KeyError, AttributeError) as exc:
                msg = f"record does not match {sv.name} v{sv.version}: {exc}"
                raise EncodeError(msg) from exc
            return buf.getvalue()

        return encode

    def encode(self, name: str, topic: str, record: Record) -> bytes:
        """Encode one record (convenience; hot paths keep the function from :meth:`encoder`)."""
        return self.encoder(name, topic)(record)

    # ------------------------------------------------------------------ decoding
    def decode(self, data: bytes | None) -> Decoded:
        """Decode bytes in either wire format. Raises :class:`DecodeError` with a stable code, or
        :class:`RegistryUnavailableError` when the registry cannot be asked for the writer schema."""
        if not data:
            raise DecodeError(DECODE_ERROR, "empty message value")
        if data[:2] == SINGLE_OBJECT_MAGIC:
            if len(data) < 10:
                raise DecodeError(DECODE_ERROR, "truncated single-object header")
            fp = int.from_bytes(data[2:10], "little")
            entry = self._readers.get(fp)
            if entry is None:
                raise DecodeError(
                    UNKNOWN_SCHEMA,
                    f"unknown writer schema fingerprint {fp:016x}: not one of the shipped schemas",
                )
            body = 10
        elif data[0] == CONFLUENT_MAGIC:
            if len(data) < 5:
                raise DecodeError(DECODE_ERROR, "truncated Confluent wire-format header")
            entry = self._registry_entry(int.from_bytes(data[1:5], "big"))
            body = 5
        else:
            raise DecodeError(
                DECODE_ERROR,
                f"not Avro: first byte 0x{data[0]:02x} is neither single-object (C3 01) "
                "nor Confluent (00) framing",
            )
        name, writer, reader = entry
        buf = io.BytesIO(data[body:])
        try:
            record = schemaless_reader(buf, writer, reader)
        except SchemaResolutionError as exc:  # the bytes are fine: this reader cannot read that writer
            msg = (
                f"the writer's schema of {name} cannot be read with this version's ({exc}); upgrade the "
                "readers (stream job, sink) before the writers"
            )
            raise DecodeError(UNKNOWN_SCHEMA, msg) from exc
        except Exception as exc:  # fastavro raises many types on corrupt bodies
            msg = f"corrupt Avro body for {name}: {type(exc).__name__}: {exc}"
            raise DecodeError(DECODE_ERROR, msg) from exc
        trailing = len(data) - body - buf.tell()
        if trailing:
            # The writer schema accounts for every byte of a well-formed body; leftovers mean the
            # body is corrupt or was not written with the schema the header names.
            msg = f"corrupt Avro body for {name}: {trailing} trailing bytes"
            raise DecodeError(DECODE_ERROR, msg)
        if not isinstance(record, dict):
            raise DecodeError(DECODE_ERROR, f"{name} body did not decode to a record")
        return Decoded(name, record)

    def event_time(self, data: bytes | None) -> int | None:
        """The record's ``event_time`` (epoch ms) read from the encoded bytes without decoding the rest.

        A producer sets it as the Kafka record timestamp, so a reading forwarded late (from a gateway's
        spool) keeps its event time. Read in place when the fields before ``event_time`` are all strings
        (``Reading``, ``MachineScan``, ``AnomalyEvent``), else by decoding the record (a later version
        may add a field before it). None for a record without one or for bytes this cannot read (they
        are not dropped here; the stream job dead-letters them)."""
        if not data:
            return None
        try:
            if data[:2] == SINGLE_OBJECT_MAGIC and len(data) >= 10:
                entry = self._readers.get(int.from_bytes(data[2:10], "little"))
                body = 10
            elif data[0] == CONFLUENT_MAGIC and len(data) >= 5:
                entry = self._registry_entry(int.from_bytes(data[1:5], "big"))
                body = 5
            else:
                return None
        except (DecodeError, RegistryUnavailableError):
            return None
        if entry is None:
            return None
        writer = entry[1]
        strings = self._time_offsets.get(id(writer), -1)
        if strings == -1:
            strings = self._time_offsets[id(writer)] = _strings_before_event_time(writer)
        if strings is None:
            try:
                value = self.decode(data).record.get("event_time")
            except (DecodeError, RegistryUnavailableError):
                return None
            return value if isinstance(value, int) else None
        try:
            pos = body
            for _ in range(strings):
                length, pos = _read_long(data, pos)
                pos += length
            return _read_long(data, pos)[0]
        except IndexError:
            return None

    # ------------------------------------------------------------------ registry
    def _register(self, sv: SchemaVersion, topic: str) -> int:
        key = (sv.name, topic)
        if key not in self._registry_ids:
            from confluent_kafka.schema_registry import Schema

            subject = f"{topic}-value"
            try:
                sid = self._registry.register_schema(subject, Schema(json.dumps(sv.raw), "AVRO"))
            except Exception as exc:
                msg = f"schema registry refused {sv.name} for subject {subject}: {exc}"
                raise ConfigError(msg) from exc
            self._registry_ids[key] = int(sid)
            self._registry_readers[int(sid)] = (sv.name, sv.parsed, self.schemas.latest(sv.name).parsed)
        return self._registry_ids[key]

    def _registry_entry(self, schema_id: int) -> tuple[str, Any, Any]:
        entry = self._registry_readers.get(schema_id)
        if entry is not None:
            return entry
        if self._registry is None:
            raise DecodeError(
                UNKNOWN_SCHEMA,
                f"Confluent-framed record (schema id {schema_id}) but no schema registry is "
                "configured (MILLSTREAM_SCHEMA_REGISTRY_URL)",
            )
        try:
            schema = self._registry.get_schema(schema_id)
            raw = json.loads(schema.schema_str)
        except Exception as exc:
            # Only the registry saying it has no such id makes the record undecodable; any other
            # failure (unreachable, timeout, 5xx) is temporary: the caller must stop and read the
            # record again later, not dead-letter it.
            if getattr(exc, "http_status_code", None) == 404:
                raise DecodeError(UNKNOWN_SCHEMA, f"schema id {schema_id}: {exc}") from exc
            msg = f"schema registry cannot be asked for schema id {schema_id}: {exc}"
            raise RegistryUnavailableError(msg) from exc
        name = raw.get("name", "")
        if raw.get("namespace") and "." not in name:
            name = f"{raw['namespace']}.{name}"
        writer = parse_schema(strip_logical_types(raw))
        try:
            reader = self.schemas.latest(name).parsed
        except Exception:
            reader = writer
        entry = (name, writer, reader)
        self._registry_readers[schema_id] = entry
        return entry


def _strings_before_event_time(schema: Any) -> int | None:
    """How many fields, all strings, precede a long ``event_time`` field (None: another shape)."""
    if not isinstance(schema, dict) or schema.get("type") != "record":
        return None
    for i, f in enumerate(schema.get("fields", [])):
        t = f["type"]
        if f["name"] == "event_time":
            return i if (t == "long" or (isinstance(t, dict) and t.get("type") == "long")) else None
        if t != "string":
            return None
    return None


def _read_long(data: bytes, pos: int) -> tuple[int, int]:
    """An Avro long (zig-zag varint) at ``pos``: (value, position after it)."""
    shift = result = 0
    while True:
        b = data[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if b < 0x80:
            return (result >> 1) ^ -(result & 1), pos
        shift += 7
        if shift > 63:
            msg = "varint too long"
            raise IndexError(msg)


def _registry_client(settings: SerdeSettings) -> Any:
    try:
        from confluent_kafka.schema_registry import SchemaRegistryClient
    except ImportError as exc:  # pragma: no cover - depends on the install
        msg = "a schema registry needs confluent-kafka[schemaregistry]: pip install 'millstream[registry]'"
        raise ConfigError(msg) from exc
    conf: dict[str, Any] = {"url": settings.schema_registry_url, **settings.registry_conf()}
    if settings.schema_registry_user:
        password = (
            settings.schema_registry_password.get_secret_value() if settings.schema_registry_password else ""
        )
        conf["basic.auth.user.info"] = f"{settings.schema_registry_user}:{password}"
    try:
        return SchemaRegistryClient(conf)
    except ssl.SSLError as exc:  # a client certificate and key that do not load
        msg = f"cannot set up the schema registry client for {settings.schema_registry_url}: {exc}"
        raise ConfigError(msg) from exc


def explode_scan(record: Record) -> list[Record]:
    """Turn a MachineScan into Readings (one per value); a Reading passes through as a list of one."""
    values = record.get("values")
    if values is None:
        return [record]
    base = {
        k: record[k] for k in ("plant", "line", "machine_id", "event_time", "gateway_id", "seq", "lot_id")
    }
    return [
        {**base, "sensor": v["sensor"], "unit": v["unit"], "value": v["value"], "quality": v["quality"]}
        for v in values
    ]
