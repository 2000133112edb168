"""Watermarks, idleness, late updates (version bumps), purge after allowed lateness, per-kind rules."""

from __future__ import annotations

import json

import pytest

from streams.windows import (
    MIN_WATERMARK,
    LateRecord,
    SnapshotError,
    WindowedAggregator,
    WindowResult,
    WindowSpec,
)


def op_for(text: str, ooo: int = 0, lateness: int = 0, idle: int | None = None) -> WindowedAggregator:
    return WindowedAggregator(
        WindowSpec.parse(text), out_of_orderness_ms=ooo, allowed_lateness_ms=lateness, idle_timeout_ms=idle
    )


def only(items: list) -> WindowResult:
    assert len(items) == 1 and isinstance(items[0], WindowResult), items
    return items[0]


def test_watermark_is_max_event_time_minus_out_of_orderness() -> None:
    op = op_for("tumbling:10s", ooo=2_000)
    assert op.watermark == MIN_WATERMARK == -(2**63)
    op.process("a", 5_000, 1.0)
    assert op.watermark == 3_000
    op.process("b", 4_000, 1.0)  # older record, other key: same partition watermark, no regression
    assert op.watermark == 3_000
    assert op.advance_watermark(1_000) == [] and op.watermark == 3_000  # never moves back
    op.advance_watermark(4_000)
    assert op.watermark == 4_000


def test_window_emits_exactly_when_watermark_reaches_end() -> None:
    op = op_for("tumbling:10s", ooo=2_000)
    op.process("a", 1_000, 1.0)
    assert op.process("a", 11_999, 2.0) == []  # watermark 9999 < end 10000
    r = only(op.process("a", 12_000, 3.0))  # watermark 10000 == end
    assert (r.start, r.end, r.count, r.version) == (0, 10_000, 1, 0)


def test_late_updates_bump_version_until_purge() -> None:
    op = op_for("tumbling:10s", ooo=0, lateness=5_000)
    op.process("a", 1_000, 1.0)
    assert only(op.process("a", 10_000, 0.0)).version == 0  # watermark 10000 closes [0, 10000)
    op.drain_dirty_keys()
    r = only(op.process("a", 2_000, 5.0))  # late but allowed: re-emitted at once
    assert (r.start, r.count, r.max, r.version) == (0, 2, 5.0, 1)
    assert op.drain_dirty_keys() == {"a"}
    r = only(op.process("a", 3_000, 7.0))
    assert (r.count, r.version) == (3, 2)
    assert op.process("a", 3_000, 9.0) == []  # duplicate of a late record: no re-emission
    op.process("a", 14_999, 0.0)  # watermark 14999 = end + lateness - 1: still kept
    assert only(op.process("a", 4_000, 1.0)).version == 3
    op.process("a", 15_000, 0.0)  # watermark 15000 = end + lateness: purged
    late = op.process("a", 5_000, 1.0)
    assert len(late) == 1 and isinstance(late[0], LateRecord)
    assert "[0, 10000)" in late[0].reason


def test_purge_removes_state_and_reports_the_key() -> None:
    op = op_for("tumbling:10s", ooo=0, lateness=1_000)
    op.process("a", 1_000, 1.0)
    assert op.snapshot_key("a") is not None and op.drain_dirty_keys() == {"a"}
    assert [r.key for r in op.advance_watermark(10_000)] == ["a"]
    assert op.drain_dirty_keys() == {"a"}  # version changed
    assert op.advance_watermark(11_000) == []
    assert op.drain_dirty_keys() == {"a"}  # removed
    assert op.snapshot_key("a") is None and list(op.keys()) == []


def test_idle_partition_advances_with_the_wall_clock() -> None:
    op = op_for("tumbling:10s", ooo=2_000, idle=5_000)
    for t in range(1_000, 10_000, 1_000):
        op.process("a", t, 1.0, now_ms=100_000 + t)  # last record: event 9000, wall 109000, watermark 7000
    assert op.on_idle(113_999) == []  # idle for 4999 ms: not yet
    r = only(op.on_idle(114_000))  # idle 5000 ms: watermark 7000 + 5000 = 12000 >= 10000
    assert (r.start, r.count) == (0, 9) and op.watermark == 12_000
    assert op.on_idle(114_000) == [] and op.watermark == 12_000  # elapsed time is not counted twice
    op.on_idle(120_000)
    assert op.watermark == 18_000
    # a record behind the idle-advanced watermark: its window [10000, 20000) is still open, so it counts
    assert op.process("a", 10_500, 1.0, now_ms=120_500) == []
    assert op.watermark == 18_000
    # the record restarted the idle clock: 5000 ms later the watermark is 18000 + 5000
    assert only(op.on_idle(125_500)).count == 1 and op.watermark == 23_000


def test_idle_disabled_and_unclocked_records() -> None:
    off = op_for("tumbling:10s", idle=None)
    off.process("a", 1_000, 1.0, now_ms=0)
    assert off.on_idle(10**9) == [] and off.watermark == 1_000
    op = op_for("tumbling:10s", idle=1_000)
    op.process("a", 1_000, 1.0)  # no wall clock given: the next on_idle counts as its arrival
    assert op.on_idle(50_000) == []
    assert op.on_idle(50_999) == []
    assert only(op.on_idle(60_000)).start == 0 and op.watermark == 11_000


def test_hopping_record_updates_only_windows_still_kept() -> None:
    op = op_for("hopping:10s/5s", ooo=0, lateness=0)
    op.process("a", 9_000, 1.0)
    emitted = op.process("a", 12_000, 2.0)  # watermark 12000 closes [0, 10000)
    assert [(r.start, r.end) for r in emitted] == [(0, 10_000)]
    # ts 8000 is in [0, 10000) (purged: 10000 <= 12000) and [5000, 15000) (open): updates the open one
    assert op.process("a", 8_000, 3.0) == []
    out = op.advance_watermark(15_000)
    assert [(r.start, r.count, r.version) for r in out] == [(5_000, 3, 0)]
    late = op.process("a", 14_000, 1.0)  # newest window [10000, 20000) still open: accepted
    assert late == []
    late = op.process("a", 4_999, 1.0)  # both windows [-5000, 5000), [0, 10000) are purged
    assert isinstance(late[0], LateRecord) and "latest hopping window [0, 10000)" in late[0].reason


def test_sliding_windows_end_at_each_record_and_take_late_records() -> None:
    op = op_for("sliding:10s", ooo=0, lateness=30_000)
    emitted = [r for t in (0, 4_000, 10_000, 11_000) for r in op.process("a", t, t / 1000.0)]
    emitted += op.advance_watermark(20_000)
    # windows [t - 10000, t + 1): inclusive on both ends in record time (Kafka Streams' timeDifference)
    got = {r.start: (r.end, r.count, r.version) for r in emitted}
    assert got == {-10_000: (1, 1, 0), -6_000: (4_001, 2, 0), 0: (10_001, 3, 0), 1_000: (11_001, 3, 0)}
    out = op.process("a", 5_000, 5.0)  # late: its own window comes out, and the two later ones it joins
    assert [(r.start, r.end, r.count, r.version) for r in out] == [
        (-5_000, 5_001, 3, 0),
        (0, 10_001, 4, 1),
        (1_000, 11_001, 4, 1),
    ]


def test_session_merge_retracts_superseded_rows() -> None:
    op = op_for("session:5s", ooo=10_000, lateness=60_000)
    op.process("a", 0, 1.0)
    op.process("a", 3_000, 2.0)  # session [0, 8000)
    op.process("a", 10_000, 3.0)  # session [10000, 15000)
    first = op.advance_watermark(20_000)
    assert [(r.start, r.end, r.version) for r in first] == [(0, 8_000, 0), (10_000, 15_000, 0)]
    r = only(op.process("a", 6_000, 4.0))  # 6000 is < 5000 from both: bridges them
    assert (r.start, r.end, r.count, r.version, r.supersedes) == (0, 15_000, 4, 1, ((10_000, 15_000),))
    r = only(op.process("a", -2_000, 0.5))  # moves the start: the row at start 0 is superseded
    assert (r.start, r.end, r.count, r.version, r.supersedes) == (-2_000, 15_000, 5, 2, ((0, 15_000),))
    r = only(op.process("a", 15_000, 9.0))  # exactly gap after the last record: a new session, closed
    assert (r.start, r.end, r.count, r.version, r.supersedes) == (15_000, 20_000, 1, 0, ())


def test_session_reopened_by_a_merge_is_emitted_when_it_closes() -> None:
    op = op_for("session:5s", ooo=0, lateness=60_000)
    op.process("a", 0, 1.0)
    op.process("a", 9_000, 2.0)  # watermark 9000 closes [0, 5000); [9000, 14000) open
    # 4500 bridges [0, 5000) (emitted) and [9000, 14000): the merged [0, 14000) ends after the watermark,
    # so it waits for the watermark like any open window
    assert op.process("a", 4_500, 3.0) == []
    assert op.advance_watermark(13_999) == []
    r = only(op.advance_watermark(14_000))
    assert (r.start, r.end, r.count, r.version, r.supersedes) == (0, 14_000, 3, 1, ())


def test_restore_rejects_other_spec_and_damage() -> None:
    op = op_for("tumbling:10s")
    op.process("a", 1_000, 0.1 + 0.2)
    snap = json.loads(json.dumps(op.snapshot(), allow_nan=False))
    with pytest.raises(SnapshotError):
        WindowedAggregator.restore(WindowSpec.parse("tumbling:5s"), snap)
    with pytest.raises(SnapshotError):
        op_for("session:10s").restore(snap)
    broken = json.loads(json.dumps(snap))
    broken["keys"]["a"]["v"] = []
    with pytest.raises(SnapshotError):
        WindowedAggregator.restore("tumbling:10s", broken)
    with pytest.raises(SnapshotError):
        op.restore_key("a", {"t0": 0})
    restored = WindowedAggregator.restore("tumbling:10s", snap)
    assert only(restored.advance_watermark(10_000)).sum == 0.1 + 0.2  # floats survive JSON exactly


def test_restore_key_none_removes_state() -> None:
    op = op_for("tumbling:10s")
    op.process("a", 1_000, 1.0)
    op.drain_dirty_keys()
    op.restore_key("a", None)
    assert list(op.keys()) == [] and op.drain_dirty_keys() == {"a"}
    assert op.advance_watermark(2**62) == []


def test_session_state_outlives_end_plus_lateness_by_one_gap() -> None:
    op = op_for("session:5s", ooo=0, lateness=0)
    op.process("a", 0, 1.0)
    r = only(op.process("a", 5_000, 2.0))  # watermark 5000: [0, 5000) emitted; 5000 opens [5000, 10000)
    assert (r.start, r.end, r.version) == (0, 5_000, 0)
    # [0, 5000) is past end + lateness, but 2000's own gap window [2000, 7000) is not: accepted, and it
    # bridges both sessions; the merged [0, 10000) is open again, so it waits for the watermark
    assert op.process("a", 2_000, 3.0) == []
    late = op.process("a", -100, 0.0)  # [-100, 4900) is past watermark 5000: too late
    assert isinstance(late[0], LateRecord) and "session gap window [-100, 4900)" in late[0].reason
    r = only(op.advance_watermark(10_000))
    assert (r.start, r.end, r.count, r.version, r.supersedes) == (0, 10_000, 3, 1, ())
    assert op.advance_watermark(14_999) == [] and list(op.keys()) == ["a"]
    op.advance_watermark(15_000)  # end + gap + lateness
    assert list(op.keys()) == []


def test_result_fields_follow_the_interface() -> None:
    import dataclasses

    names = [f.name for f in dataclasses.fields(WindowResult)]
    assert names == [
        "key", "kind", "start", "end", "count", "sum", "mean", "min", "max", "std", "first_ts", "last_ts",
        "first", "last", "p50", "p95", "p99", "slope", "version", "supersedes",
    ]  # fmt: skip
    late_names = [f.name for f in dataclasses.fields(LateRecord)]
    assert late_names == ["key", "ts_ms", "value", "watermark_ms", "reason"]
    op = op_for("tumbling:1s")
    op.process("a", 0, 1.0)
    r = only(op.advance_watermark(1_000))
    with pytest.raises(dataclasses.FrozenInstanceError):
        r.version = 5  # type: ignore[misc]


def test_idle_clock_survives_snapshot_restore() -> None:
    def feed(op: WindowedAggregator) -> None:
        for t in range(0, 9_000, 1_000):
            op.process("a", t, float(t), now_ms=50_000 + t)

    a = op_for("tumbling:10s", ooo=1_000, idle=2_000)
    feed(a)
    b = WindowedAggregator.restore("tumbling:10s", json.loads(json.dumps(a.snapshot())))
    assert b.idle_timeout_ms == 2_000
    for now in (59_000, 60_999, 61_000, 70_000):
        assert a.on_idle(now) == b.on_idle(now)
        assert a.watermark == b.watermark
    assert a.watermark == 7_000 + (70_000 - 58_000)
