"""Exceptions of the device gateways and the Kafka producer."""

from __future__ import annotations

from schemas.exceptions import MillstreamError


class GatewayError(MillstreamError):
    """A gateway cannot run: bad settings, an unreachable device or broker."""


class ProduceError(GatewayError):
    """The producer refused a record (too large, unknown topic, closed producer)."""


class LabelWriteError(GatewayError):
    """The simulator could not write its ground-truth fault labels or its plant's metadata."""
