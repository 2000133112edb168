"""Process capability: one-sided specifications, tiny samples and confidence intervals.

Sources
- [M] D. C. Montgomery, *Introduction to Statistical Quality Control*, 6th ed., Wiley 2009.
  §8.3 (process capability ratios): Cp = (USL − LSL)/6σ, Cpu = (USL − μ)/3σ, Cpl = (μ − LSL)/3σ,
  Cpk = min(Cpu, Cpl). §8.3.5 (confidence intervals on process capability ratios): the two-sided
  100(1 − α)% interval Ĉp·√(χ²_{α/2,n−1}/(n−1)) ≤ Cp ≤ Ĉp·√(χ²_{1−α/2,n−1}/(n−1)) and, for Cpk,
  Bissell's approximation Ĉpk[1 ± z_{α/2}√(1/(9nĈpk²) + 1/(2(n−1)))]. Worked example: n = 20,
  s = 1.75, LSL 38, USL 62 gives Ĉp = 2.29 and 1.57 ≤ Cp ≤ 3.01 (χ²_{0.025,19} = 8.91,
  χ²_{0.975,19} = 32.85).
- [Q] the piston-ring diameters of qcc's ``pistonrings`` (Montgomery's Table 6.3; 25 phase I subgroups
  of 5) with the specification 74.000 ± 0.05 used in qcc's ``process.capability`` example.
  The expected figures are computed in the test from the data with [M]'s formulas (σ̂ = R̄/d2, d2(5) =
  2.326 [M App. VI]), not taken from Millstream.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from scipy.stats import chi2, norm

Spc = Callable[..., Any]  # the `spc` fixture: runs `millstream spc ...`, returns a CliRun


def _sample(n: int, mean: float, sd: float) -> list[float]:
    """n values with exactly this mean and sample standard deviation (ddof = 1)."""
    z = np.random.default_rng(7).normal(size=n)
    z = (z - z.mean()) / z.std(ddof=1)
    return [float(v) for v in mean + sd * z]


def _write(tmp_path: Path, values: list[float]) -> Path:
    path = tmp_path / "x.csv"
    path.write_text("x\n" + "\n".join(repr(v) for v in values) + "\n")
    return path


def test_montgomery_interval_on_cp(tmp_path: Path, spc: Spc) -> None:
    """[M] §8.3.5's example is a Cp from the sample s of 20 observations: in Millstream's terms Pp
    (σ_overall = s)."""
    x = _sample(20, 50.0, 1.75)
    out = spc(
        "imr", "--input", _write(tmp_path, x), "--value-column", "x", "--lsl", 38, "--usl", 62, "--json"
    )
    got = out.json()
    assert got["capability"]["pp"] == pytest.approx(24 / (6 * 1.75), rel=1e-9)  # 2.2857, [M]: 2.29
    ci = got["capability_ci"]
    assert (ci["level"], ci["n"]) == (0.95, 20)
    # [M] rounds Ĉp to 2.29 before scaling: 1.57 and 3.01; the exact Ĉp = 2.2857 gives 1.565 and 3.006.
    assert ci["pp"] == pytest.approx([1.57, 3.01], abs=6e-3)
    pp = 24 / (6 * 1.75)
    assert ci["pp"] == pytest.approx(
        [pp * math.sqrt(chi2.ppf(0.025, 19) / 19), pp * math.sqrt(chi2.ppf(0.975, 19) / 19)], rel=1e-12
    )


def test_pistonrings_intervals_follow_the_textbook_formulas(qcc: Path, spc: Spc) -> None:
    rows = [line.split() for line in (qcc / "pistonrings.txt").read_text().splitlines()[1:] if line.strip()]
    phase1: dict[int, list[float]] = {}
    for diameter, sample, trial in rows:
        if trial == "TRUE":
            phase1.setdefault(int(sample), []).append(float(diameter))
    assert len(phase1) == 25 and all(len(v) == 5 for v in phase1.values())
    sigma = float(np.mean([max(v) - min(v) for v in phase1.values()])) / 2.326  # R̄/d2(5) [M App. VI]
    mean = float(np.mean([x for v in phase1.values() for x in v]))
    n = 125
    cp = (74.05 - 73.95) / (6 * sigma)
    cpk = min(74.05 - mean, mean - 73.95) / (3 * sigma)
    cp_ci = [cp * math.sqrt(chi2.ppf(q, n - 1) / (n - 1)) for q in (0.025, 0.975)]  # [M] §8.3.5
    half = norm.ppf(0.975) * math.sqrt(1 / (9 * n * cpk * cpk) + 1 / (2 * (n - 1)))  # Bissell [M] §8.3.5
    args = ["xbar-r", "--input", qcc / "pistonrings.txt", "--value-column", "diameter", "--subgroup-column",
            "sample", "--phase1-column", "trial", "--lsl", 73.95, "--usl", 74.05]  # fmt: skip
    out = spc(*args)
    assert out.rc == 0
    assert (
        f"Cp {cp:.3f} [{cp_ci[0]:.2f}, {cp_ci[1]:.2f}]  Cpk {cpk:.3f} [{cpk * (1 - half):.2f}, "
        f"{cpk * (1 + half):.2f}]"
    ) in out.out
    assert f"n = {n} phase I observations" in out.out
    got = spc(*args, "--json").json()
    ci = got["capability_ci"]
    assert ci["n"] == n
    # d2(5) is tabled to 4 digits, so agreement is to that precision
    assert got["capability"]["cp"] == pytest.approx(cp, rel=2e-4)
    assert ci["cp"] == pytest.approx(cp_ci, rel=2e-4)
    assert ci["cpk"] == pytest.approx([cpk * (1 - half), cpk * (1 + half)], rel=2e-4)


def test_one_sided_specification(tmp_path: Path, spc: Spc) -> None:
    """Only an upper limit: Cp and Pp are undefined, Cpk = Cpu, Ppk = Ppu [M §8.3], each with
    Bissell's interval."""
    x = _sample(30, 10.0, 0.5)
    path = _write(tmp_path, x)
    got = spc("imr", "--input", path, "--value-column", "x", "--usl", 12, "--json").json()
    cap, ci = got["capability"], got["capability_ci"]
    assert cap["cp"] is None and cap["pp"] is None
    assert ci["cp"] is None and ci["pp"] is None
    assert cap["ppk"] == pytest.approx((12 - 10) / (3 * 0.5), rel=1e-9)
    mr_bar = float(np.mean(np.abs(np.diff(x))))
    sigma_within = mr_bar / 1.128  # d2(2) [M App. VI]
    assert cap["cpk"] == pytest.approx((12 - 10) / (3 * sigma_within), rel=5e-4)
    for key in ("cpk", "ppk"):
        c = cap[key]
        half = norm.ppf(0.975) * math.sqrt(1 / (9 * 30 * c * c) + 1 / (2 * 29))
        assert ci[key] == pytest.approx([c * (1 - half), c * (1 + half)], rel=1e-12)


def test_few_observations_give_wide_intervals_and_none_without_a_spread(tmp_path: Path, spc: Spc) -> None:
    """Three observations still give point estimates, but the interval says how little they mean; two
    identical ones give no sigma and no index at all."""
    got = spc("imr", "--input", _write(tmp_path, [5.0, 6.0, 7.0]), "--value-column", "x", "--lsl", 2,
              "--usl", 10, "--json").json()  # fmt: skip
    pp = 8 / 6  # s = 1
    lo, hi = got["capability_ci"]["pp"]
    assert got["capability"]["pp"] == pytest.approx(pp, rel=1e-12)
    assert (lo, hi) == pytest.approx(
        (pp * math.sqrt(chi2.ppf(0.025, 2) / 2), pp * math.sqrt(chi2.ppf(0.975, 2) / 2))
    )
    assert hi / lo > 10
    flat = spc("imr", "--input", _write(tmp_path, [5.0, 5.0]), "--value-column", "x", "--lsl", 2, "--usl", 10,
               "--json").json()  # fmt: skip
    assert flat["capability"] == {"cp": None, "cpk": None, "pp": None, "ppk": None}
    assert flat["capability_ci"] is None
