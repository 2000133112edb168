"""WindowStats (the aggregate behind every WindowResult) against numpy and NIST certified values."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streams.windows import Aggregator, Stats, WindowStats, percentile


def _fold(pairs: list[tuple[int, float]]) -> Stats:
    agg: Aggregator = WindowStats()  # the quix-streams shape: initialize / agg / result
    state = agg.initialize()
    for ts, v in pairs:
        state = agg.agg(state, v, ts)
    return agg.result(state)


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.tuples(st.integers(-(10**13), 10**13), st.floats(-1e6, 1e6, allow_nan=False)),
        min_size=1,
        max_size=60,
        unique_by=lambda p: p[0],
    )
)
def test_matches_numpy_in_any_order(pairs: list[tuple[int, float]]) -> None:
    r = _fold(pairs)  # arrival order, not time order
    t = np.array([p[0] for p in pairs], dtype=np.int64)
    v = np.array([p[1] for p in pairs])
    first, last = int(np.argmin(t)), int(np.argmax(t))
    assert (r.count, r.min, r.max) == (len(v), v.min(), v.max())
    assert (r.first_ts, r.last_ts, r.first, r.last) == (t[first], t[last], v[first], v[last])
    scale = float(np.abs(v).max()) + 1.0
    assert r.sum == pytest.approx(float(np.sum(v)), rel=1e-9, abs=1e-9 * scale * len(v))
    assert r.mean == pytest.approx(float(np.mean(v)), rel=1e-9, abs=1e-9 * scale)
    assert r.std == pytest.approx(float(np.std(v, ddof=1)) if len(v) > 1 else 0.0, rel=1e-9, abs=1e-9 * scale)
    for q, got in ((50, r.p50), (95, r.p95), (99, r.p99)):
        assert got == pytest.approx(float(np.percentile(v, q)), rel=1e-12, abs=1e-12 * scale)
    if len(v) < 2:
        assert r.slope is None
    else:
        tc = (t - t.min()).astype(float)
        want = float(np.sum((tc - tc.mean()) * (v - v.mean())) / np.sum((tc - tc.mean()) ** 2)) * 1000.0
        assert r.slope == pytest.approx(want, rel=1e-6, abs=1e-9 * scale)


def test_nist_strd_certified_std() -> None:
    """NIST StRD univariate summary statistics (https://www.itl.nist.gov/div898/strd/univ/), certified values.
    NumAcc1: 10000001, 10000003, 10000002 -> mean 10000002, sd 1.
    NumAcc3: 1000000.2 then 500 x (1000000.1, 1000000.3) -> mean 1000000.2, sd 0.1.
    NumAcc4: the same around 10000000.2 -> mean 10000000.2, sd 0.1."""
    r = _fold([(i, x) for i, x in enumerate([10000001.0, 10000003.0, 10000002.0])])
    assert (r.mean, r.std) == (10000002.0, 1.0)
    for base in (1000000.2, 10000000.2):
        values = [base] + [base - 0.1, base + 0.1] * 500
        values = [round(x, 1) for x in values]
        r = _fold(list(enumerate(values)))
        assert r.count == 1001
        assert r.mean == pytest.approx(base, rel=1e-15)
        assert r.std == pytest.approx(0.1, rel=1e-8)  # numAcc4 tests the digits naive sums lose


def test_slope_of_exact_line_is_per_second() -> None:
    # value = 3 + 0.5 * seconds, sampled at epoch-ms times around 2023
    t0 = 1_700_000_000_000
    r = _fold([(t0 + 250 * i, 3.0 + 0.5 * (250 * i) / 1000.0) for i in range(40)])
    assert r.slope == pytest.approx(0.5, rel=1e-12)
    assert _fold([(t0, 1.0), (t0 + 1, 2.0)]).slope == pytest.approx(1000.0)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.floats(-1e9, 1e9, allow_nan=False), min_size=1, max_size=50), st.floats(0, 100))
def test_percentile_is_numpy_linear(values: list[float], q: float) -> None:
    want = float(np.percentile(np.array(values), q))
    assert percentile(sorted(values), q) == pytest.approx(want, rel=1e-12, abs=1e-6)


def test_empty_is_an_error() -> None:
    with pytest.raises(ValueError):
        WindowStats().result(WindowStats().initialize())
    with pytest.raises(ValueError):
        percentile([], 50)


@settings(max_examples=100, deadline=None)
@given(
    st.lists(
        st.tuples(st.integers(0, 10**13), st.floats(-1e6, 1e6, allow_nan=False)), min_size=0, max_size=30
    )
)
def test_fold_is_agg_loop_bit_for_bit(pairs: list[tuple[int, float]]) -> None:
    agg = WindowStats()
    state = agg.initialize()
    for ts, v in pairs:
        state = agg.agg(state, v, ts)
    folded = agg.fold([p[0] for p in pairs], [p[1] for p in pairs])
    assert folded == state
    if pairs:
        assert agg.result(folded) == agg.result(state)
