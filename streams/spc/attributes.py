"""Attribute charts: p (fraction nonconforming), np (number nonconforming), c (nonconformities per
unit of fixed size) and u (nonconformities per unit), after Montgomery ch. 7 and qcc.

Phase I estimates p̄ = Σx/Σn (p, np), c̄ = mean x (c) or ū = Σx/Σn (u) from the baseline, or takes
``target`` as the known standard. Three-sigma limits are computed per sample size (variable n gives
per-point limits) and clipped to the range the statistic can take.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from streams.spc.charts import Chart, Count, Point, Sample, need_baseline, zscore
from streams.spc.exceptions import SpcConfigError, SpcInputError


class _AttributeChart(Chart):
    data = "counts"

    def _center(self, baseline: Sequence[Count]) -> float:
        need_baseline(self.kind, "samples", len(baseline), 1)
        return math.fsum(s.x for s in baseline) / math.fsum(s.n for s in baseline)

    def _estimate(self, baseline: Sequence[Count]) -> dict[str, float]:
        if self.config.sigma is not None:
            msg = f"{self.kind} chart: sigma follows from the center line; do not give --sigma"
            raise SpcConfigError(msg)
        center = self.config.target if self.config.target is not None else self._center(baseline)
        self._check_center(center)
        return {"center": center}

    def _check_center(self, center: float) -> None:
        if center < 0.0:
            msg = f"{self.kind} chart: center must be >= 0, got {center}"
            raise SpcConfigError(msg)

    def _after_limits(self) -> None:
        self._by_n: dict[float, tuple[float, float, float, float]] = {}

    def _limits(self, center: float, n: float) -> tuple[float, float, float, float]:
        """(center, lcl, ucl, se) of the plotted statistic for a sample of size n."""
        raise NotImplementedError

    def _statistic(self, sample: Count) -> float:
        return sample.x / sample.n

    def control_limits(self, n: float = 1) -> tuple[float, float | None, float | None]:
        assert self.limits is not None
        center, lcl, ucl, _ = self._limits(self.limits["center"], n)
        return center, lcl, ucl

    def _judge(self, sample: Count, index: int) -> Point:
        cached = self._by_n.get(sample.n)
        if cached is None:
            assert self.limits is not None
            cached = self._by_n[sample.n] = self._limits(self.limits["center"], sample.n)
        center, lcl, ucl, se = cached
        value = self._statistic(sample)
        beyond = value > ucl or value < lcl
        rules = self.tracker.update(value, zscore(value, center, se), beyond)
        return Point(index, value, center, lcl, ucl, se, rules)


class _FractionChart(_AttributeChart):
    def validate(self, sample: Sample) -> None:
        super().validate(sample)
        if isinstance(sample, Count) and sample.x > sample.n:
            msg = f"{self.kind} chart: {sample.x} nonconforming exceeds the sample size {sample.n}"
            raise SpcInputError(msg)

    def _check_center(self, center: float) -> None:
        if not 0.0 <= center <= 1.0:
            msg = f"{self.kind} chart: the fraction nonconforming must be in [0, 1], got {center}"
            raise SpcConfigError(msg)


class PChart(_FractionChart):
    kind = "p"
    primary = "p"

    def _limits(self, center: float, n: float) -> tuple[float, float, float, float]:
        se = math.sqrt(center * (1.0 - center) / n)
        return center, max(0.0, center - 3.0 * se), min(1.0, center + 3.0 * se), se


class NpChart(_FractionChart):
    kind = "np"
    primary = "np"

    def _statistic(self, sample: Count) -> float:
        return sample.x

    def _limits(self, center: float, n: float) -> tuple[float, float, float, float]:
        se = math.sqrt(n * center * (1.0 - center))
        mid = n * center
        return mid, max(0.0, mid - 3.0 * se), min(n, mid + 3.0 * se), se


class CChart(_AttributeChart):
    kind = "c"
    primary = "c"

    def _center(self, baseline: Sequence[Count]) -> float:
        need_baseline(self.kind, "samples", len(baseline), 1)
        return math.fsum(s.x for s in baseline) / len(baseline)

    def _statistic(self, sample: Count) -> float:
        return sample.x

    def _limits(self, center: float, n: float) -> tuple[float, float, float, float]:
        se = math.sqrt(center)
        return center, max(0.0, center - 3.0 * se), center + 3.0 * se, se


class UChart(_AttributeChart):
    kind = "u"
    primary = "u"

    def _limits(self, center: float, n: float) -> tuple[float, float, float, float]:
        se = math.sqrt(center / n)
        return center, max(0.0, center - 3.0 * se), center + 3.0 * se, se
