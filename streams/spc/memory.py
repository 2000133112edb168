"""Charts with memory: EWMA with exact time-varying limits, and the tabular (two-sided) CUSUM.

Both chart the sample values (individuals or subgroup means) with standard error σ/√nᵢ. In phase I
the in-control mean μ0 is the size-weighted baseline mean (or ``target``) and σ is MR̄/d2(2) for
individuals or the average Rᵢ/d2(nᵢ) for subgroups (or ``sigma``), as qcc does.

EWMA (Montgomery ch. 9.2): zᵢ = λxᵢ + (1 − λ)zᵢ₋₁, z₀ = μ0. Its exact variance follows the recursion
vᵢ = (1 − λ)²vᵢ₋₁ + λ²σ²/nᵢ (v₀ = 0), which for a fixed n is σ²/n · λ/(2 − λ) · (1 − (1 − λ)²ⁱ);
limits are μ0 ± L√vᵢ.

CUSUM (Montgomery ch. 9.1): with standardised values yᵢ = (xᵢ − μ0)/(σ/√nᵢ),
C⁺ᵢ = max(0, C⁺ᵢ₋₁ + yᵢ − k) and C⁻ᵢ = max(0, C⁻ᵢ₋₁ − yᵢ − k), both starting at 0 and not reset
after a signal. Reported in data units (× σ/√nᵢ), i.e. Montgomery's tabular CUSUM with K = kσ and
H = hσ: ``upper`` = C⁺, ``lower`` = −C⁻, limits ±H around 0; a signal when C⁺ or C⁻ exceeds H.
With σ = 0 (constant baseline) K = H = 0: the sums are kept in data units and any departure signals.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from typing import Any

from streams.spc.charts import (
    Chart,
    ChartConfig,
    Point,
    Subgroup,
    mean_moving_range,
    need_baseline,
    zscore,
)
from streams.spc.constants import d2

logger = logging.getLogger(__name__)

_LIMIT = ("LIMIT",)
_NONE: tuple[str, ...] = ()


def estimate_mean_sigma(chart: Chart, baseline: Sequence[Subgroup]) -> tuple[float, float]:
    """(μ0, σ of one observation) from the baseline, or from the configured standards."""
    cfg = chart.config
    if cfg.target is not None:
        center = cfg.target
    else:
        need_baseline(chart.kind, "samples", len(baseline), 1)
        center = math.fsum(s.n * s.mean for s in baseline) / sum(s.n for s in baseline)
    if cfg.sigma is not None:
        return center, cfg.sigma
    if all(s.n == 1 for s in baseline):
        need_baseline(chart.kind, "values", len(baseline), 2)
        mr_bar, pairs = mean_moving_range([s.mean for s in baseline], chart.baseline_breaks)
        need_baseline(chart.kind, "consecutive values (moving ranges)", pairs, 1)
        sigma = mr_bar / d2(2)
    else:
        groups = [s for s in baseline if s.n >= 2]
        need_baseline(chart.kind, "subgroups of 2+ values", len(groups), 1)
        sigma = math.fsum(s.range / d2(s.n) for s in groups) / len(groups)
    if sigma == 0.0:
        logger.warning(
            "%s chart: estimated sigma is 0 (constant baseline); every change will signal",
            chart.kind,
        )
    return center, sigma


class EwmaChart(Chart):
    """Exponentially weighted moving average chart; signals LIMIT."""

    kind = "ewma"
    primary = "ewma"
    uses_rules = False

    def _estimate(self, baseline: Sequence[Subgroup]) -> dict[str, float]:
        center, sigma = estimate_mean_sigma(self, baseline)
        return {"center": center, "sigma": sigma}

    def _reset_stream(self) -> None:
        self._z: float | None = None  # None: start at the center
        self._v = 0.0

    def _stream_state(self) -> list[Any]:
        return [self._z, self._v]

    def _load_stream_state(self, state: list[Any]) -> None:
        if state:
            self._z = None if state[0] is None else float(state[0])
            self._v = float(state[1])

    def control_limits(self, n: float = 1) -> tuple[float, float | None, float | None]:
        assert self.limits is not None
        return (self.limits["center"], *self.steady_limits(n))

    def steady_limits(self, n: float = 1) -> tuple[float, float]:
        """Asymptotic (i → ∞) limits for samples of n."""
        assert self.limits is not None
        lam, width = self.config.lam, self.config.width
        half = width * self.limits["sigma"] / math.sqrt(n) * math.sqrt(lam / (2.0 - lam))
        return self.limits["center"] - half, self.limits["center"] + half

    def _judge(self, sample: Subgroup, index: int) -> Point:
        assert self.limits is not None
        center, sigma = self.limits["center"], self.limits["sigma"]
        lam = self.config.lam
        x = sample.mean
        prev = center if self._z is None else self._z
        z = self._z = lam * x + (1.0 - lam) * prev
        v = self._v = (1.0 - lam) ** 2 * self._v + lam * lam * sigma * sigma / sample.n
        se = math.sqrt(v)
        half = self.config.width * se
        lcl, ucl = center - half, center + half
        beyond = z > ucl or z < lcl
        return Point(index, z, center, lcl, ucl, se, _LIMIT if beyond else _NONE, None, {"observation": x})

    def within_sigma(self) -> float | None:
        return None if self.limits is None else self.limits["sigma"]


class CusumChart(Chart):
    """Tabular CUSUM for the mean, upper and lower sums; signals LIMIT."""

    kind = "cusum"
    primary = "cusum"
    uses_rules = False

    def _estimate(self, baseline: Sequence[Subgroup]) -> dict[str, float]:
        center, sigma = estimate_mean_sigma(self, baseline)
        return {"center": center, "sigma": sigma}

    def _reset_stream(self) -> None:
        self._up = 0.0  # C⁺ in standard errors
        self._down = 0.0  # C⁻ in standard errors

    def _stream_state(self) -> list[Any]:
        return [self._up, self._down]

    def _load_stream_state(self, state: list[Any]) -> None:
        if state:
            self._up, self._down = float(state[0]), float(state[1])

    def _judge(self, sample: Subgroup, index: int) -> Point:
        assert self.limits is not None
        k, h = self.config.k, self.config.h
        se = self.limits["sigma"] / math.sqrt(sample.n)
        x = sample.mean
        if se > 0.0:
            y = (x - self.limits["center"]) / se
            up = self._up = max(0.0, self._up + y - k)
            down = self._down = max(0.0, self._down - y - k)
            beyond = up > h or down > h
            extra = {"upper": up * se, "lower": 0.0 - down * se}  # 0.0 - 0.0 is 0.0; -(0.0) would be -0.0
        else:
            # sigma 0 (a constant baseline): K = kσ = 0 and H = hσ = 0, so the data-unit sums of
            # Montgomery's tabular CUSUM signal on any departure from μ0, as every other chart does.
            # Sums stay in data units here (sigma is fixed after fit, so every sample takes this path).
            d = x - self.limits["center"]
            up = self._up = max(0.0, self._up + d)
            down = self._down = max(0.0, self._down - d)
            beyond = up > 0.0 or down > 0.0
            extra = {"upper": up, "lower": 0.0 - down}
        return Point(index, x, 0.0, -h * se, h * se, se, _LIMIT if beyond else _NONE, None, extra)

    def control_limits(self, n: float = 1) -> tuple[float, float | None, float | None]:
        assert self.limits is not None
        half = self.config.h * self.limits["sigma"] / math.sqrt(n)
        return 0.0, -half, half

    def within_sigma(self) -> float | None:
        return None if self.limits is None else self.limits["sigma"]


LAMBDAS = tuple(i / 20 for i in range(1, 21))  # 0.05, 0.10, ..., 1.0: the phase I search grid


def forecast_errors(values: Sequence[float], lam: float, start: float | None = None) -> list[float]:
    """One-step forecast errors eᵢ = xᵢ − zᵢ₋₁ of the EWMA zᵢ = λxᵢ + (1 − λ)zᵢ₋₁ (z₀ = ``start``, or the
    first value, which then has no error)."""
    z = start
    out = []
    for x in values:
        if z is not None:
            out.append(x - z)
            z = lam * x + (1.0 - lam) * z
        else:
            z = x
    return out


class MovingCenterEwmaChart(Chart):
    """Moving-centerline EWMA for autocorrelated values (Montgomery ch. 10.4, after Mastrangelo and
    Montgomery 1991): the EWMA of the values so far forecasts the next one, x̂ᵢ = zᵢ₋₁, and each value
    is judged against zᵢ₋₁ ± 3σₑ, σₑ the standard deviation of the one-step forecast errors
    eᵢ = xᵢ − zᵢ₋₁. Phase I takes the λ of 0.05, 0.10, …, 1 with the least sum of squared forecast errors
    over the baseline (λ = 1: the last value forecasts the next) and σₑ as their root mean square (or
    ``sigma``); ``target`` starts the EWMA. A slowly wandering process (drift, temperature following
    the ambient) stays inside its moving limits; a sudden change signals. The rules judge the errors,
    which are close to independent when the EWMA forecasts well. Signals report the value, and the
    forecast as the center line. No capability (Cp) from σₑ: the process sigma is not a forecast error.
    """

    kind = "mcewma"
    primary = "mcewma"

    def _estimate(self, baseline: Sequence[Subgroup]) -> dict[str, float]:
        cfg = self.config
        x = [s.mean for s in baseline]
        start = cfg.target
        need_baseline(self.kind, "values", len(x), 2 if start is None else 1)
        sse, lam = min((math.fsum(e * e for e in forecast_errors(x, lam, start)), lam) for lam in LAMBDAS)
        if cfg.sigma is not None:
            sigma = cfg.sigma
        else:
            sigma = math.sqrt(sse / (len(x) - (start is None)))
            if sigma == 0.0:
                logger.warning("%s chart: the forecast errors are all 0 (constant baseline); every change "
                               "will signal", self.kind)  # fmt: skip
        limits = {"lam": lam, "sigma": sigma}
        if start is not None:
            limits["center"] = start
        return limits

    @classmethod
    def baseline_needed(cls, config: ChartConfig) -> int:
        """λ is always fitted: two values (one forecast error), or one with ``target``."""
        return 2 if config.target is None else 1

    def _reset_stream(self) -> None:
        self._z: float | None = None  # None: the next value starts the EWMA (or target does)

    def _stream_state(self) -> list[Any]:
        return [self._z]

    def _load_stream_state(self, state: list[Any]) -> None:
        self._z = None if not state or state[0] is None else float(state[0])

    def _judge(self, sample: Subgroup, index: int) -> Point:
        assert self.limits is not None
        lam, sigma = self.limits["lam"], self.limits["sigma"]
        x = sample.mean
        forecast = self._z if self._z is not None else self.limits.get("center")
        if forecast is None:  # the first value: nothing to forecast it from
            self._z = x
            return Point(index, x, x, None, None, sigma, self.tracker.update(x, 0.0, False), None,
                         {"forecast": x})  # fmt: skip
        self._z = lam * x + (1.0 - lam) * forecast
        lcl, ucl = forecast - 3.0 * sigma, forecast + 3.0 * sigma
        beyond = x > ucl or x < lcl
        rules = self.tracker.update(x, zscore(x, forecast, sigma), beyond)
        return Point(index, x, forecast, lcl, ucl, sigma, rules, None, {"forecast": forecast})

    def control_limits(self, n: float = 1) -> tuple[float, float | None, float | None]:
        assert self.limits is not None
        center = self._z if self._z is not None else self.limits.get("center", math.nan)
        half = 3.0 * self.limits["sigma"]
        return center, center - half, center + half
