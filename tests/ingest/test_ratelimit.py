"""Token bucket bounds, checked on a simulated clock (no real sleeping, no timing)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ingest.ratelimit import TokenBucket


class FakeClock:
    """A clock that only moves when someone waits, or when the test moves it (think time)."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.waits: list[float] = []

    def __call__(self) -> float:
        return self.now

    def wait(self, seconds: float) -> None:
        # Return early sometimes, like a Kafka poll that served an event: the bucket must keep waiting.
        step = seconds if seconds < 0.01 else seconds / 2
        self.waits.append(step)
        self.now += step


@settings(max_examples=200, deadline=None)
@given(
    rate=st.floats(min_value=1.0, max_value=1e6),
    capacity=st.floats(min_value=1.0, max_value=1e5),
    calls=st.lists(
        st.tuples(st.integers(min_value=1, max_value=5000), st.floats(min_value=0.0, max_value=0.5)),
        min_size=1,
        max_size=60,
    ),
)
def test_admitted_never_exceeds_capacity_plus_rate_times_elapsed(
    rate: float, capacity: float, calls: list[tuple[int, float]]
) -> None:
    clock = FakeClock()
    bucket = TokenBucket(rate, capacity, clock=clock, wait=clock.wait)
    start = clock.now
    admitted = 0
    for n, think in calls:
        clock.now += think
        waited = bucket.acquire(n)
        admitted += n
        assert waited >= 0.0
        elapsed = clock.now - start
        # The bound every call must respect when it returns (tiny slack for float rounding).
        assert admitted <= capacity + rate * elapsed + 1e-6 * max(1.0, admitted)


def test_long_run_rate_converges_to_the_limit() -> None:
    clock = FakeClock()
    bucket = TokenBucket(rate=500.0, capacity=100.0, clock=clock, wait=clock.wait)
    start = clock.now
    for _ in range(10_000):
        bucket.acquire(8)  # a scan of 8 values, sent as fast as the bucket lets it
    elapsed = clock.now - start
    # 80 000 values at 500/s with a 100-value head start: (80 000 - 100) / 500 = 159.8 s.
    assert elapsed == pytest.approx((80_000 - 100) / 500.0, rel=1e-6)


def test_no_wait_within_the_burst_and_a_request_larger_than_the_bucket_waits() -> None:
    clock = FakeClock()
    bucket = TokenBucket(rate=10.0, capacity=50.0, clock=clock, wait=clock.wait)
    assert bucket.acquire(50) == 0.0
    assert clock.waits == []
    waited = bucket.acquire(100)  # twice the capacity: admitted after 100 / 10 = 10 s
    assert waited == pytest.approx(10.0)
    # The debt is repaid by the time that passed, counted at the next call: the bucket is empty again.
    assert bucket.acquire(0) == 0.0
    assert bucket.tokens == pytest.approx(0.0, abs=1e-9)


def test_rejects_non_positive_rates() -> None:
    with pytest.raises(ValueError, match="rate"):
        TokenBucket(0.0)
    with pytest.raises(ValueError, match="capacity"):
        TokenBucket(1.0, capacity=0.0)
