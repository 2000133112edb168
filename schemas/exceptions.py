"""Exceptions of the schemas package, and the root of every Millstream error."""

from __future__ import annotations

# Stable reason codes of dead letters (bounded: they are Prometheus label values).
DECODE_ERROR = "decode_error"
UNKNOWN_SCHEMA = "unknown_schema"
INVALID_RECORD = "invalid_record"
TOO_LATE = "too_late"
SINK_REJECTED = "sink_rejected"


class MillstreamError(Exception):
    """Root of every error Millstream raises on purpose."""


class ConfigError(MillstreamError):
    """A setting is missing or has a value that cannot work."""


class SchemaError(MillstreamError):
    """A schema file is unreadable or not valid Avro."""


class IncompatibleSchemaError(SchemaError):
    """A new schema version cannot read data written with an older one."""


class DecodeError(MillstreamError):
    """Bytes could not be turned into a record. ``code`` is a stable, bounded reason."""

    def __init__(self, code: str, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


class RegistryUnavailableError(MillstreamError):
    """The schema registry could not be asked for a writer schema (unreachable, timeout, 5xx).

    Not a :class:`DecodeError`: the record is fine and must be read again once the registry answers,
    not dead-lettered."""


class EncodeError(MillstreamError):
    """A record does not match the schema it is written with."""
