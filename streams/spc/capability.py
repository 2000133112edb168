"""Process capability against specification limits (Montgomery ch. 8; qcc ``process.capability``).

* Cp = (USL − LSL) / 6σ_within, Cpk = min(USL − μ, μ − LSL) / 3σ_within
* Pp = (USL − LSL) / 6σ_overall, Ppk = min(USL − μ, μ − LSL) / 3σ_overall

σ_within is the chart's short-term sigma (R̄/d2, S̄/c4 or MR̄/d2, or the given standard);
σ_overall is the sample standard deviation (n − 1) of every baseline observation, recovered exactly
from subgroup summaries (n, mean, sd); μ is the baseline grand mean. With one spec limit only Cpk and
Ppk are defined (Cpu/Cpl and Ppu/Ppl); with none, every index is None.

:func:`intervals` gives two-sided confidence intervals (Montgomery §8.3.5; the same formulas as qcc's
``process.capability``), with n the number of observations:

* Cp, Pp: Ĉp·√(χ²_{α/2, n−1}/(n − 1)) ≤ Cp ≤ Ĉp·√(χ²_{1−α/2, n−1}/(n − 1)) (chi-square of the variance)
* Cpk, Ppk: Ĉpk·(1 ± z_{1−α/2}·√(1/(9nĈpk²) + 1/(2(n − 1)))) (Bissell's normal approximation)

They assume normal, independent observations from an in-control process; with σ_within from R̄/d2 or
MR̄/d2 the interval on Cp/Cpk is approximate (that estimate has fewer than n − 1 degrees of freedom).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass

from streams.spc.charts import Chart, Sample, Subgroup
from streams.spc.exceptions import SpcConfigError
from streams.spc.state import json_float


@dataclass(frozen=True)
class Capability:
    cp: float | None
    cpk: float | None
    pp: float | None
    ppk: float | None

    def to_dict(self) -> dict[str, float | None]:
        return {k: json_float(v) for k, v in asdict(self).items()}


NO_CAPABILITY = Capability(None, None, None, None)


def overall_stats(samples: Sequence[Subgroup]) -> tuple[int, float, float]:
    """(number of observations, grand mean, overall sample sd) of the observations behind the subgroups."""
    total = sum(s.n for s in samples)
    if total == 0:
        return 0, math.nan, math.nan
    mean = math.fsum(s.n * s.mean for s in samples) / total
    if total < 2:
        return total, mean, math.nan
    ss = math.fsum((s.n - 1) * s.sd * s.sd + s.n * (s.mean - mean) ** 2 for s in samples)
    return total, mean, math.sqrt(ss / (total - 1))


def _indices(
    mean: float, sigma: float | None, lsl: float | None, usl: float | None
) -> tuple[float | None, ...]:
    if sigma is None or not math.isfinite(sigma) or sigma <= 0.0 or not math.isfinite(mean):
        return None, None
    spread = (usl - lsl) / (6.0 * sigma) if lsl is not None and usl is not None else None
    sides = []
    if usl is not None:
        sides.append((usl - mean) / (3.0 * sigma))
    if lsl is not None:
        sides.append((mean - lsl) / (3.0 * sigma))
    return spread, (min(sides) if sides else None)


def capability_samples(chart: Chart, baseline: Sequence[Sample]) -> list[Subgroup]:
    """The observations behind a chart's baseline: the plotted values for I-MR (individuals, or
    window means charted as individuals), the subgroups otherwise."""
    groups = [s for s in baseline if isinstance(s, Subgroup)]
    if chart.kind == "imr":
        return [Subgroup(1, s.mean) for s in groups]
    return groups


def capability(
    samples: Sequence[Subgroup], sigma_within: float | None, lsl: float | None, usl: float | None
) -> Capability:
    """Capability of the process behind ``samples`` (the phase I baseline)."""
    if lsl is None and usl is None:
        return NO_CAPABILITY
    if lsl is not None and usl is not None and not lsl < usl:
        msg = f"the lower spec limit ({lsl}) must be below the upper one ({usl})"
        raise SpcConfigError(msg)
    _, mean, sigma_overall = overall_stats(samples)
    cp, cpk = _indices(mean, sigma_within, lsl, usl)
    pp, ppk = _indices(mean, sigma_overall, lsl, usl)
    return Capability(cp, cpk, pp, ppk)


def intervals(cap: Capability, n: int, level: float = 0.95) -> dict[str, tuple[float, float] | None]:
    """Two-sided ``level`` confidence intervals of each index of ``cap`` from ``n`` observations."""
    from scipy.stats import chi2, norm

    if not 0.0 < level < 1.0:
        msg = f"confidence level must be in (0, 1), got {level}"
        raise SpcConfigError(msg)
    alpha = 1.0 - level
    out: dict[str, tuple[float, float] | None] = {}
    for name, value in asdict(cap).items():
        if value is None or n < 2 or not math.isfinite(value):
            out[name] = None
        elif name in ("cp", "pp"):
            df = n - 1
            lo = value * math.sqrt(float(chi2.ppf(alpha / 2.0, df)) / df)
            hi = value * math.sqrt(float(chi2.ppf(1.0 - alpha / 2.0, df)) / df)
            out[name] = (lo, hi)
        elif value == 0.0:
            out[name] = None  # the approximation divides by the index
        else:
            half = float(norm.ppf(1.0 - alpha / 2.0)) * math.sqrt(
                1.0 / (9.0 * n * value * value) + 1.0 / (2.0 * (n - 1))
            )
            out[name] = (value * (1.0 - half), value * (1.0 + half))
    return out
