"""Bias-correction constants of the range and the standard deviation of n normal observations.

``d2(n) = E[R]/σ`` and ``d3(n) = sd[R]/σ`` for the range R of n independent N(0, σ²) samples are
computed by numerical integration of the range distribution (not read from 3-decimal tables):

* ``E[R] = ∫ 1 − Φ(x)ⁿ − (1 − Φ(x))ⁿ dx``
* ``E[R²] = 2 ∬_{x<y} P(min < x, max > y) dx dy``
  ``= 2 ∬_{x<y} 1 − (1 − Φ(x))ⁿ − Φ(y)ⁿ + (Φ(y) − Φ(x))ⁿ dx dy``

``c4(n) = E[S]/σ = sqrt(2/(n−1)) Γ(n/2) / Γ((n−1)/2)`` is exact (log-gamma).
Results are cached per n; the first call for a new n costs a few milliseconds (d3: ~0.1 s).
"""

from __future__ import annotations

import math
from functools import lru_cache

from streams.spc.exceptions import SpcConfigError

_EPS = 1e-13


def _check(n: int) -> int:
    if isinstance(n, bool) or int(n) != n or n < 1:
        msg = f"subgroup size must be a positive integer, got {n!r}"
        raise SpcConfigError(msg)
    return int(n)


@lru_cache(maxsize=4096)
def c4(n: int) -> float:
    """E[S]/σ for the sample standard deviation (n − 1 divisor) of n normal observations; c4(1) = 0."""
    n = _check(n)
    if n == 1:
        return 0.0
    return math.sqrt(2.0 / (n - 1)) * math.exp(math.lgamma(n / 2.0) - math.lgamma((n - 1) / 2.0))


@lru_cache(maxsize=4096)
def d2(n: int) -> float:
    """E[R]/σ for the range of n normal observations; d2(1) = 0."""
    n = _check(n)
    if n == 1:
        return 0.0
    from scipy.integrate import quad
    from scipy.special import log_ndtr

    def integrand(x: float) -> float:
        # Symmetric in x: 1 − Φ(x)^n − Φ(−x)^n, integrated over (0, ∞) and doubled.
        return 1.0 - math.exp(n * float(log_ndtr(x))) - math.exp(n * float(log_ndtr(-x)))

    value, _ = quad(integrand, 0.0, math.inf, epsabs=_EPS, epsrel=_EPS, limit=200)
    return 2.0 * float(value)


def _range_tail_integral(n: int, w: float) -> float:
    """∫ P(min < x, max > x + w) dx = E[(R − w)⁺] for standard normal samples."""
    from scipy.integrate import quad
    from scipy.special import ndtr

    def integrand(x: float) -> float:
        lo = float(ndtr(x))
        hi = float(ndtr(x + w))
        upper_lo = float(ndtr(-x))  # 1 − Φ(x) without cancellation
        return 1.0 - upper_lo**n - hi**n + max(hi - lo, 0.0) ** n

    # The integrand is symmetric about x = −w/2; integrate one half and double it.
    value, _ = quad(integrand, -w / 2.0, math.inf, epsabs=_EPS, epsrel=1e-11, limit=200)
    return 2.0 * float(value)


@lru_cache(maxsize=4096)
def d3(n: int) -> float:
    """sd[R]/σ for the range of n normal observations; d3(1) = 0."""
    n = _check(n)
    if n == 1:
        return 0.0
    from scipy.integrate import quad

    # E[R²] = 2 ∫₀^∞ E[(R − w)⁺] dw.
    second, _ = quad(
        lambda w: _range_tail_integral(n, w), 0.0, math.inf, epsabs=1e-11, epsrel=1e-11, limit=200
    )
    variance = 2.0 * float(second) - d2(n) ** 2
    return math.sqrt(max(variance, 0.0))
