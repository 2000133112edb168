"""Exceptions of the local stack and the CLI."""

from __future__ import annotations

from schemas.exceptions import MillstreamError


class StackError(MillstreamError):
    """A local service could not be installed, started or reached."""
