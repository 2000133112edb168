"""The event-time window operator: one ``WindowedAggregator`` per input partition.

Watermark
    ``watermark = max(event time seen by this operator) - out_of_orderness_ms``, never decreasing; it
    starts at -2**63. Watermarks are per partition and need no alignment across partitions, because all
    records of a key live in one partition and windows are per key. A partition that goes quiet would
    keep its last windows open forever, hence ``on_idle(now_ms)``: when no record arrived for
    ``idle_timeout_ms`` of processing time, the watermark advances by the wall-clock time elapsed since
    the last record (assumption: event time runs roughly with the wall clock).

Emission, lateness, purge
    A window ``[start, end)`` is emitted (version 0) once ``watermark >= end``. Its state is kept until
    ``watermark >= end + allowed_lateness_ms`` (the "purge time"), then dropped. A record that falls into
    an emitted, not yet purged window updates it and re-emits it at once with ``version + 1`` (the new row
    replaces the old one downstream). A record is *too late* when every window it belongs to is purged;
    it updates nothing and comes back as a ``LateRecord``. Per kind, "too late" means:

    * tumbling: ``end + lateness <= watermark`` for its window;
    * hopping: the latest window containing it is purged (``floor(ts/step)*step + size + lateness <=
      watermark``); a record whose older windows are purged but newer ones are not updates the newer ones;
    * sliding: the window ending at the record is purged (``ts + 1 + lateness <= watermark``);
    * session: its own gap window ``[ts, ts + gap)`` is purged (``ts + gap + lateness <= watermark``).

    Two kinds keep state beyond ``end + lateness`` because later windows still need the records: a
    sliding window's records are kept until ``end + size + lateness`` (they feed the windows of later
    records), and a session until ``end + gap + lateness`` (a record accepted later can still merge into
    it; the merged session then ends within the allowed lateness). Neither changes which records are late.

Duplicates
    The same ``(key, ts_ms)`` counts once, keeping the first value (a gateway retry). Timestamps are
    remembered as long as a window that contains them has state.

Sessions
    A record closer than ``gap`` to a session joins it; one that bridges sessions merges them. Window
    identity downstream is ``(key, kind, start)``. A merged session is emitted with
    ``version = max(versions of the emitted sessions merged) + 1`` and lists the rows it replaces in
    ``WindowResult.supersedes``. A merge that moves a session's end beyond the watermark reopens it: it is
    emitted again when the watermark passes its new end.

Order
    ``process`` and ``advance_watermark`` return window results sorted by (end, key, start). A ``process``
    call returns either windows its record's watermark step closed, or windows its (late) record updated,
    or one ``LateRecord``, never a mix: a record that moves the watermark is in no closed window.

Aggregation is deferred: ``process`` inserts into the key's sorted buffer and marks windows; the
statistics (``aggregates.WindowStats``) are folded over the window's records when it is emitted.
Exact percentiles need every value anyway, so this costs no extra memory and keeps ``process`` cheap.
"""

from __future__ import annotations

import logging
from bisect import bisect_left, bisect_right
from collections.abc import Callable, Iterable
from heapq import heappop, heappush
from typing import Any

from streams.windows.aggregates import WindowStats
from streams.windows.exceptions import InvalidValueError
from streams.windows.persist import SnapshotMixin
from streams.windows.results import LateRecord, WindowResult
from streams.windows.sessions import route_session
from streams.windows.spec import WindowSpec
from streams.windows.state import EEND, END, PEND, SUP, VER, KeyState

logger = logging.getLogger(__name__)

MIN_WATERMARK = -(2**63)
Emission = WindowResult | LateRecord


class _HybridRestore:
    """``WindowedAggregator.restore(spec, snap, ...)`` builds an operator; ``op.restore(snap)`` loads one."""

    def __get__(self, obj: WindowedAggregator | None, owner: type[WindowedAggregator]) -> Callable[..., Any]:
        if obj is None:
            return owner.from_snapshot
        return obj.load_snapshot


class WindowedAggregator(SnapshotMixin):
    """Event-time windows with watermarks, allowed lateness, de-duplication and snapshots."""

    restore = _HybridRestore()

    def __init__(
        self,
        spec: WindowSpec,
        out_of_orderness_ms: int = 0,
        allowed_lateness_ms: int = 0,
        idle_timeout_ms: int | None = None,
    ) -> None:
        if out_of_orderness_ms < 0 or allowed_lateness_ms < 0:
            msg = "out_of_orderness_ms and allowed_lateness_ms must be >= 0"
            raise ValueError(msg)
        if idle_timeout_ms is not None and idle_timeout_ms <= 0:
            msg = "idle_timeout_ms must be positive (or None to disable idleness)"
            raise ValueError(msg)
        self.spec = spec
        self.out_of_orderness_ms = out_of_orderness_ms
        self.allowed_lateness_ms = allowed_lateness_ms
        self.idle_timeout_ms = idle_timeout_ms
        self._kind = spec.kind
        self._size = spec.size_ms or 0
        self._step = spec.step_ms or self._size
        self._gap = spec.gap_ms or 0
        self._stats = WindowStats()
        # Extra time after ``end`` before a window's state goes, and the buffer cut made when it goes.
        extra = {"sliding": self._size, "session": self._gap}.get(spec.kind, 0)
        self._purge_extra = allowed_lateness_ms + extra
        trim = {"tumbling": self._size, "hopping": self._step, "sliding": self._size + 1}
        self._trim_off = trim.get(spec.kind)
        self._route: Callable[[str, int, float, list[Emission]], list[Emission]] = {
            "tumbling": self._route_tumbling,
            "hopping": self._route_hopping,
            "sliding": self._route_sliding,
            "session": self._route_session,
        }[spec.kind]
        self._reset()

    def _reset(self) -> None:
        self._wm = MIN_WATERMARK
        self._max_ts = MIN_WATERMARK
        self._keys: dict[str, KeyState] = {}
        self._close: list[tuple[int, str, int]] = []  # (end, key, start): windows waiting to be emitted
        self._purge: list[tuple[int, str, int]] = []  # (purge time, key, start): emitted windows
        self._dirty: set[str] = set()
        self._anchor_wall: int | None = None  # wall ms of the last clocked record (or idle check)
        self._anchor_wm = MIN_WATERMARK  # the watermark at that moment
        self._unclocked = False  # a record came without now_ms since the last on_idle

    # ------------------------------------------------------------------------------------- input
    @property
    def watermark(self) -> int:
        return self._wm

    def process(self, key: str, ts_ms: int, value: float, now_ms: int | None = None) -> list[Emission]:
        """Feed one record; returns windows it closed or updated, or a ``LateRecord``.

        Raises ``InvalidValueError`` for a non-finite value (route the record to the dead-letter topic).
        """
        value = float(value)
        if value - value != 0.0:  # inf or nan (cheaper than math.isfinite on the hot path)
            msg = f"{key}: value {value} at {ts_ms} is not finite"
            raise InvalidValueError(msg)
        out: list[Emission] = []
        if ts_ms > self._max_ts:
            self._max_ts = ts_ms
            wm = ts_ms - self.out_of_orderness_ms
            if wm > self._wm:
                out.extend(self._advance(wm))
        if now_ms is None:
            self._unclocked = True
        else:
            self._anchor_wall = now_ms  # two ints, no tuple per record
            self._anchor_wm = self._wm
        return self._route(key, ts_ms, value, out)

    def advance_watermark(self, watermark_ms: int) -> list[WindowResult]:
        """Move the watermark forward (never back); returns the windows that closed."""
        if watermark_ms <= self._wm:
            return []
        return self._advance(watermark_ms)

    def on_idle(self, now_ms: int) -> list[WindowResult]:
        """Processing-time tick. After ``idle_timeout_ms`` without records, the watermark follows the wall
        clock: ``watermark at the last record + (now - wall time of the last record)``. Records fed without
        ``now_ms`` count as arriving at the first ``on_idle`` call after them."""
        if self.idle_timeout_ms is None:
            return []
        if self._unclocked or self._anchor_wall is None:
            self._unclocked = False
            self._anchor_wall = now_ms
            self._anchor_wm = self._wm
            return []
        elapsed = now_ms - self._anchor_wall
        if elapsed < self.idle_timeout_ms:
            return []
        return self.advance_watermark(self._anchor_wm + elapsed)

    # ------------------------------------------------------------------------------------- routing
    def _insert(self, key: str, ts: int, value: float) -> KeyState | None:
        """Add a record to its key's buffer; None if (key, ts) was seen (duplicate, first value wins)."""
        st = self._keys.get(key)
        if st is None:
            st = self._keys[key] = KeyState()
        tss = st.tss
        if tss and ts <= tss[-1]:
            i = bisect_left(tss, ts)
            if tss[i] == ts:
                return None
            tss.insert(i, ts)
            st.vals.insert(i, value)
        else:
            tss.append(ts)
            st.vals.append(value)
        self._dirty.add(key)
        return st

    def _touch(self, key: str, st: KeyState, start: int, end: int, out: list[Emission]) -> None:
        """Mark window ``[start, end)`` changed; emit it now if the watermark already passed its end."""
        w = st.wins.get(start)
        if w is None:
            w = st.wins[start] = [end, -1, True, -1, None]
            if end > self._wm:
                heappush(self._close, (end, key, start))
                return
        elif w[PEND]:
            return
        else:
            w[PEND] = True
        if end <= self._wm:
            out.append(self._emit(key, st, start, w))

    def _route_tumbling(self, key: str, ts: int, value: float, out: list[Emission]) -> list[Emission]:
        start = ts - ts % self._size
        end = start + self._size
        if end + self.allowed_lateness_ms <= self._wm:
            out.append(self._late(key, ts, value, start, end, f"tumbling window [{start}, {end})"))
            return out
        st = self._insert(key, ts, value)
        if st is not None:
            w = st.wins.get(start)
            if w is None or not w[PEND]:  # else: already pending, nothing to schedule
                self._touch(key, st, start, end, out)
        return out

    def _route_hopping(self, key: str, ts: int, value: float, out: list[Emission]) -> list[Emission]:
        size, lateness, wm = self._size, self.allowed_lateness_ms, self._wm
        start = ts - ts % self._step
        if start + size + lateness <= wm:
            desc = f"latest hopping window [{start}, {start + size}) (and all earlier ones)"
            out.append(self._late(key, ts, value, start, start + size, desc))
            return out
        st = self._insert(key, ts, value)
        if st is None:
            return out
        now: list[Emission] = []
        while start > ts - size and start + size + lateness > wm:
            self._touch(key, st, start, start + size, now)
            start -= self._step
        return self._merge_out(out, now)

    def _route_sliding(self, key: str, ts: int, value: float, out: list[Emission]) -> list[Emission]:
        size = self._size
        if ts + 1 + self.allowed_lateness_ms <= self._wm:
            desc = f"sliding window [{ts - size}, {ts + 1})"
            out.append(self._late(key, ts, value, ts - size, ts + 1, desc))
            return out
        st = self._insert(key, ts, value)
        if st is None:
            return out
        now: list[Emission] = []
        self._touch(key, st, ts - size, ts + 1, now)
        tss = st.tss
        for t in tss[bisect_right(tss, ts) : bisect_right(tss, ts + size)]:
            if t - size in st.wins:  # windows of later records that now contain this one
                self._touch(key, st, t - size, t + 1, now)
        return self._merge_out(out, now)

    def _route_session(self, key: str, ts: int, value: float, out: list[Emission]) -> list[Emission]:
        gap = self._gap
        if ts + gap + self.allowed_lateness_ms <= self._wm:
            out.append(self._late(key, ts, value, ts, ts + gap, f"session gap window [{ts}, {ts + gap})"))
            return out
        st = self._insert(key, ts, value)
        if st is None:
            return out
        start, end, reshaped = route_session(st.wins, ts, gap)
        if not reshaped:
            self._touch(key, st, start, end, out)
        elif end <= self._wm:
            out.append(self._emit(key, st, start, st.wins[start]))
        else:
            heappush(self._close, (end, key, start))
        return out

    @staticmethod
    def _merge_out(out: list[Emission], now: list[Emission]) -> list[Emission]:
        if len(now) > 1:
            now.sort(key=lambda r: (r.end, r.start))  # type: ignore[union-attr]
        out.extend(now)
        return out

    def _late(self, key: str, ts: int, value: float, start: int, end: int, what: str) -> LateRecord:
        wm, lateness = self._wm, self.allowed_lateness_ms
        purged_for = wm - (end + lateness)
        reason = (
            f"too late: record at {ts} is {wm - ts} ms behind the watermark {wm}; its {what} was purged "
            f"{purged_for} ms ago (end {end} + allowed lateness {lateness} ms <= watermark)"
        )
        return LateRecord(key=key, ts_ms=ts, value=value, watermark_ms=wm, reason=reason)

    # ------------------------------------------------------------------------------------- emission
    def _emit(self, key: str, st: KeyState, start: int, w: list[Any]) -> WindowResult:
        end = w[END]
        tss = st.tss
        lo = bisect_left(tss, start)
        hi = bisect_left(tss, end, lo)
        stats = self._stats.result(self._stats.fold(tss[lo:hi], st.vals[lo:hi]))
        version = w[VER] + 1
        w[VER] = version
        w[PEND] = False
        w[EEND] = end
        sup: tuple[tuple[int, int], ...] = ()
        if w[SUP]:
            sup = tuple(sorted(w[SUP]))
            w[SUP] = None
        heappush(self._purge, (end + self._purge_extra, key, start))
        self._dirty.add(key)
        return WindowResult(key, self._kind, start, end, *stats, version=version, supersedes=sup)

    def _advance(self, wm: int) -> list[WindowResult]:
        self._wm = wm
        out: list[WindowResult] = []
        keys = self._keys
        close = self._close
        while close and close[0][0] <= wm:
            end, key, start = heappop(close)
            st = keys.get(key)
            w = None if st is None else st.wins.get(start)
            if w is not None and w[PEND] and w[END] == end:
                out.append(self._emit(key, st, start, w))  # type: ignore[arg-type]
        purge = self._purge
        extra = self._purge_extra
        while purge and purge[0][0] <= wm:
            t, key, start = heappop(purge)
            st = keys.get(key)
            w = None if st is None else st.wins.get(start)
            if w is None or w[PEND] or w[END] + extra != t:
                continue  # stale entry: window gone, changed, or extended since
            assert st is not None
            del st.wins[start]
            cut = w[END] if self._trim_off is None else start + self._trim_off
            n = bisect_left(st.tss, cut)
            del st.tss[:n]
            del st.vals[:n]
            if not st.wins:
                del keys[key]
            self._dirty.add(key)
        return out

    # ------------------------------------------------------------------------------------- state
    def keys(self) -> Iterable[str]:
        """Keys that have state."""
        return list(self._keys)

    def has_state(self, key: str) -> bool:
        """True while ``key`` has a window (open, or emitted and not yet purged)."""
        return key in self._keys

    def drain_dirty_keys(self) -> set[str]:
        """Keys whose state changed (or was removed) since the last call."""
        dirty, self._dirty = self._dirty, set()
        return dirty
