"""Exceptions of the window operators."""

from __future__ import annotations

from schemas.exceptions import MillstreamError


class WindowError(MillstreamError):
    """Root of the errors raised by ``streams.windows``."""


class WindowSpecError(WindowError, ValueError):
    """A window spec string or field combination that does not describe a window."""


class InvalidValueError(WindowError, ValueError):
    """A reading that cannot be aggregated (non-finite value). Route it to the dead-letter topic."""


class SnapshotError(WindowError):
    """A snapshot that does not fit this operator (other spec, unknown format, damaged)."""
