"""Shewhart charts for measurements: individuals + moving range, X̄-R and X̄-S.

Estimates follow qcc's defaults (Scrucca 2004; Montgomery, *Introduction to Statistical Quality
Control*, ch. 6): the center is the size-weighted grand mean; sigma is MR̄/d2(2) for individuals, the
unweighted average of Rᵢ/d2(nᵢ) for X̄-R and of Sᵢ/c4(nᵢ) for X̄-S (for a fixed n these are R̄/d2
and S̄/c4). Limits are center ± 3 sigma/√nᵢ; the R chart is d2σ ± 3d3σ and the S chart
c4σ ± 3σ√(1 − c4²), both clipped at 0, per subgroup size (so variable n gives stepped limits).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from typing import Any

from streams.spc.charts import (
    Chart,
    Point,
    SecondaryPoint,
    Subgroup,
    mean_moving_range,
    need_baseline,
    zscore,
)
from streams.spc.constants import c4, d2, d3

logger = logging.getLogger(__name__)


def _warn_zero(kind: str, sigma: float) -> None:
    if sigma == 0.0:
        logger.warning("%s chart: estimated sigma is 0 (constant baseline); every change will signal", kind)


def _weighted_mean(kind: str, baseline: Sequence[Subgroup]) -> float:
    need_baseline(kind, "samples", len(baseline), 1)
    total = sum(s.n for s in baseline)
    return math.fsum(s.n * s.mean for s in baseline) / total


class IndividualsChart(Chart):
    """I-MR: individual values (or window means) with a moving range chart of span 2."""

    kind = "imr"
    primary = "i"
    secondary = "mr"

    def _estimate(self, baseline: Sequence[Subgroup]) -> dict[str, float]:
        cfg = self.config
        x = [s.mean for s in baseline]
        if cfg.sigma is None:
            need_baseline(self.kind, "values", len(x), 2)
            mr_bar, pairs = mean_moving_range(x, self.baseline_breaks)
            need_baseline(self.kind, "consecutive values (moving ranges)", pairs, 1)
            sigma = mr_bar / d2(2)
            _warn_zero(self.kind, sigma)
        else:
            sigma = cfg.sigma
        center = (
            cfg.target if cfg.target is not None else _weighted_mean(self.kind, [Subgroup(1, v) for v in x])
        )
        mr_center = d2(2) * sigma
        return {
            "center": center,
            "sigma": sigma,
            "lcl": center - 3.0 * sigma,
            "ucl": center + 3.0 * sigma,
            "mr_center": mr_center,
            "mr_lcl": max(0.0, mr_center - 3.0 * d3(2) * sigma),
            "mr_ucl": mr_center + 3.0 * d3(2) * sigma,
        }

    def _after_limits(self) -> None:
        lim = self.limits
        assert lim is not None
        self._c = (
            lim["center"],
            lim["sigma"],
            lim["lcl"],
            lim["ucl"],
            lim["mr_center"],
            lim["mr_lcl"],
            lim["mr_ucl"],
        )

    def _reset_stream(self) -> None:
        self._last: float | None = None

    def _after_gap(self) -> None:
        self._last = None

    def _stream_state(self) -> list[Any]:
        return [self._last]

    def _load_stream_state(self, state: list[Any]) -> None:
        self._last = None if not state or state[0] is None else float(state[0])

    def _judge(self, sample: Subgroup, index: int) -> Point:
        x = sample.mean
        center, sigma, lcl, ucl, mr_center, mr_lcl, mr_ucl = self._c
        beyond = x > ucl or x < lcl
        rules = self.tracker.update(x, zscore(x, center, sigma), beyond)
        last = self._last
        self._last = x
        secondary = None
        if last is not None:
            mr = abs(x - last)
            secondary = SecondaryPoint(mr, mr_center, mr_lcl, mr_ucl, mr > mr_ucl or mr < mr_lcl)
        return Point(index, x, center, lcl, ucl, sigma, rules, secondary)

    def control_limits(self, n: float = 1) -> tuple[float, float | None, float | None]:
        center, _, lcl, ucl = self._c[:4]
        return center, lcl, ucl

    def within_sigma(self) -> float | None:
        return None if self.limits is None else self.limits["sigma"]


class _SubgroupChart(Chart):
    """X̄ chart plus a spread chart; subclasses define the spread statistic and its constants."""

    primary = "xbar"
    min_n = 2

    def _spread(self, sample: Subgroup) -> float:
        raise NotImplementedError

    def _unbias(self, n: int) -> float:
        """E[spread]/σ for subgroups of n."""
        raise NotImplementedError

    def _spread_se(self, n: int) -> float:
        """sd[spread]/σ for subgroups of n."""
        raise NotImplementedError

    def _estimate(self, baseline: Sequence[Subgroup]) -> dict[str, float]:
        cfg = self.config
        if cfg.sigma is None:
            need_baseline(self.kind, "subgroups", len(baseline), 1)
            sigma = math.fsum(self._spread(s) / self._unbias(s.n) for s in baseline) / len(baseline)
            _warn_zero(self.kind, sigma)
        else:
            sigma = cfg.sigma
        center = cfg.target if cfg.target is not None else _weighted_mean(self.kind, baseline)
        return {"center": center, "sigma": sigma}

    def _after_limits(self) -> None:
        self._by_n: dict[int, tuple[float, float, float, float, float, float]] = {}

    def _limits_for(self, n: int) -> tuple[float, float, float, float, float, float]:
        """(lcl, ucl, se, spread center, spread lcl, spread ucl) for subgroups of n."""
        cached = self._by_n.get(n)
        if cached is None:
            assert self.limits is not None
            center, sigma = self.limits["center"], self.limits["sigma"]
            se = sigma / math.sqrt(n)
            s_center = self._unbias(n) * sigma
            s_width = 3.0 * self._spread_se(n) * sigma
            cached = (
                center - 3.0 * se,
                center + 3.0 * se,
                se,
                s_center,
                max(0.0, s_center - s_width),
                s_center + s_width,
            )
            self._by_n[n] = cached
        return cached

    def _judge(self, sample: Subgroup, index: int) -> Point:
        lcl, ucl, se, s_center, s_lcl, s_ucl = self._limits_for(sample.n)
        assert self.limits is not None
        center = self.limits["center"]
        x = sample.mean
        beyond = x > ucl or x < lcl
        rules = self.tracker.update(x, zscore(x, center, se), beyond)
        spread = self._spread(sample)
        secondary = SecondaryPoint(spread, s_center, s_lcl, s_ucl, spread > s_ucl or spread < s_lcl)
        return Point(index, x, center, lcl, ucl, se, rules, secondary)

    def control_limits(self, n: float = 1) -> tuple[float, float | None, float | None]:
        assert self.limits is not None
        lcl, ucl = self._limits_for(int(n))[:2]
        return self.limits["center"], lcl, ucl

    def within_sigma(self) -> float | None:
        return None if self.limits is None else self.limits["sigma"]


class XbarRChart(_SubgroupChart):
    """X̄ and R charts; sigma from ranges."""

    kind = "xbar-r"
    secondary = "r"

    def _spread(self, sample: Subgroup) -> float:
        return sample.range

    def _unbias(self, n: int) -> float:
        return d2(n)

    def _spread_se(self, n: int) -> float:
        return d3(n)


class XbarSChart(_SubgroupChart):
    """X̄ and S charts; sigma from subgroup standard deviations."""

    kind = "xbar-s"
    secondary = "s"

    def _spread(self, sample: Subgroup) -> float:
        return sample.sd

    def _unbias(self, n: int) -> float:
        return c4(n)

    def _spread_se(self, n: int) -> float:
        return math.sqrt(max(0.0, 1.0 - c4(n) ** 2))
