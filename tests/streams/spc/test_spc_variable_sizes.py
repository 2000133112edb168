"""Known answers for the charts and cases test_spc_known_answers.py does not cover: the np chart, a u
chart with variable sample sizes, and X̄-R / X̄-S with variable subgroup sizes.

Sources
- [M] D. C. Montgomery, *Introduction to Statistical Quality Control*, 6th ed., Wiley 2009.
  Ex. 7.1 (orange juice cans): the revised phase I of samples 31–54 gives p̄ = 0.1108, UCL 0.2440,
  LCL −0.0224 → 0 (n = 50); ch. 7, u chart with variable sample size (dyed cloth): ū = 153/107.5 = 1.42,
  limits ū ± 3√(ū/nᵢ), for nᵢ = 10 inspection units LCL 0.29, UCL 2.55.
  ch. 6, charts with variable subgroup size: X̄ limits x̿ ± 3σ̂/√nᵢ, R limits (d2(nᵢ) ± 3d3(nᵢ))σ̂, S limits
  (c4(nᵢ) ± 3√(1 − c4(nᵢ)²))σ̂, clipped at 0. Appendix VI: d2, d3, c4 (3–4 decimals).
- [Q] qcc reference manual, ``qcc`` example "variable control limits": the piston rings without the
  observations 9, 10, 30, 35, 45, 64, 65, 74, 75, 85, 99 and 100; qcc's default σ̂ for variable sizes
  is the unweighted average of Rᵢ/d2(nᵢ) ("UWAVE-R") or of Sᵢ/c4(nᵢ) ("UWAVE-SD"), and x̿ = Σnᵢx̄ᵢ/Σnᵢ.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

Spc = Callable[..., Any]  # the `spc` fixture: runs `millstream spc ...`, returns a CliRun

# [M] Appendix VI, factors for subgroups of n = 3, 4, 5.
D2 = {3: 1.693, 4: 2.059, 5: 2.326}
D3 = {3: 0.888, 4: 0.880, 5: 0.864}
C4 = {3: 0.8862, 4: 0.9213, 5: 0.9400}
QCC_OUT = {9, 10, 30, 35, 45, 64, 65, 74, 75, 85, 99, 100}  # [Q] 1-based data rows left out


def test_orangejuice2_np(qcc: Path, spc: Spc) -> None:
    out = spc(
        "np",
        "--input",
        qcc / "orangejuice2.txt",
        "--value-column",
        "D",
        "--size-column",
        "size",
        "--phase1-column",
        "trial",
        "--json",
    ).json()
    # [M] Ex. 7.1, revised: np̄ = 50 × 0.1108 = 5.54, UCL = 50 × 0.2440 = 12.20, LCL = 0.
    assert out["chart"] == "np"
    assert out["center"] == pytest.approx(50 * 0.1108, abs=50 * 5e-5)
    assert out["ucl"] == pytest.approx(50 * 0.2440, abs=50 * 5e-5)
    assert out["lcl"] == 0.0
    assert [p["value"] for p in out["points"][:3]] == [9.0, 6.0, 12.0]  # np plots the counts


def test_dyedcloth_u_with_variable_sizes(qcc: Path, spc: Spc) -> None:
    out = spc(
        "u", "--input", qcc / "dyedcloth.txt", "--value-column", "x", "--size-column", "size", "--json"
    ).json()
    rows = [line.split() for line in (qcc / "dyedcloth.txt").read_text().splitlines()[1:]]
    x = np.array([float(r[0]) for r in rows])
    n = np.array([float(r[1]) for r in rows])
    assert (x.sum(), n.sum()) == (153.0, 107.5)
    u_bar = 153 / 107.5
    assert out["center"] == pytest.approx(1.42, abs=5e-3)  # [M] ch. 7, dyed cloth
    assert (out["lcl"], out["ucl"]) == (None, None)  # limits vary with n: no single pair
    for p, size in zip(out["points"], n, strict=True):
        half = 3 * np.sqrt(u_bar / size)
        assert p["ucl"] == pytest.approx(u_bar + half, rel=1e-12)
        assert p["lcl"] == pytest.approx(max(0.0, u_bar - half), rel=1e-12)
    ten = [p for p, size in zip(out["points"], n, strict=True) if size == 10]
    assert ten and all(p["lcl"] == pytest.approx(0.29, abs=5e-3) for p in ten)
    # The book rounds ū to 1.42 first (1.42 + 3√0.142 = 2.5505); the exact ū gives 2.5550.
    assert all(p["ucl"] == pytest.approx(2.55, abs=6e-3) for p in ten)
    assert out["signals"] == []  # [M]: no point out of control


@pytest.fixture()
def pistonrings_variable(qcc: Path, tmp_path: Path) -> Path:
    lines = (qcc / "pistonrings.txt").read_text().splitlines()
    kept = [line for i, line in enumerate(lines[1:], start=1) if i not in QCC_OUT]
    path = tmp_path / "pistonrings_variable.txt"
    path.write_text("\n".join([lines[0], *kept]) + "\n")
    return path


def _groups(path: Path) -> tuple[list[np.ndarray[Any, Any]], list[bool]]:
    groups: OrderedDict[str, list[float]] = OrderedDict()
    trial: dict[str, bool] = {}
    for line in path.read_text().splitlines()[1:]:
        diameter, sample, flag = line.split()
        groups.setdefault(sample, []).append(float(diameter))
        trial[sample] = flag == "TRUE"
    return [np.array(v) for v in groups.values()], [trial[k] for k in groups]


@pytest.mark.parametrize("kind", ["xbar-r", "xbar-s"])
def test_pistonrings_with_variable_subgroup_sizes(pistonrings_variable: Path, spc: Spc, kind: str) -> None:
    out = spc(
        kind,
        "--input",
        pistonrings_variable,
        "--value-column",
        "diameter",
        "--subgroup-column",
        "sample",
        "--phase1-column",
        "trial",
        "--json",
    ).json()
    groups, trial = _groups(pistonrings_variable)
    sizes = [len(g) for g in groups]
    assert sorted(set(sizes)) == [3, 4, 5]
    base = [g for g, t in zip(groups, trial, strict=True) if t]
    n = np.array([len(g) for g in base])
    center = float((n * np.array([g.mean() for g in base])).sum() / n.sum())
    if kind == "xbar-r":
        sigma = float(np.mean([np.ptp(g) / D2[len(g)] for g in base]))
    else:
        sigma = float(np.mean([g.std(ddof=1) / C4[len(g)] for g in base]))
    # 3–4 decimal table factors against exact ones: σ̂ agrees to ~3e-4 relative.
    assert out["center"] == pytest.approx(center, rel=1e-12)
    assert out["sigma"] == pytest.approx(sigma, rel=5e-4)
    assert (out["lcl"], out["ucl"]) == (None, None)  # stepped limits
    for p, sp, size in zip(out["points"], out["secondary"]["points"], sizes, strict=True):
        assert p["ucl"] == pytest.approx(center + 3 * sigma / np.sqrt(size), abs=2e-5)
        assert p["lcl"] == pytest.approx(center - 3 * sigma / np.sqrt(size), abs=2e-5)
        if kind == "xbar-r":
            assert sp["center"] == pytest.approx(D2[size] * sigma, rel=5e-4)
            assert sp["ucl"] == pytest.approx((D2[size] + 3 * D3[size]) * sigma, rel=1e-3)
        else:
            assert sp["center"] == pytest.approx(C4[size] * sigma, rel=5e-4)
            assert sp["ucl"] == pytest.approx((C4[size] + 3 * np.sqrt(1 - C4[size] ** 2)) * sigma, rel=1e-3)
        assert sp["lcl"] == 0.0  # D3 = B3 = 0 for n <= 5
    # Phase II: the same late subgroups as with n = 5 plot above the UCL ([M] Ex. 6.3), plus 35 and 40
    # here, recomputed from the data with the limits above.
    beyond = [
        i + 1
        for i, (g, t) in enumerate(zip(groups, trial, strict=True))
        if not t and abs(g.mean() - center) > 3 * sigma / np.sqrt(len(g))
    ]
    got = sorted({s["index"] for s in out["signals"] if s["chart"] == "xbar" and s["rule"] == "WE1"})
    assert got == beyond
    assert {37, 38, 39} <= set(got)
