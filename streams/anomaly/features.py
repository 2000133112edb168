"""Online feature engineering for one sensor: a short window, the range seen so far, a daily profile.

All of it is bounded (a ring of ``window`` values, two floats of range, ``bins`` pairs of profile
statistics) and explicit: ``snapshot()`` returns plain JSON types and ``restore`` rebuilds the
object exactly (floats round-trip through JSON unchanged).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

DAY_MS = 86_400_000


class SensorWindow:
    """Last ``size`` values of a sensor, the range [lo, hi] of every value seen and its resolution.

    ``features(value)`` returns the window features *as if* ``value`` had been appended (pure);
    ``push(value)`` appends it. Features are ``segments`` means over the last ``size`` values,
    oldest first, scaled into [0, 1] by the range (including ``value``), as half-space trees expect.
    ``step`` is the smallest non-zero change between consecutive readings seen: the quantum of a
    coarsely quantised sensor (a flow logged in whole litres), negligible for a continuous one.
    """

    __slots__ = ("size", "segments", "long", "buf", "pos", "count", "lo", "hi", "cap", "step")

    def __init__(self, size: int = 8, segments: int = 4, long: int = 0) -> None:
        if size % segments or long % segments:
            msg = f"window sizes {size}, {long} must be multiples of segments {segments}"
            raise ValueError(msg)
        self.size = size
        self.segments = segments
        self.long = long
        self.cap = max(size, long)
        self.buf = [0.0] * self.cap
        self.pos = 0
        self.count = 0
        self.lo = 0.0
        self.hi = 0.0
        self.step = 0.0

    def values(self, value: float, size: int) -> list[float]:
        """The last ``size`` values ending with ``value``, oldest first (start padded with the first)."""
        n = min(self.count, size - 1)
        cap = self.cap
        out = [self.buf[(self.pos - n + i) % cap] for i in range(n)]
        out.append(value)
        if len(out) < size:
            out = [out[0]] * (size - len(out)) + out
        return out

    def features(self, value: float, prefix: str = "") -> dict[str, float]:
        lo, hi = (min(self.lo, value), max(self.hi, value)) if self.count else (value, value)
        span = hi - lo
        feats = {}
        for tag, size in (("m", self.size), ("l", self.long)):
            if not size:
                continue
            vals = self.values(value, size)
            step = size // self.segments
            for j in range(self.segments):
                seg = sum(vals[j * step : (j + 1) * step]) / step
                feats[f"{prefix}{tag}{j}"] = (seg - lo) / span if span > 0 else 0.5
        return feats

    def push(self, value: float) -> None:
        if self.count:
            d = abs(value - self.buf[(self.pos - 1) % self.cap])
            if d > 0 and (d < self.step or not self.step):
                self.step = d
        self.buf[self.pos] = value
        self.pos = (self.pos + 1) % self.cap
        if self.count:
            self.lo = min(self.lo, value)
            self.hi = max(self.hi, value)
        else:
            self.lo = self.hi = value
        self.count += 1

    def snapshot(self) -> dict[str, Any]:
        return {
            "size": self.size,
            "segments": self.segments,
            "long": self.long,
            "buf": list(self.buf),
            "pos": self.pos,
            "count": self.count,
            "lo": self.lo,
            "hi": self.hi,
            "step": self.step,
        }

    @classmethod
    def from_snapshot(cls, s: Mapping[str, Any]) -> SensorWindow:
        w = cls(int(s["size"]), int(s["segments"]), int(s["long"]))
        w.buf = [float(v) for v in s["buf"]]
        w.pos, w.count, w.lo, w.hi = int(s["pos"]), int(s["count"]), float(s["lo"]), float(s["hi"])
        w.step = float(s.get("step", 0.0))  # snapshots from before it learn it from the next readings
        return w


class DailyProfile:
    """Expected value by time of day: per-bin exponentially weighted mean and mean absolute deviation.

    ``residual(value, ts_ms)`` is ``|value - mean_bin| / (mad_bin + eps * mad_all)``: how unusual the
    value is for this time of day, in units of that bin's usual spread. With no daily rhythm the bins
    agree and it is an ordinary robust z-score. Machine telemetry has the same rhythms (shifts,
    ambient temperature, demand). A bin seen fewer than ``ready`` times is judged by the overall
    mean and spread instead. Updates are Huber-clipped at ``clip`` spreads (0: off).

    Learning rates are per reading for readings at least ``interval_ms`` apart (5-minute or
    1-minute telemetry: the memory in time grows with the sampling interval). A faster sensor's bin
    rate is per ``interval_ms`` of time instead: scaled by ``gap / interval_ms``, so a reading a
    second does not make a bin forget in a minute what took an hour to learn. So small a rate would
    leave a bin's first value in its mean for a long time, so a fast bin starts as a plain average
    (its rate is at least ``(1 - gap / interval_ms) / visits``; the overall spread it was seeded
    with counts as one visit). The overall mean and spread stay per reading. ``interval_ms=0``:
    per reading whatever the pace.
    """

    __slots__ = (
        "bins",
        "alpha",
        "alpha_all",
        "eps",
        "clip",
        "ready",
        "mean",
        "mad",
        "seen",
        "mean_all",
        "mad_all",
        "count",
        "interval_ms",
        "last_ts",
    )

    def __init__(
        self,
        bins: int = 24,
        alpha: float = 0.02,
        alpha_all: float = 0.01,
        eps: float = 0.1,
        clip: float = 0.0,
        ready: int = 3,
        interval_ms: int = 0,
    ) -> None:
        self.bins = bins
        self.alpha = alpha
        self.alpha_all = alpha_all
        self.eps = eps
        self.clip = clip
        self.ready = ready
        self.interval_ms = interval_ms
        self.mean = [0.0] * bins
        self.mad = [0.0] * bins
        self.seen = [0] * bins
        self.mean_all = 0.0
        self.mad_all = 0.0
        self.count = 0
        self.last_ts = 0  # event time of the last reading learnt (for the pace)

    def bin(self, ts_ms: int) -> int:
        return int((ts_ms % DAY_MS) * self.bins // DAY_MS)

    def expected(self, ts_ms: int) -> float:
        """The value this profile expects at this time of day (the overall mean for a young bin)."""
        b = self.bin(ts_ms)
        return self.mean[b] if self.seen[b] >= self.ready else self.mean_all

    def residual(self, value: float, ts_ms: int) -> float:
        if self.count < 2:
            return 0.0
        b = self.bin(ts_ms)
        if self.seen[b] < self.ready:
            return abs(value - self.mean_all) / (self.mad_all + 1e-12)
        return abs(value - self.mean[b]) / (self.mad[b] + self.eps * self.mad_all + 1e-12)

    @staticmethod
    def _clipped(d: float, scale: float, clip: float) -> float:
        if scale <= 0 or clip <= 0:
            return d
        c = clip * scale
        return c if d > c else (-c if d < -c else d)

    def _pace(self, ts_ms: int) -> float:
        """This reading's share of a reading-paced learning step: ``min(1, gap / interval_ms)``."""
        if not self.interval_ms or not self.count:
            return 1.0
        return min(1.0, max(ts_ms - self.last_ts, 0) / self.interval_ms)

    def learn(self, value: float, ts_ms: int, weight: float = 1.0) -> None:
        b = self.bin(ts_ms)
        pace = self._pace(ts_ms)
        self.last_ts = ts_ms
        if self.count == 0:
            self.mean_all = value
        else:
            a = self.alpha_all * weight
            d = self._clipped(value - self.mean_all, self.mad_all, self.clip)
            self.mean_all += a * d
            self.mad_all += a * (abs(d) - self.mad_all)
        if not self.seen[b]:
            self.mean[b] = value
            self.mad[b] = self.mad_all
        else:
            # pace 1: alpha; a fast reading: alpha * pace, but no less than a plain average's share
            a = weight * max(self.alpha * pace, (1.0 - pace) / (self.seen[b] + 1))
            d = self._clipped(value - self.mean[b], self.mad[b] + self.eps * self.mad_all, self.clip)
            self.mean[b] += a * d
            self.mad[b] += a * (abs(d) - self.mad[b])
        self.seen[b] += 1
        self.count += 1

    def snapshot(self) -> dict[str, Any]:
        return {
            "bins": self.bins,
            "alpha": self.alpha,
            "alpha_all": self.alpha_all,
            "eps": self.eps,
            "clip": self.clip,
            "ready": self.ready,
            "interval_ms": self.interval_ms,
            "last_ts": self.last_ts,
            "mean": list(self.mean),
            "mad": list(self.mad),
            "seen": list(self.seen),
            "mean_all": self.mean_all,
            "mad_all": self.mad_all,
            "count": self.count,
        }

    @classmethod
    def from_snapshot(cls, s: Mapping[str, Any]) -> DailyProfile:
        p = cls(
            int(s["bins"]),
            float(s["alpha"]),
            float(s["alpha_all"]),
            float(s["eps"]),
            float(s["clip"]),
            int(s["ready"]),
            int(s.get("interval_ms", 0)),  # snapshots from before the pace was kept: per reading
        )
        p.last_ts = int(s.get("last_ts", 0))
        p.mean = [float(v) for v in s["mean"]]
        p.mad = [float(v) for v in s["mad"]]
        p.seen = [int(v) for v in s["seen"]]
        p.mean_all, p.mad_all, p.count = float(s["mean_all"]), float(s["mad_all"]), int(s["count"])
        return p
