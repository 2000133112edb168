"""Snapshot envelope: how a monitor's state is stored by an engine adapter (changelog, checkpoint, file).

Format (UTF-8 JSON)::

    {"format": "millstream.anomaly.state", "version": 1, "sha256": "<hex of the canonical state JSON>",
     "state": {...MachineMonitor.snapshot()...}}

The state holds plain JSON numbers, strings and lists (floats round-trip exactly), except with the
``river`` half-space trees backend, whose model travels as a base64 pickle inside ``state``; the
checksum guards it, and only snapshots written by this code should be restored.
"""

from __future__ import annotations

import base64
import hashlib
import json
import zlib
from collections.abc import Mapping
from typing import Any

from streams.anomaly.exceptions import SnapshotError
from streams.anomaly.monitor import STATE_VERSION, MachineMonitor

FORMAT = "millstream.anomaly.state"


def _canonical(state: Mapping[str, Any]) -> bytes:
    return json.dumps(state, sort_keys=True, separators=(",", ":"), allow_nan=False).encode()


def dumps(monitor: MachineMonitor) -> bytes:
    state = monitor.snapshot()
    body = _canonical(state)
    envelope = {"format": FORMAT, "version": STATE_VERSION, "sha256": hashlib.sha256(body).hexdigest()}
    return json.dumps({**envelope, "state": state}, separators=(",", ":"), allow_nan=False).encode()


def loads(data: bytes | str) -> MachineMonitor:
    try:
        doc = json.loads(data)
    except ValueError as exc:
        msg = f"snapshot is not JSON: {exc}"
        raise SnapshotError(msg) from exc
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        msg = f"not a {FORMAT} snapshot"
        raise SnapshotError(msg)
    if doc.get("version") != STATE_VERSION:
        msg = f"snapshot version {doc.get('version')!r} is not supported (expected {STATE_VERSION})"
        raise SnapshotError(msg)
    state = doc.get("state")
    if not isinstance(state, dict) or hashlib.sha256(_canonical(state)).hexdigest() != doc.get("sha256"):
        msg = "snapshot checksum mismatch (corrupt or edited)"
        raise SnapshotError(msg)
    return MachineMonitor.restore(state)


def pack(state: Mapping[str, Any]) -> str:
    """A monitor's snapshot as compact text for an engine's state store: JSON, zlib level 1, base64.

    A snapshot is about 16 KB of JSON per sensor, mostly decimal floats; this is about a third of
    that (a machine checkpoints every few seconds, so the changelog carries much less), for about a
    millisecond per 8-sensor machine."""
    return base64.b64encode(zlib.compress(_canonical(state), 1)).decode("ascii")


def unpack(text: str) -> dict[str, Any]:
    """The snapshot :func:`pack` made; :class:`SnapshotError` when ``text`` is not one."""
    try:
        state = json.loads(zlib.decompress(base64.b64decode(text.encode("ascii"), validate=True)))
    except (ValueError, TypeError, AttributeError, zlib.error) as exc:
        msg = f"packed snapshot is unreadable: {exc}"
        raise SnapshotError(msg) from exc
    if not isinstance(state, dict):
        msg = "packed snapshot is not an object"
        raise SnapshotError(msg)
    return state
