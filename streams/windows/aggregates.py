"""Window aggregates in the quix-streams shape: ``initialize() -> state``, ``agg(state, value, ts) -> state``,
``result(state)``.

``WindowStats`` computes every statistic a ``WindowResult`` carries in one pass:

* count, sum (``math.fsum``, exactly rounded), mean (= sum / count), min, max;
* std: sample standard deviation (ddof=1) from Welford's running M2; 0.0 when count < 2;
* first/last: values at the smallest/largest timestamp;
* p50/p95/p99: exact, numpy's default ``linear`` interpolation (Hyndman & Fan type 7) over the window's
  values. Exactness costs memory: every value must be at hand when the window is emitted or re-emitted.
  The operator keeps each record (ts, value) in its key's buffer until the last window containing it is
  purged: about 70 bytes per record in memory (an int, a float and two list slots), ~25 bytes in the JSON
  snapshot (see benchmarks/results/windows.json). A sketch would bound this per window but cannot be exact;
  at factory sensor rates (1-100 Hz, windows of seconds to minutes) exact is affordable;
* slope: least-squares slope of value over time, in value units per second, from a Welford-style running
  co-moment of (ts, value) (numerically stable for epoch-ms timestamps); None when count < 2 or all
  timestamps are equal.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, NamedTuple, Protocol, TypeVar

S = TypeVar("S")
R_co = TypeVar("R_co", covariant=True)


class Aggregator(Protocol[S, R_co]):
    """An incremental aggregate over (value, ts) pairs."""

    def initialize(self) -> S: ...

    def agg(self, state: S, value: float, ts: int) -> S: ...

    def result(self, state: S) -> R_co: ...


class Stats(NamedTuple):
    """The statistics of one window, in ``WindowResult`` field order."""

    count: int  # type: ignore[assignment]  # shadows tuple.count on purpose: WindowResult field name
    sum: float
    mean: float
    min: float
    max: float
    std: float
    first_ts: int
    last_ts: int
    first: float
    last: float
    p50: float | None
    p95: float | None
    p99: float | None
    slope: float | None


def percentile(sorted_values: Sequence[float], q: float) -> float:
    """The q-th percentile (0..100) of sorted values, numpy's default ``linear`` method."""
    n = len(sorted_values)
    if n == 0:
        msg = "percentile of no values"
        raise ValueError(msg)
    h = (n - 1) * (q / 100.0)
    lo = math.floor(h)
    if lo >= n - 1:
        return float(sorted_values[-1])
    a = sorted_values[lo]
    b = sorted_values[lo + 1]
    return float(a + (b - a) * (h - lo))


# State layout of WindowStats (a flat list: cheap to update, no per-record objects).
_N, _MEAN, _M2, _MIN, _MAX, _FTS, _FIRST, _LTS, _LAST, _T0, _MT, _M2T, _CTV, _VALUES = range(14)


class WindowStats:
    """All ``WindowResult`` statistics; see the module docstring for definitions."""

    percentiles: tuple[float, float, float] = (50.0, 95.0, 99.0)

    def initialize(self) -> list[Any]:
        inf = math.inf
        return [0, 0.0, 0.0, inf, -inf, inf, 0.0, -inf, 0.0, None, 0.0, 0.0, 0.0, []]

    def agg(self, state: list[Any], value: float, ts: int) -> list[Any]:
        n = state[_N] + 1
        state[_N] = n
        d = value - state[_MEAN]
        mean = state[_MEAN] + d / n
        state[_MEAN] = mean
        state[_M2] += d * (value - mean)
        if value < state[_MIN]:
            state[_MIN] = value
        if value > state[_MAX]:
            state[_MAX] = value
        if ts < state[_FTS]:
            state[_FTS] = ts
            state[_FIRST] = value
        if ts > state[_LTS]:
            state[_LTS] = ts
            state[_LAST] = value
        t0 = state[_T0]
        if t0 is None:  # times relative to the first one: exact ints, well-conditioned co-moments
            t0 = state[_T0] = ts
        dt = (ts - t0) - state[_MT]
        state[_MT] += dt / n
        state[_M2T] += dt * ((ts - t0) - state[_MT])
        state[_CTV] += dt * (value - mean)
        state[_VALUES].append(value)
        return state

    def fold(self, tss: Sequence[int], values: Sequence[float]) -> list[Any]:
        """``initialize`` then ``agg`` over pairs (tss[i], values[i]), inlined: same arithmetic, same bits."""
        if len(tss) != len(values):
            msg = "fold needs as many timestamps as values"
            raise ValueError(msg)
        state = self.initialize()
        if not tss:
            return state
        n = 0
        mean = m2 = mt = m2t = ctv = 0.0
        lo, hi = math.inf, -math.inf
        fts: float = math.inf
        lts: float = -math.inf
        first = last = 0.0
        t0 = tss[0]
        for ts, value in zip(tss, values, strict=True):
            n += 1
            d = value - mean
            mean = mean + d / n
            m2 += d * (value - mean)
            if value < lo:
                lo = value
            if value > hi:
                hi = value
            if ts < fts:
                fts = ts
                first = value
            if ts > lts:
                lts = ts
                last = value
            dt = (ts - t0) - mt
            mt += dt / n
            m2t += dt * ((ts - t0) - mt)
            ctv += dt * (value - mean)
        state[:] = [n, mean, m2, lo, hi, fts, first, lts, last, t0, mt, m2t, ctv, list(values)]
        return state

    def result(self, state: list[Any]) -> Stats:
        n: int = state[_N]
        if n == 0:
            msg = "result of an empty window"
            raise ValueError(msg)
        values = sorted(state[_VALUES])
        total = math.fsum(values)
        std = math.sqrt(state[_M2] / (n - 1)) if n > 1 else 0.0
        m2t = state[_M2T]
        slope = state[_CTV] / m2t * 1000.0 if n > 1 and m2t > 0.0 else None
        p50, p95, p99 = (percentile(values, q) for q in self.percentiles)
        return Stats(
            count=n,
            sum=total,
            mean=total / n,
            min=state[_MIN],
            max=state[_MAX],
            std=std,
            first_ts=int(state[_FTS]),
            last_ts=int(state[_LTS]),
            first=state[_FIRST],
            last=state[_LAST],
            p50=p50,
            p95=p95,
            p99=p99,
            slope=slope,
        )
