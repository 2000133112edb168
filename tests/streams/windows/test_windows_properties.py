"""Property tests: for every window kind, the last emitted version of each window equals a batch
recomputation over the distinct, not-too-late records, and exactly the too-late records come back as
LateRecords. Input: several keys, shuffled within and beyond out-of-orderness + lateness, duplicated.

"Too late" is computed here from the arrival sequence, independently of the operator, from the rules
in streams/windows/operator.py: the watermark is max(event time so far) - out_of_orderness, and a record
is too late when every window it belongs to is purged (window end + allowed lateness <= watermark):
  tumbling: its window; hopping: its latest window; sliding: the window ending at it;
  session: its own gap window [ts, ts + gap).
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from streams.windows import LateRecord, WindowedAggregator, WindowResult, WindowSpec

SPECS = [
    "tumbling:10ms",
    "hopping:10ms/3ms",
    "hopping:12ms/4ms",
    "sliding:7ms",
    "session:5ms",
    "session:12ms",
]
Record = tuple[str, int, float]


@st.composite
def arrivals(draw: Any) -> tuple[int, int, list[Record]]:
    """(out_of_orderness, allowed_lateness, records in arrival order)."""
    ooo = draw(st.integers(0, 8))
    lateness = draw(st.integers(0, 10))
    records: list[tuple[int, Record]] = []  # (arrival rank, record)
    for key in ("a", "b", "c")[: draw(st.integers(1, 3))]:
        tss = draw(st.lists(st.integers(0, 150), min_size=1, max_size=40, unique=True))
        for ts in tss:
            value = draw(st.floats(-1e3, 1e3, allow_nan=False, allow_infinity=False))
            # rank = event time + delay; most delays stay within out-of-orderness + lateness, some do not
            delay = draw(
                st.one_of(
                    st.integers(0, ooo),  # within out-of-orderness: on time
                    st.integers(ooo, ooo + lateness + 12),  # behind the watermark: late updates, merges
                    st.integers(0, ooo + lateness + 40),  # anything, including too late
                )
            )
            records.append((ts + delay, (key, ts, value)))
            if draw(st.integers(0, 5)) == 0:  # a retry: same (key, ts), maybe another payload, later
                again = value if draw(st.booleans()) else value + 1.0
                records.append((ts + delay + draw(st.integers(0, 30)), (key, ts, again)))
    records.sort(key=lambda r: r[0])  # stable: a retry never overtakes its original at equal rank
    return ooo, lateness, [r for _, r in records]


def _too_late(spec: WindowSpec, ts: int, wm: float, lateness: int) -> bool:
    if spec.kind == "tumbling":
        end = ts - ts % spec.size_ms + spec.size_ms
    elif spec.kind == "hopping":
        end = ts - ts % spec.step_ms + spec.size_ms
    elif spec.kind == "sliding":
        end = ts + 1
    else:
        end = ts + spec.gap_ms
    return end + lateness <= wm


def _expected(spec: WindowSpec, ooo: int, lateness: int, recs: list[Record]) -> tuple[dict, list[Record]]:
    """Batch model: window identity (key, start) -> (end, [(ts, value)]), and the too-late records."""
    wm = -float("inf")
    accepted: dict[tuple[str, int], tuple[float, float]] = {}  # (key, ts) -> (value, watermark at arrival)
    late: list[Record] = []
    for key, ts, v in recs:
        wm = max(wm, ts - ooo)
        if _too_late(spec, ts, wm, lateness):
            late.append((key, ts, v))
        elif (key, ts) not in accepted:
            accepted[(key, ts)] = (v, wm)
    by_key: dict[str, list[tuple[int, float, float]]] = defaultdict(list)
    for (key, ts), (v, wm_at) in sorted(accepted.items()):
        by_key[key].append((ts, v, wm_at))
    windows: dict[tuple[str, int], tuple[int, list[tuple[int, float]]]] = {}
    for key, rows in by_key.items():
        if spec.kind in ("tumbling", "hopping"):
            size = spec.size_ms
            step = spec.step_ms or size
            for ts, v, wm_at in rows:
                for start in range(ts - ts % step, ts - size, -step):
                    if start + size + lateness > wm_at:  # this window still had state on arrival
                        windows.setdefault((key, start), (start + size, []))[1].append((ts, v))
        elif spec.kind == "sliding":
            for t, _, _ in rows:
                windows[(key, t - spec.size_ms)] = (
                    t + 1,
                    [(ts, v) for ts, v, _ in rows if t - spec.size_ms <= ts <= t],
                )
        else:
            session: list[tuple[int, float]] = []
            for ts, v, _ in [*rows, (None, None, None)]:
                if session and (ts is None or ts - session[-1][0] >= spec.gap_ms):
                    windows[(key, session[0][0])] = (session[-1][0] + spec.gap_ms, session)
                    session = []
                if ts is not None:
                    session.append((ts, v))
    return windows, late


def _check_window(r: WindowResult, end: int, rows: list[tuple[int, float]]) -> None:
    t = np.array([ts for ts, _ in rows], dtype=np.int64)
    v = np.array([x for _, x in rows])
    assert (r.end, r.count, r.first_ts, r.last_ts, r.first, r.last) == (end, len(v), t[0], t[-1], v[0], v[-1])
    assert (r.min, r.max) == (v.min(), v.max())
    close = {"rel": 1e-9, "abs": 1e-9}
    assert r.sum == pytest.approx(v.sum(), **close)
    assert r.mean == pytest.approx(v.mean(), **close)
    assert r.std == pytest.approx(v.std(ddof=1) if len(v) > 1 else 0.0, **close)
    for q, got in ((50, r.p50), (95, r.p95), (99, r.p99)):
        assert got == pytest.approx(np.percentile(v, q), **close)
    if len(v) < 2:
        assert r.slope is None
    else:
        assert r.slope == pytest.approx(np.polyfit((t - t[0]) / 1000.0, v, 1)[0], rel=1e-7, abs=1e-6)


def run(op: WindowedAggregator, recs: list[Record]) -> list[list[WindowResult | LateRecord]]:
    """Emissions of each call, the final flush included."""
    calls = [op.process(k, ts, v) for k, ts, v in recs]
    calls.append(list(op.advance_watermark(2**62)))
    return calls


def final_table(calls: list[list[WindowResult | LateRecord]]) -> tuple[dict, list[Record]]:
    """Apply emissions like a downstream table: identity (key, start); supersedes deletes rows."""
    table: dict[tuple[str, int], WindowResult] = {}
    late: list[Record] = []
    for emitted in calls:
        results = [e for e in emitted if isinstance(e, WindowResult)]
        assert [(r.end, r.key, r.start) for r in results] == sorted((r.end, r.key, r.start) for r in results)
        for e in emitted:
            if isinstance(e, LateRecord):
                late.append((e.key, e.ts_ms, e.value))
                continue
            for s, end in e.supersedes:
                assert s != e.start
                gone = table.pop((e.key, s))
                assert gone.end == end
            prev = table.get((e.key, e.start))
            if e.kind == "session":
                assert prev is None or e.version > prev.version
            else:
                assert e.version == (0 if prev is None else prev.version + 1)
            table[(e.key, e.start)] = e
    return table, late


@pytest.mark.parametrize("text", SPECS)
@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=arrivals())
def test_final_windows_equal_batch_recomputation(text: str, data: tuple[int, int, list[Record]]) -> None:
    ooo, lateness, recs = data
    spec = WindowSpec.parse(text)
    op = WindowedAggregator(spec, out_of_orderness_ms=ooo, allowed_lateness_ms=lateness)
    table, late = final_table(run(op, recs))
    want, want_late = _expected(spec, ooo, lateness, recs)
    assert late == want_late
    assert set(table) == set(want)
    for ident, r in table.items():
        _check_window(r, *want[ident])
    assert list(op.keys()) == []  # everything purged after the final watermark


@pytest.mark.parametrize("text", SPECS)
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=arrivals(), cut=st.floats(0, 1))
def test_snapshot_restore_continues_identically(
    text: str, data: tuple[int, int, list[Record]], cut: float
) -> None:
    import json

    ooo, lateness, recs = data
    spec = WindowSpec.parse(text)
    kw = {"out_of_orderness_ms": ooo, "allowed_lateness_ms": lateness}
    want = run(WindowedAggregator(spec, **kw), recs)
    i = int(cut * len(recs))

    first = WindowedAggregator(spec, **kw)
    head = [first.process(k, ts, v) for k, ts, v in recs[:i]]
    snap = json.loads(json.dumps(first.snapshot(), allow_nan=False))
    # the class-level restore, and the instance-level one into a fresh operator
    assert head + run(WindowedAggregator.restore(spec, snap), recs[i:]) == want
    other = WindowedAggregator(spec, **kw)
    other.restore(snap)
    assert head + run(other, recs[i:]) == want


@pytest.mark.parametrize("text", SPECS)
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=arrivals(), cut=st.floats(0, 1))
def test_changelog_of_dirty_keys_restores_identically(
    text: str, data: tuple[int, int, list[Record]], cut: float
) -> None:
    """The engine adapters' pattern: after each call persist snapshot_key of drained dirty keys; recover
    a fresh operator from that table plus the saved watermark."""
    import json

    ooo, lateness, recs = data
    spec = WindowSpec.parse(text)
    kw = {"out_of_orderness_ms": ooo, "allowed_lateness_ms": lateness}
    want = run(WindowedAggregator(spec, **kw), recs)
    i = int(cut * len(recs))
    op = WindowedAggregator(spec, **kw)
    table: dict[str, Any] = {}
    head = []
    for k, ts, v in recs[:i]:
        head.append(op.process(k, ts, v))
        for key in op.drain_dirty_keys():
            table[key] = json.loads(json.dumps(op.snapshot_key(key)))
        assert {k for k, s in table.items() if s is not None} == set(op.keys())
        assert all(table[key] == op.snapshot_key(key) for key in op.keys())  # nothing changed unreported
    fresh = WindowedAggregator(spec, **kw)
    for key, snap in table.items():
        fresh.restore_key(key, snap)
    assert fresh.advance_watermark(op.watermark) == []  # nothing was pending behind the watermark
    assert head + run(fresh, recs[i:]) == want
