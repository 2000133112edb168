"""Online calibration of raw detector scores into [0, 1].

:class:`Likelihood` follows the anomaly likelihood of Ahmad, Lavin, Purdy & Agha (2017),
"Unsupervised real-time anomaly detection for streaming data", Neurocomputing 262: the mean of the
last ``window`` raw scores is compared with the long-run distribution of that mean (a normal with
exponentially weighted mean and variance, floored), and the tail probability ``p`` becomes
``-log10(p) / 10`` (so 0.5 means p = 1e-5). A detector whose raw scores are always high (noisy
signal) is thereby judged against itself; only a change in how surprised it is counts.

:func:`range_exceedance` scores a value outside the range of everything seen so far.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

SQRT2 = math.sqrt(2.0)
P_MIN = 1e-10


class Likelihood:
    __slots__ = (
        "window",
        "alpha",
        "learn_period",
        "mean_floor",
        "var_floor",
        "ring",
        "pos",
        "total",
        "mean",
        "var",
        "count",
    )

    def __init__(
        self,
        window: int = 10,
        alpha: float = 1 / 2000,
        learn_period: int = 150,
        mean_floor: float = 0.03,
        var_floor: float = 0.0003,
    ) -> None:
        self.window = window
        self.alpha = alpha
        self.learn_period = learn_period
        self.mean_floor = mean_floor
        self.var_floor = var_floor
        self.ring: list[float] = []
        self.pos = 0
        self.total = 0.0
        self.mean = 0.0
        self.var = 0.0
        self.count = 0

    def step(self, raw: float) -> float:
        """Add a raw score; return its calibrated score in [0, 1]."""
        if len(self.ring) < self.window:
            self.ring.append(raw)
        else:
            self.total -= self.ring[self.pos]
            self.ring[self.pos] = raw
            self.pos = (self.pos + 1) % self.window
        self.total += raw
        avg = self.total / len(self.ring)
        score = 0.0
        if self.count >= self.learn_period:
            mu = max(self.mean, self.mean_floor)
            sd = math.sqrt(max(self.var, self.var_floor))
            z = (avg - mu) / sd
            if z > 0:
                p = max(0.5 * math.erfc(z / SQRT2), P_MIN)
                score = -math.log10(p) / 10.0
            else:
                score = 0.0301029995663981  # p = 0.5
        self.count += 1
        a = max(self.alpha, 1.0 / self.count)
        d = avg - self.mean
        self.mean += a * d
        self.var = (1.0 - a) * (self.var + a * d * d)
        return score

    def resize(self, window: int) -> None:
        """Average the last ``window`` raw scores from now on, keeping the most recent ones; the
        distribution of the average starts afresh (a longer average varies less), and so does the
        learn period."""
        if window < 1:
            msg = f"a calibration window needs at least one score (got {window})"
            raise ValueError(msg)
        full = len(self.ring) == self.window
        ordered = self.ring[self.pos :] + self.ring[: self.pos] if full else list(self.ring)  # oldest first
        self.window = window
        self.ring = ordered[-window:]
        self.pos = 0
        self.total = sum(self.ring)
        self.mean = self.var = 0.0
        self.count = 0

    def snapshot(self) -> dict[str, Any]:
        return {
            "window": self.window,
            "alpha": self.alpha,
            "learn_period": self.learn_period,
            "mean_floor": self.mean_floor,
            "var_floor": self.var_floor,
            "ring": list(self.ring),
            "pos": self.pos,
            "total": self.total,
            "mean": self.mean,
            "var": self.var,
            "count": self.count,
        }

    @classmethod
    def from_snapshot(cls, s: Mapping[str, Any]) -> Likelihood:
        c = cls(
            int(s["window"]),
            float(s["alpha"]),
            int(s["learn_period"]),
            float(s["mean_floor"]),
            float(s["var_floor"]),
        )
        c.ring = [float(v) for v in s["ring"]]
        c.pos, c.total, c.mean, c.var, c.count = (
            int(s["pos"]),
            float(s["total"]),
            float(s["mean"]),
            float(s["var"]),
            int(s["count"]),
        )
        return c


def range_exceedance(value: float, lo: float, hi: float, tolerance: float, step: float = 0.0) -> float:
    """0 inside ``[lo - tol*span, hi + tol*span]``; outside, 0.5 growing to 1 with the excess.

    ``step``: the sensor's resolution. The excess counts only beyond one step: for a sensor that reads
    in coarse steps, a value one step past the range is the smallest move it can make (a new record
    of its noise), not a jump."""
    span = hi - lo
    if span <= 0:
        return 0.0
    margin = tolerance * span
    if value > hi + margin:
        excess = value - hi - step
    elif value < lo - margin:
        excess = lo - value - step
    else:
        return 0.0
    if excess <= margin:
        return 0.0
    return min(1.0, 0.5 + 0.5 * excess / span)
