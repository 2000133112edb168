"""Exceptions of the SPC package."""

from __future__ import annotations

from schemas.exceptions import MillstreamError


class SpcError(MillstreamError):
    """Root of every SPC error."""


class SpcInputError(SpcError):
    """Input data cannot be charted: missing file, unknown column, non-numeric value, bad subgroup."""


class SpcConfigError(SpcError):
    """A chart or monitor setting is invalid or missing (e.g. no baseline and no standard given)."""


class SpcStateError(SpcError):
    """A snapshot cannot be restored into this object (wrong type or version, corrupt fields)."""
