"""Exceptions of the stream jobs."""

from __future__ import annotations

from schemas.exceptions import MillstreamError


class StreamError(MillstreamError):
    """A stream job cannot start or continue."""


class InvalidRecord(MillstreamError):  # noqa: N818 - it names the record, not the failure
    """A decoded reading that breaks a rule (bad value, clock far ahead). ``code`` is bounded."""

    def __init__(self, code: str, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason
