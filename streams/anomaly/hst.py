"""Half-Space Trees with shared structure and compact per-model state.

Same algorithm, random draws and scores as :class:`river.anomaly.HalfSpaceTrees` (Tan, Ting & Liu
2011): a test compares the two on random streams. What differs is the storage. River keeps every
node as a Python object (about 1.25 MB for the default 10 trees of height 8); here the tree
*structure* (split feature and threshold per node) depends only on ``(features, n_trees, height,
seed, limits)`` and is built once per process and shared by every model with those parameters,
while each model owns only its node masses: two ``array('I')`` of ``n_trees * (2**(height+1)-1)``
counters (40 KB for the defaults). Nodes are stored in heap order (children of ``i`` are
``2i+1`` and ``2i+2``).
"""

from __future__ import annotations

import random
from array import array
from collections.abc import Mapping
from functools import lru_cache
from typing import Any

from river import anomaly

PADDING = 0.15  # as in river.anomaly.hst


class _Structure:
    """Split feature index and threshold of every node of every tree (leaves: feature -1)."""

    __slots__ = ("features", "feat", "thr", "n_nodes")

    def __init__(self, features: tuple[str, ...], feat: list[int], thr: list[float], n_nodes: int) -> None:
        self.features = features
        self.feat = feat
        self.thr = thr
        self.n_nodes = n_nodes


@lru_cache(maxsize=256)
def _structure(
    features: tuple[str, ...],
    n_trees: int,
    height: int,
    seed: int | None,
    limits: tuple[tuple[float, float], ...],
) -> _Structure:
    """Draw the trees exactly as river's ``make_padded_tree`` does (same RNG call order)."""
    rng = random.Random(seed)
    n_nodes = 2 ** (height + 1) - 1
    feat = [-1] * (n_trees * n_nodes)
    thr = [0.0] * (n_trees * n_nodes)
    index = {f: i for i, f in enumerate(features)}

    def build(lim: dict[str, tuple[float, float]], depth_left: int, base: int, node: int) -> None:
        if depth_left == 0:
            return
        on = rng.choices(population=list(lim.keys()), weights=[lim[i][1] - lim[i][0] for i in lim])[0]
        a, b = lim[on]
        at = rng.uniform(a + PADDING * (b - a), b - PADDING * (b - a))
        feat[base + node] = index[on]
        thr[base + node] = at
        tmp = lim[on]
        lim[on] = (tmp[0], at)
        build(lim, depth_left - 1, base, 2 * node + 1)
        lim[on] = tmp
        lim[on] = (at, tmp[1])
        build(lim, depth_left - 1, base, 2 * node + 2)
        lim[on] = tmp

    for t in range(n_trees):
        build(dict(zip(features, limits, strict=True)), height, t * n_nodes, 0)
    return _Structure(features, feat, thr, n_nodes)


class CompactHalfSpaceTrees(anomaly.base.AnomalyDetector):
    """River-protocol Half-Space Trees; scores in [0, 1], high = anomalous.

    Parameters mirror :class:`river.anomaly.HalfSpaceTrees`. ``limits`` maps a feature to its
    range (default ``(0, 1)``). The feature set is fixed by the first ``learn_one`` call.
    """

    def __init__(
        self,
        n_trees: int = 10,
        height: int = 8,
        window_size: int = 250,
        limits: Mapping[str, tuple[float, float]] | None = None,
        seed: int | None = None,
    ) -> None:
        self.n_trees = n_trees
        self.height = height
        self.window_size = window_size
        self.limits = dict(limits or {})
        self.seed = seed
        self._struct: _Structure | None = None
        self._l_mass = array("I")
        self._r_mass = array("I")
        self.counter = 0
        self._first_window = True
        self._cache: tuple[list[float | None], list[int]] | None = None

    # ------------------------------------------------------------------------------------ internals
    def _build(self, x: Mapping[str, float]) -> None:
        features = tuple(sorted(x))
        limits = tuple((float(a), float(b)) for a, b in (self.limits.get(f, (0.0, 1.0)) for f in features))
        self._struct = _structure(features, self.n_trees, self.height, self.seed, limits)
        size = self.n_trees * self._struct.n_nodes
        self._l_mass = array("I", bytes(4 * size))
        self._r_mass = array("I", bytes(4 * size))

    def _values(self, x: Mapping[str, Any]) -> list[float | None]:
        assert self._struct is not None
        return [x.get(f) for f in self._struct.features]

    @property
    def _max_score(self) -> float:
        return float(self.n_trees * self.window_size * (2 ** (self.height + 1) - 1))

    # ------------------------------------------------------------------------------- river protocol
    def _paths(self, vals: list[float | None]) -> list[int]:
        """Node indices from root to leaf in every tree, trees one after another."""
        s = self._struct
        assert s is not None
        feat, thr, lm, nn, depth = s.feat, s.thr, self._l_mass, s.n_nodes, self.height
        path: list[int] = []
        append = path.append
        for base in range(0, self.n_trees * nn, nn):
            node = 0
            for _ in range(depth):
                i = base + node
                append(i)
                v = vals[feat[i]]
                if v is None:  # river: follow the child with the larger current mass
                    node = 2 * node + 2 if lm[base + 2 * node + 1] < lm[base + 2 * node + 2] else 2 * node + 1
                else:
                    node = 2 * node + 1 if v < thr[i] else 2 * node + 2
            append(base + node)
        return path

    def _path_for(self, x: Mapping[str, Any]) -> list[int]:
        vals = self._values(x)
        cached = self._cache
        if cached is not None and cached[0] == vals:
            return cached[1]
        path = self._paths(vals)
        self._cache = (vals, path)
        return path

    def learn_one(self, x: Mapping[str, float]) -> None:
        if self._struct is None:
            self._build(x)
        lm = self._l_mass
        for i in self._path_for(x):
            lm[i] += 1
        self._cache = None  # masses changed: a cached path may no longer hold for missing features
        self.counter += 1
        if self.counter == self.window_size:
            self._r_mass, self._l_mass = self._l_mass, self._r_mass
            self._l_mass = array("I", bytes(4 * len(self._r_mass)))
            self._first_window = False
            self.counter = 0

    def score_one(self, x: Mapping[str, float]) -> float:
        if self._first_window or self._struct is None:
            return 0.0
        path = self._path_for(x)  # reused by the learn_one that usually follows
        rm = self._r_mass
        limit = 0.1 * self.window_size
        levels = self.height + 1
        score = 0.0
        for start in range(0, len(path), levels):
            weight = 1
            for i in path[start : start + levels]:
                mass = rm[i]
                score += mass * weight
                if mass < limit:
                    break
                weight *= 2
        return 1.0 - score / self._max_score

    # --------------------------------------------------------------------------------------- state
    def snapshot(self) -> dict[str, Any]:
        return {
            "n_trees": self.n_trees,
            "height": self.height,
            "window_size": self.window_size,
            "limits": {k: list(v) for k, v in self.limits.items()},
            "seed": self.seed,
            "features": list(self._struct.features) if self._struct else None,
            "l_mass": self._l_mass.tolist(),
            "r_mass": self._r_mass.tolist(),
            "counter": self.counter,
            "first_window": self._first_window,
        }

    @classmethod
    def from_snapshot(cls, state: Mapping[str, Any]) -> CompactHalfSpaceTrees:
        m = cls(
            state["n_trees"],
            state["height"],
            state["window_size"],
            {k: (float(a), float(b)) for k, (a, b) in state["limits"].items()},
            state["seed"],
        )
        if state["features"] is not None:
            m._build(dict.fromkeys(state["features"], 0.0))
            m._l_mass = array("I", state["l_mass"])
            m._r_mass = array("I", state["r_mass"])
        m.counter = int(state["counter"])
        m._first_window = bool(state["first_window"])
        return m

    def nbytes(self) -> int:
        """Bytes owned by this model (the shared structure is not counted)."""
        return self._l_mass.itemsize * (len(self._l_mass) + len(self._r_mass))
