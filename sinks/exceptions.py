"""Exceptions of the sinks."""

from __future__ import annotations

from schemas.exceptions import MillstreamError


class SinkError(MillstreamError):
    """A sink could not write, after its retries."""
