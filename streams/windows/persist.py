"""Snapshots of the window operator: whole-operator JSON and per-key JSON (for changelog-backed tables).

Whole snapshot::

    {"format": 1, "spec": "tumbling:10s", "out_of_orderness_ms": .., "allowed_lateness_ms": ..,
     "idle_timeout_ms": .., "watermark": .., "max_ts": .., "idle_anchor": [wall, watermark] | null,
     "unclocked": bool, "keys": {key: <key snapshot, see streams.windows.state>}}

The timers (windows waiting to close, windows waiting to be purged) are not stored: they follow from
the windows' ``pending`` flags and ends and are rebuilt on restore.
"""

from __future__ import annotations

from heapq import heappush
from typing import Any, TypeVar

from streams.windows.exceptions import SnapshotError
from streams.windows.spec import WindowSpec
from streams.windows.state import END, PEND, KeyState, decode_key, encode_key

SNAPSHOT_FORMAT = 1
T = TypeVar("T", bound="SnapshotMixin")


class SnapshotMixin:
    """Snapshot and restore for ``WindowedAggregator`` (which defines the attributes declared here)."""

    spec: WindowSpec
    out_of_orderness_ms: int
    allowed_lateness_ms: int
    idle_timeout_ms: int | None
    _wm: int
    _max_ts: int
    _keys: dict[str, KeyState]
    _close: list[tuple[int, str, int]]
    _purge: list[tuple[int, str, int]]
    _dirty: set[str]
    _anchor_wall: int | None
    _anchor_wm: int
    _unclocked: bool
    _purge_extra: int

    def _reset(self) -> None:
        raise NotImplementedError

    def snapshot_key(self, key: str) -> dict[str, Any] | None:
        st = self._keys.get(key)
        return None if st is None else encode_key(st)

    def restore_key(self, key: str, snap: dict[str, Any] | None) -> None:
        """Replace one key's state (None removes it). The operator's watermark is not part of it."""
        self._keys.pop(key, None)
        if snap is not None:
            st = decode_key(snap)
            if st.wins:
                self._keys[key] = st
                self._schedule(key, st)
        self._dirty.add(key)

    def _schedule(self, key: str, st: KeyState) -> None:
        for start, w in st.wins.items():
            if w[PEND]:
                heappush(self._close, (w[END], key, start))
            else:
                heappush(self._purge, (w[END] + self._purge_extra, key, start))

    def snapshot(self) -> dict[str, Any]:
        """Whole operator state as JSON-serialisable data."""
        return {
            "format": SNAPSHOT_FORMAT,
            "spec": str(self.spec),
            "out_of_orderness_ms": self.out_of_orderness_ms,
            "allowed_lateness_ms": self.allowed_lateness_ms,
            "idle_timeout_ms": self.idle_timeout_ms,
            "watermark": self._wm,
            "max_ts": self._max_ts,
            "idle_anchor": None if self._anchor_wall is None else [self._anchor_wall, self._anchor_wm],
            "unclocked": self._unclocked,
            "keys": {k: encode_key(st) for k, st in self._keys.items()},
        }

    @classmethod
    def from_snapshot(
        cls: type[T],
        spec: WindowSpec | str,
        snap: dict[str, Any],
        out_of_orderness_ms: int | None = None,
        allowed_lateness_ms: int | None = None,
        idle_timeout_ms: int | None = None,
    ) -> T:
        """A new operator from ``snapshot()`` data; settings default to the snapshot's."""
        spec = WindowSpec.parse(spec) if isinstance(spec, str) else spec
        try:
            ooo = snap["out_of_orderness_ms"] if out_of_orderness_ms is None else out_of_orderness_ms
            lateness = snap["allowed_lateness_ms"] if allowed_lateness_ms is None else allowed_lateness_ms
            idle = snap["idle_timeout_ms"] if idle_timeout_ms is None else idle_timeout_ms
            op = cls(spec, out_of_orderness_ms=ooo, allowed_lateness_ms=lateness, idle_timeout_ms=idle)  # type: ignore[call-arg]
        except KeyError as exc:
            msg = f"damaged operator snapshot: missing {exc}"
            raise SnapshotError(msg) from exc
        op.load_snapshot(snap)
        return op

    def load_snapshot(self, snap: dict[str, Any]) -> None:
        """Replace this operator's state with ``snapshot()`` data of an operator with the same spec."""
        try:
            if snap["format"] != SNAPSHOT_FORMAT:
                msg = f"snapshot format {snap['format']!r} is not {SNAPSHOT_FORMAT}"
                raise SnapshotError(msg)
            if snap["spec"] != str(self.spec):
                msg = f"snapshot of a {snap['spec']} operator cannot restore a {self.spec} operator"
                raise SnapshotError(msg)
            self._reset()
            self._wm = int(snap["watermark"])
            self._max_ts = int(snap["max_ts"])
            anchor = snap["idle_anchor"]
            if anchor is not None:
                self._anchor_wall, self._anchor_wm = int(anchor[0]), int(anchor[1])
            self._unclocked = bool(snap["unclocked"])
            for key, ks in snap["keys"].items():
                st = decode_key(ks)
                if st.wins:
                    self._keys[key] = st
                    self._schedule(key, st)
        except (KeyError, TypeError, ValueError, IndexError) as exc:
            msg = f"damaged operator snapshot: {exc!r}"
            raise SnapshotError(msg) from exc
