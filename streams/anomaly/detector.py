"""The two detectors, behind river's own protocol (``learn_one(x)``, ``score_one(x) -> float``).

* :class:`SensorDetector` (one per machine and sensor): ``x = {"value": v, "ts_ms": t}``; the raw
  score is how far ``v`` is from what this sensor usually reads at this time of day.
* :class:`MachineDetector` (one per machine): ``x`` maps window features of all the machine's
  sensors (scaled into [0, 1]) to floats; half-space trees score how rarely the machine has been in
  that joint state recently.

Raw scores are not comparable between detectors; :mod:`streams.anomaly.calibrate` turns each into
a [0, 1] score. Both detectors have explicit, JSON-serialisable ``snapshot()`` state.
"""

from __future__ import annotations

import base64
import math
import pickle
from array import array
from collections.abc import Mapping
from typing import Any

import numpy as np
import numpy.typing as npt
from river import anomaly

from streams.anomaly.exceptions import SnapshotError
from streams.anomaly.features import DailyProfile
from streams.anomaly.hst import CompactHalfSpaceTrees


def squash(r: float, scale: float, power: float) -> float:
    """``q / (1 + q)`` with ``q = (r / scale) ** power``: 0 for 0, towards 1 for large ``r``. A residual
    so large that ``q`` is past the largest float (from a corrupt cell such as 1e300) is 1."""
    try:
        q = float((r / scale) ** power)
    except OverflowError:
        return 1.0
    return 1.0 if q == math.inf else q / (q + 1.0)


class SensorDetector(anomaly.base.AnomalyDetector):
    """Univariate detector: squashed time-of-day residual ``q / (1 + q)``, ``q = (r / squash)**power``."""

    def __init__(
        self,
        bins: int = 24,
        alpha: float = 0.02,
        squash: float = 5.0,
        power: float = 2.0,
        clip: float = 0.0,
        ready: int = 3,
        interval_ms: int = 0,
    ) -> None:
        self.bins = bins
        self.alpha = alpha
        self.squash = squash
        self.power = power
        self.clip = clip
        self.ready = ready
        self.interval_ms = interval_ms
        self.profile = DailyProfile(bins, alpha, clip=clip, ready=ready, interval_ms=interval_ms)

    def residual(self, x: Mapping[str, float]) -> float:
        """Distance from the time-of-day expectation, in spreads (unbounded)."""
        return self.profile.residual(x["value"], int(x.get("ts_ms", 0)))

    def squash_residual(self, r: float) -> float:
        return squash(r, self.squash, self.power)

    def score_one(self, x: Mapping[str, float]) -> float:
        return self.squash_residual(self.residual(x))

    def learn_one(self, x: Mapping[str, float], w: float = 1.0) -> None:
        self.profile.learn(x["value"], int(x.get("ts_ms", 0)), w)

    def snapshot(self) -> dict[str, Any]:
        return {"squash": self.squash, "power": self.power, "profile": self.profile.snapshot()}

    @classmethod
    def from_snapshot(cls, s: Mapping[str, Any]) -> SensorDetector:
        p = DailyProfile.from_snapshot(s["profile"])
        d = cls(p.bins, p.alpha, float(s["squash"]), float(s["power"]), p.clip, p.ready, p.interval_ms)
        d.profile = p
        return d


class MachineDetector(anomaly.base.AnomalyDetector):
    """Multivariate detector: half-space trees over the machine's window features.

    ``backend="compact"`` (default) gives the same scores as ``river.anomaly.HalfSpaceTrees`` with a
    fraction of the memory; ``backend="river"`` uses river's class itself (its snapshot is a
    base64 pickle).
    """

    def __init__(
        self,
        n_trees: int = 10,
        height: int = 8,
        window_size: int = 250,
        seed: int | None = 42,
        backend: str = "compact",
    ) -> None:
        self.n_trees = n_trees
        self.height = height
        self.window_size = window_size
        self.seed = seed
        self.backend = backend
        self.model: Any
        if backend == "compact":
            self.model = CompactHalfSpaceTrees(n_trees, height, window_size, seed=seed)
        elif backend == "river":
            self.model = anomaly.HalfSpaceTrees(
                n_trees=n_trees, height=height, window_size=window_size, seed=seed
            )
        else:
            msg = f"unknown half-space trees backend {backend!r} (compact or river)"
            raise ValueError(msg)

    @property
    def ready(self) -> bool:
        """False until the trees have a full reference window (they score 0 until then)."""
        return not self.model._first_window

    def score_one(self, x: Mapping[str, float]) -> float:
        return float(self.model.score_one(x))

    def learn_one(self, x: Mapping[str, float]) -> None:
        self.model.learn_one(x)

    def snapshot(self) -> dict[str, Any]:
        if self.backend == "compact":
            return {"backend": "compact", "model": self.model.snapshot()}
        blob = pickle.dumps(self.model, protocol=pickle.HIGHEST_PROTOCOL)
        return {
            "backend": "river",
            "n_trees": self.n_trees,
            "height": self.height,
            "window_size": self.window_size,
            "seed": self.seed,
            "pickle": base64.b64encode(blob).decode("ascii"),
        }

    @classmethod
    def from_snapshot(cls, s: Mapping[str, Any]) -> MachineDetector:
        if s.get("backend") == "compact":
            m = CompactHalfSpaceTrees.from_snapshot(s["model"])
            d = cls(m.n_trees, m.height, m.window_size, m.seed, "compact")
            d.model = m
            return d
        if s.get("backend") == "river":
            d = cls(s["n_trees"], s["height"], s["window_size"], s["seed"], "river")
            try:
                # our own snapshot, checksummed by the envelope (streams.anomaly.state)
                d.model = pickle.loads(base64.b64decode(s["pickle"]))  # noqa: S301
            except Exception as exc:
                msg = f"cannot restore river half-space trees: {exc}"
                raise SnapshotError(msg) from exc
            return d
        msg = f"unknown machine detector backend in snapshot: {s.get('backend')!r}"
        raise SnapshotError(msg)

    def nbytes(self) -> int:
        if self.backend == "compact":
            return int(self.model.nbytes())
        return len(pickle.dumps(self.model))


class SequenceDetector(anomaly.base.AnomalyDetector):
    """Univariate detector: how rarely the last ``length`` readings, quantised, have occurred as a sequence.

    Each reading is quantised into ``levels`` bins of the range seen so far; the last ``length`` bins
    form a context whose occurrences are counted in a fixed table of ``table_size`` saturating
    16-bit counters (hashed; a collision can only make a context look more familiar). The raw score
    is ``1 / (1 + count)``: 1 for a never-seen sequence. Bounded memory (2 bytes per slot) and a
    cheap update; it catches pattern changes inside the usual range, which the range and
    time-of-day checks do not.
    """

    def __init__(self, levels: int = 16, length: int = 5, table_size: int = 4096) -> None:
        self.levels = levels
        self.length = length
        self.table_size = table_size
        self.counts = array("H", bytes(2 * table_size))
        self.history: list[int] = []
        self.lo = 0.0
        self.hi = 0.0
        self.seen = 0

    def _level(self, v: float) -> int:
        lo, hi = (min(self.lo, v), max(self.hi, v)) if self.seen else (v, v)
        span = hi - lo
        q = int((v - lo) / span * self.levels) if span > 0 else 0
        return min(q, self.levels - 1)

    def _slot(self, context: list[int]) -> int:
        h = 0
        for q in context:
            h = (h * 1_000_003 + q + 1) % 2_305_843_009_213_693_951  # Mersenne prime 2**61 - 1
        return h % self.table_size

    def _context(self, v: float) -> list[int]:
        return [*self.history[-(self.length - 1) :], self._level(v)] if self.length > 1 else [self._level(v)]

    def score_one(self, x: Mapping[str, float]) -> float:
        return 1.0 / (1.0 + self.counts[self._slot(self._context(x["value"]))])

    def learn_one(self, x: Mapping[str, float], w: float = 1.0) -> None:
        v = x["value"]
        context = self._context(v)
        if w > 0:
            slot = self._slot(context)
            if self.counts[slot] < 65535:
                self.counts[slot] += 1
        self.history = context[-(self.length - 1) :] if self.length > 1 else []
        if self.seen:
            self.lo, self.hi = min(self.lo, v), max(self.hi, v)
        else:
            self.lo = self.hi = v
        self.seen += 1

    def snapshot(self) -> dict[str, Any]:
        return {
            "levels": self.levels,
            "length": self.length,
            "table_size": self.table_size,
            "counts": base64.b64encode(self.counts.tobytes()).decode("ascii"),
            "history": list(self.history),
            "lo": self.lo,
            "hi": self.hi,
            "seen": self.seen,
        }

    @classmethod
    def from_snapshot(cls, s: Mapping[str, Any]) -> SequenceDetector:
        d = cls(int(s["levels"]), int(s["length"]), int(s["table_size"]))
        d.counts = array("H")
        d.counts.frombytes(base64.b64decode(s["counts"]))
        if len(d.counts) != d.table_size:
            msg = "sequence detector snapshot has a table of the wrong size"
            raise SnapshotError(msg)
        d.history = [int(q) for q in s["history"]]
        d.lo, d.hi, d.seen = float(s["lo"]), float(s["hi"]), int(s["seen"])
        return d

    def nbytes(self) -> int:
        return self.counts.itemsize * len(self.counts)


class TransitionDetector(anomaly.base.AnomalyDetector):
    """Univariate detector: a jump between two bands of the sensor's range that it has never made.

    The range seen so far (grown with ``headroom`` of its span whenever a value leaves it) is cut
    into bands on several grids at once (``min_levels`` to ``max_levels`` equal bands). On each grid
    a reading falls in a band; the step from the previous reading's band to this one is a transition,
    remembered in a ``levels x levels`` bit table. The raw score is the fraction of grids on which
    this transition is new: 1 when the jump is new however coarsely the range is cut, a small value
    when only a fine grid has not seen it. Several grids instead of one make the score graded and
    keep it from depending on where one grid's band edges fall.

    A score is only given if no transition was new in the ``rest`` readings before: a burst of new
    transitions (a new regime) alerts once. New transitions are always remembered, also while the
    machine is flagged: novelty happens once by definition. Memory: ``sum(levels**2)`` bits (78
    bytes of table for 5..12 bands), constant.
    """

    def __init__(
        self, min_levels: int = 5, max_levels: int = 12, headroom: float = 0.1, rest: int = 30
    ) -> None:
        if not 2 <= min_levels <= max_levels:
            msg = f"transition detector needs 2 <= min_levels <= max_levels (got {min_levels}, {max_levels})"
            raise ValueError(msg)
        self.min_levels = min_levels
        self.max_levels = max_levels
        self.headroom = headroom
        self.rest = rest
        self.grids = tuple(range(min_levels, max_levels + 1))
        self.seen = [0] * len(self.grids)  # per grid, bit (prev * levels + cur) set once made
        self.prev: list[int] | None = None  # band of the previous reading on each grid (None: no predecessor)
        self.count = 0  # readings learnt
        self.lo = 0.0
        self.hi = 0.0
        self.since_new = rest + 1  # readings since a transition was last new
        self._judged: tuple[float, tuple[float, list[int], list[int]]] | None = None  # score_one's work

    def _range(self, v: float) -> tuple[float, float]:
        if not self.count:
            return v, v
        lo, hi = self.lo, self.hi
        if v < lo or v > hi:
            span = max(hi - lo, abs(v) * 1e-9, 1e-12)
            if v < lo:
                lo = v - self.headroom * max(hi - v, span)
            if v > hi:
                hi = v + self.headroom * max(v - lo, span)
        return lo, hi

    def _bands(self, v: float, lo: float, hi: float) -> list[int]:
        span = hi - lo
        if span <= 0:
            return [0] * len(self.grids)
        pos = (v - lo) / span
        return [min(max(int(pos * n), 0), n - 1) for n in self.grids]

    def _new(self, v: float) -> tuple[float, list[int], list[int]]:
        """(fraction of grids where the transition is new, bands of ``v``, bits to set per grid)."""
        lo, hi = self._range(v)
        bands = self._bands(v, lo, hi)
        if self.prev is None:
            return 0.0, bands, [0] * len(self.grids)
        bits = []
        new = 0
        for i, n in enumerate(self.grids):
            bit = 1 << (self.prev[i] * n + bands[i])
            if not self.seen[i] & bit:
                new += 1
            bits.append(bit)
        return new / len(self.grids), bands, bits

    def score_one(self, x: Mapping[str, float]) -> float:
        v = x["value"]
        self._judged = (v, self._new(v))  # learn_one of the same value reuses it
        frac = self._judged[1][0]
        return frac if self.since_new > self.rest else 0.0

    def learn_one(self, x: Mapping[str, float]) -> None:
        v = x["value"]
        judged, self._judged = self._judged, None
        frac, bands, bits = judged[1] if judged is not None and judged[0] == v else self._new(v)
        self.lo, self.hi = self._range(v)
        for i, bit in enumerate(bits):
            self.seen[i] |= bit
        self.prev = bands
        self.count += 1
        self.since_new = 0 if frac > 0 else self.since_new + 1

    def break_sequence(self) -> None:
        """The next reading does not follow the last one (the machine was stopped in between): it
        starts a new sequence instead of making a transition."""
        self.prev = None
        self._judged = None

    def snapshot(self) -> dict[str, Any]:
        return {
            "min_levels": self.min_levels,
            "max_levels": self.max_levels,
            "headroom": self.headroom,
            "rest": self.rest,
            "seen": [format(b, "x") for b in self.seen],
            "prev": self.prev,
            "count": self.count,
            "lo": self.lo,
            "hi": self.hi,
            "since_new": self.since_new,
        }

    @classmethod
    def from_snapshot(cls, s: Mapping[str, Any]) -> TransitionDetector:
        d = cls(int(s["min_levels"]), int(s["max_levels"]), float(s["headroom"]), int(s["rest"]))
        if len(s["seen"]) != len(d.grids):
            msg = "transition detector snapshot has the wrong number of grids"
            raise SnapshotError(msg)
        d.seen = [int(b, 16) for b in s["seen"]]
        d.prev = None if s["prev"] is None else [int(q) for q in s["prev"]]
        d.count, d.lo, d.hi, d.since_new = (
            int(s["count"]),
            float(s["lo"]),
            float(s["hi"]),
            int(s["since_new"]),
        )
        return d

    def nbytes(self) -> int:
        return sum(n * n for n in self.grids) // 8 + 8 * len(self.grids)


class RelationDetector(anomaly.base.AnomalyDetector):
    """Multivariate detector: how far each sensor is from what the machine's other sensors predict.

    ``x`` maps each of the machine's sensors (``names``, fixed at creation) to its deviation from
    its time-of-day normal. The detector keeps their mean and covariance (exponentially weighted at
    ``alpha``, starting as plain averages) and, from its inverse ``P``, the leave-one-out regression
    of every sensor on all the others at once: sensor ``j``'s residual in standard deviations is
    ``(P (x - mean))_j / sqrt(P_jj)`` (a Gaussian conditional; ``ridge`` of each variance is added to
    the diagonal so that collinear sensors stay invertible). The raw score of a sensor is that
    residual squashed like :class:`SensorDetector`'s, and it is given only for a sensor the others
    explain: at least ``min_r2`` of its variance (``R² = 1 - 1 / (P_jj C_jj)``). On a pump, flow,
    pressure and motor current follow the speed together; motor current up while flow and pressure
    are unchanged is a broken relation, though each value is within its usual swing. Sensors that
    move independently (most plant telemetry) are left to the other detectors. ``P`` is refreshed
    every ``every`` readings learnt. Memory: two ``d x d`` matrices and a vector of ``d`` floats.
    """

    def __init__(
        self,
        names: list[str],
        alpha: float = 0.001,
        min_r2: float = 0.3,
        ridge: float = 0.01,
        every: int = 10,
        squash: float = 5.0,
        power: float = 2.0,
    ) -> None:
        if len(names) < 2:
            msg = f"a relation detector needs at least two sensors (got {names})"
            raise ValueError(msg)
        self.names = list(names)
        self.alpha = alpha
        self.min_r2 = min_r2
        self.ridge = ridge
        self.every = every
        self.squash = squash
        self.power = power
        d = len(self.names)
        self.mean = np.zeros(d)
        self.cov = np.zeros((d, d))
        self.prec: npt.NDArray[np.float64] | None = None  # P, the inverse of the (ridged) covariance
        self.count = 0  # readings learnt
        self.since = 0  # readings learnt since P was computed

    def vector(self, x: Mapping[str, float]) -> npt.NDArray[np.float64] | None:
        """The reading as a vector in ``names`` order; None if a sensor is missing."""
        try:
            return np.array([x[k] for k in self.names], dtype=float)
        except KeyError:
            return None

    @property
    def ready(self) -> bool:
        return self.prec is not None and self.count >= 2 * len(self.names) + 10

    def residuals(self, x: Mapping[str, float]) -> dict[str, float]:
        """|residual| in standard deviations per explained sensor (0 for the others); empty until
        ready or if a sensor is missing."""
        v = self.vector(x)
        if v is None or not self.ready:
            return {}
        assert self.prec is not None
        diag = np.diag(self.prec)
        z = np.abs(self.prec @ (v - self.mean)) / np.sqrt(diag)
        explained = 1.0 - 1.0 / np.maximum(diag * np.diag(self.cov), 1.0)
        z = np.where(explained >= self.min_r2, z, 0.0)
        return {k: float(r) for k, r in zip(self.names, z, strict=True)}

    def squash_residual(self, z: float) -> float:
        return squash(z, self.squash, self.power)

    def raw_scores(self, x: Mapping[str, float]) -> dict[str, float]:
        """Raw score per explained sensor, squashed like :class:`SensorDetector`'s (0 for the others)."""
        return {k: self.squash_residual(z) for k, z in self.residuals(x).items()}

    def score_one(self, x: Mapping[str, float]) -> float:
        return max(self.raw_scores(x).values(), default=0.0)

    def learn_one(self, x: Mapping[str, float], w: float = 1.0) -> None:
        v = self.vector(x)
        if v is None or w <= 0:
            return
        self.count += 1
        a = w * max(self.alpha, 1.0 / self.count)
        d = v - self.mean
        self.mean += a * d
        self.cov = (1.0 - a) * (self.cov + a * np.outer(d, d))
        self.since += 1
        if self.prec is None or self.since >= self.every:
            self.since = 0
            self._invert()

    def _invert(self) -> None:
        c = self.cov + np.diag(self.ridge * np.diag(self.cov) + 1e-12)
        try:
            self.prec = np.linalg.inv(c)
        except np.linalg.LinAlgError:  # pragma: no cover - the ridge keeps c positive definite
            self.prec = None

    def snapshot(self) -> dict[str, Any]:
        return {
            "names": list(self.names),
            "alpha": self.alpha,
            "min_r2": self.min_r2,
            "ridge": self.ridge,
            "every": self.every,
            "squash": self.squash,
            "power": self.power,
            "mean": [float(v) for v in self.mean],
            "cov": [[float(v) for v in row] for row in self.cov],
            "count": self.count,
            "since": self.since,
            # P was computed from the covariance of its last refresh, not today's: stored as it is
            "prec": None if self.prec is None else [[float(v) for v in row] for row in self.prec],
        }

    @classmethod
    def from_snapshot(cls, s: Mapping[str, Any]) -> RelationDetector:
        d = cls(
            [str(k) for k in s["names"]],
            float(s["alpha"]),
            float(s["min_r2"]),
            float(s["ridge"]),
            int(s["every"]),
            float(s["squash"]),
            float(s["power"]),
        )
        n = len(d.names)
        d.mean = np.array(s["mean"], dtype=float)
        d.cov = np.array(s["cov"], dtype=float)
        if d.mean.shape != (n,) or d.cov.shape != (n, n):
            msg = "relation detector snapshot has the wrong shape"
            raise SnapshotError(msg)
        d.count, d.since = int(s["count"]), int(s["since"])
        if s["prec"] is not None:
            d.prec = np.array(s["prec"], dtype=float)
            if d.prec.shape != (n, n):
                msg = "relation detector snapshot has the wrong shape"
                raise SnapshotError(msg)
        return d

    def nbytes(self) -> int:
        return int(self.mean.nbytes + self.cov.nbytes + (self.prec.nbytes if self.prec is not None else 0))
