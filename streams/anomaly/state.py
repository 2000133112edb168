"""Snapshot envelope: how a monitor's state is stored by an engine adapter (changelog, checkpoint, file).

Format (UTF-8 JSON)::

    {"format": "millstream.anomaly.state", "version": 1, "sha256": "<hex of the canonical state JSON>",
     "state": {...MachineMonitor.snapshot()...}}

The state holds plain JSON numbers, strings and lists (floats round-trip exactly), except with the
``river`` half-space trees backend, whose model travels as a base64 pickle inside ``state``; the
checksum guards it, and only snapshots written by this code should be restored.
"""

from __future__ import annotations

import hashlib
import json
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
