"""Judging a backtest (``millstream detect --labels``, ``bench_rig``): hand-counted cases."""

from __future__ import annotations

import pytest

from streams.anomaly.backtest import Backtest, judge

#            0  1  2  3  4  5  6  7  8  9 10 11 12 13 14 15
LABELS = [0, 0, 0, 1, 1, 1, 1, 0, 0, 0, 0, 1, 1, 0, 0, 0]
FLAGGED = [1, 0, 0, 0, 1, 1, 1, 1, 0, 1, 1, 1, 0, 0, 0, 0]


def test_point_wise_counts_and_rates() -> None:
    b = judge(FLAGGED, LABELS)
    assert (b.tp, b.fp, b.fn, b.tn) == (4, 4, 2, 6)
    assert b.precision == 0.5
    assert b.recall == pytest.approx(4 / 6)
    assert b.f1 == pytest.approx(2 * 0.5 * (4 / 6) / (0.5 + 4 / 6))
    assert b.far == 0.4  # 4 of the 10 normal readings flagged
    assert b.mar == pytest.approx(2 / 6)


def test_faults_found_false_events_and_delays() -> None:
    """Events open at 0, 4 and 9. The first fault (3-6) is found by the event at 4, one reading in;
    the second (11-12) is covered by the event that opened at 9, before it started, so it is not
    found, and that event counts as false, like the one at 0."""
    times = [1_000_000 + 2_000 * i for i in range(len(LABELS))]  # a reading every 2 s
    b = judge(FLAGGED, LABELS, times)
    assert (b.faults, b.found, b.false_events) == (2, 1, 2)
    assert b.delays_s == [2.0]
    assert judge(FLAGGED, LABELS).delays_s == [1.0]  # without times: readings
    late = [0] * 14 + [1, 0]  # opens two readings after the second fault's end
    assert (judge(late, LABELS).found, judge(late, LABELS, grace=1).found) == (0, 0)
    assert judge(late, LABELS).false_events == 1
    within = judge(late, LABELS, grace=2)
    assert (within.found, within.false_events, within.delays_s) == (1, 0, [3.0])


def test_counts_add_up_over_runs() -> None:
    a, b = judge(FLAGGED, LABELS), judge([0] * 5, [0] * 5)
    total = a.merge(b)
    assert (total.readings, total.tn, total.faults, total.found) == (21, 11, 2, 1)
    assert total.far == pytest.approx(4 / 15)
    assert Backtest().to_dict()["f1"] is None  # nothing flagged, nothing labelled: undefined
    assert Backtest().median_delay_s is None
    with pytest.raises(ValueError, match="one entry per reading"):
        judge([0, 1], [0])
