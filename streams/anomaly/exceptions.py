"""Exceptions of the anomaly package."""

from __future__ import annotations

from schemas.exceptions import MillstreamError


class AnomalyError(MillstreamError):
    """Root of the anomaly package's errors."""


class InputFileError(AnomalyError):
    """A file given to ``millstream detect`` cannot be replayed (empty, missing column, bad timestamp)."""


class NabError(AnomalyError):
    """The NAB corpus or a results folder is incomplete or malformed."""


class SnapshotError(AnomalyError):
    """A snapshot cannot be restored (unknown version, corrupt payload, wrong model kind)."""
