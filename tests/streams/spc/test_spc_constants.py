"""Bias constants d2, d3 (numerical integration of the range distribution) and c4 (gamma functions).

Published values: Montgomery, *Introduction to Statistical Quality Control* (6th ed.), Appendix
Table VI "Factors for constructing variables control charts" (3 decimals for d2, d3; 4 for c4).
Closed forms for small n: the range of 2 normals is |X1 − X2| with X1 − X2 ~ N(0, 2), so
d2(2) = 2/√π and E[R²] = 2, d3(2) = √(2 − 4/π); d2(3) = 3/√π (Tippett 1925); c4(2) = √(2/π).
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from streams.spc.constants import c4, d2, d3
from streams.spc.exceptions import SpcConfigError

# n: (d2, d3, c4) from Montgomery Appendix VI.
TABLE = {
    2: (1.128, 0.853, 0.7979),
    3: (1.693, 0.888, 0.8862),
    4: (2.059, 0.880, 0.9213),
    5: (2.326, 0.864, 0.9400),
    6: (2.534, 0.848, 0.9515),
    7: (2.704, 0.833, 0.9594),
    8: (2.847, 0.820, 0.9650),
    9: (2.970, 0.808, 0.9693),
    10: (3.078, 0.797, 0.9727),
    15: (3.472, 0.756, 0.9823),
    20: (3.735, 0.729, 0.9869),
    25: (3.931, 0.708, 0.9896),
}


@pytest.mark.parametrize("n", sorted(TABLE))
def test_constants_match_the_published_table(n: int) -> None:
    t_d2, t_d3, t_c4 = TABLE[n]
    assert d2(n) == pytest.approx(t_d2, abs=0.0005 + 1e-12)
    assert d3(n) == pytest.approx(t_d3, abs=0.0005 + 1e-12)
    assert c4(n) == pytest.approx(t_c4, abs=0.00005 + 1e-12)


def test_closed_forms_to_full_precision() -> None:
    assert d2(2) == pytest.approx(2 / math.sqrt(math.pi), rel=1e-12)
    assert d3(2) == pytest.approx(math.sqrt(2 - 4 / math.pi), rel=1e-10)
    assert d2(3) == pytest.approx(3 / math.sqrt(math.pi), rel=1e-12)
    assert c4(2) == pytest.approx(math.sqrt(2 / math.pi), rel=1e-14)


def test_range_moments_agree_with_a_simulation() -> None:
    """Monte Carlo with 400k subgroups: standard errors ~0.001, so 0.005 is a loose bound."""
    rng = np.random.default_rng(7)
    for n in (4, 12, 40):
        r = np.ptp(rng.standard_normal((400_000, n)), axis=1)
        assert d2(n) == pytest.approx(r.mean(), abs=0.005)
        assert d3(n) == pytest.approx(r.std(), abs=0.005)


def test_degenerate_and_invalid_sizes() -> None:
    assert (d2(1), d3(1), c4(1)) == (0.0, 0.0, 0.0)
    for bad in (0, -3, 2.5, True):
        with pytest.raises(SpcConfigError):
            d2(bad)
