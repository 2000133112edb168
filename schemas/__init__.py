"""Data contracts: versioned Avro schemas, the serde that frames them, topics and Kafka settings."""

from __future__ import annotations

from schemas.exceptions import DecodeError, MillstreamError
from schemas.serde import Decoded, Serde, explode_scan

__all__ = ["DecodeError", "Decoded", "MillstreamError", "Serde", "explode_scan"]
