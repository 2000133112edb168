"""Known answers: textbook and qcc examples, through the CLI and through the streaming monitor.

Sources
- [M] D. C. Montgomery, *Introduction to Statistical Quality Control*, 6th ed., Wiley 2009.
  Ex. 6.3 (piston rings, X̄-R), Ex. 6.4 (piston rings, X̄-S), Ex. 7.1 (orange juice cans, p),
  Ex. 7.3 (printed circuit boards, c), Ex. 7.5 (personal computers, u), Ex. 9.1 / Table 9.2
  (tabular CUSUM), Ex. 9.2 / Table 9.11 (EWMA); Appendix VI for A2, D4, B4.
- [Q] L. Scrucca, qcc: an R package for quality control charting (R News 4/1, 2004) and the qcc
  reference manual (examples of ``qcc``, ``process.capability``), which chart the same data sets
  (../shared/datasets/qcc).
Published tables round to 2–5 decimals; the tolerances below are half a unit of the last published
digit plus the effect of the book's use of 3-decimal factors (A2 = 0.577 etc.).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from streams.spc.monitor import MonitorConfig, SpcMonitor

Spc = Callable[..., Any]  # the `spc` fixture: runs `millstream spc ...`, returns a CliRun

# [M] Table 9.1: 30 observations, the first 20 from N(10, 1), the last 10 after the mean shifted to 11.
TABLE_9_1 = [
    9.45, 7.99, 9.29, 11.66, 12.16, 10.18, 8.04, 11.46, 9.20, 10.34,
    9.03, 11.47, 10.51, 9.40, 10.08, 9.37, 10.62, 10.31, 8.52, 10.84,
    10.90, 9.33, 12.29, 11.50, 10.60, 11.08, 10.38, 11.62, 11.31, 10.52,
]  # fmt: skip
# [M] Table 9.2: the upper CUSUM C⁺ for periods 1..30 (μ0 = 10, σ = 1, k = 0.5, h = 5).
TABLE_9_2_UPPER = [
    0.0, 0.0, 0.0, 1.16, 2.82, 2.50, 0.04, 1.00, 0.0, 0.0, 0.0, 0.97, 0.98, 0.0, 0.0,
    0.0, 0.12, 0.0, 0.0, 0.34, 0.74, 0.0, 1.79, 2.79, 2.89, 3.47, 3.35, 4.47, 5.28, 5.30,
]  # fmt: skip


def _lim(monitor: SpcMonitor) -> dict[str, float]:
    assert monitor.limits is not None, "the monitor is still in phase I"
    return monitor.limits


def _pistonrings(qcc: Path) -> tuple[list[np.ndarray[Any, Any]], list[bool]]:
    groups: OrderedDict[str, list[float]] = OrderedDict()
    trial: dict[str, bool] = {}
    for line in (qcc / "pistonrings.txt").read_text().splitlines()[1:]:
        diameter, sample, flag = line.split()
        groups.setdefault(sample, []).append(float(diameter))
        trial[sample] = flag == "TRUE"
    return [np.array(v) for v in groups.values()], [trial[k] for k in groups]


def _beyond(signals: list[dict[str, Any]], chart: str) -> list[int]:
    return sorted(
        {s["index"] for s in signals if s["chart"] == chart and s["rule"] in ("WE1", "N1", "LIMIT")}
    )


# -- piston rings ---------------------------------------------------------------------------------
def test_pistonrings_xbar_r(qcc: Path, spc: Spc) -> None:
    out = spc(
        "xbar-r",
        "--input",
        qcc / "pistonrings.txt",
        "--value-column",
        "diameter",
        "--subgroup-column",
        "sample",
        "--phase1-column",
        "trial",
        "--lsl",
        73.95,
        "--usl",
        74.05,
        "--json",
    ).json()
    # [Q] qcc(diameter[1:25,], type="xbar"): center 74.00118, StdDev 0.009785; [M] Ex. 6.3 with A2 = 0.577:
    # UCL 74.01433, LCL 73.98803 (R̄ = 0.02276). Both within 3e-5 of the exact-constant limits.
    assert out["chart"] == "xbar"
    assert out["center"] == pytest.approx(74.00118, abs=5e-6)
    assert out["sigma"] == pytest.approx(0.009785, abs=5e-7)
    assert out["ucl"] == pytest.approx(74.01433, abs=3e-5)
    assert out["lcl"] == pytest.approx(73.98803, abs=3e-5)
    # R chart: R̄ = 0.02276, UCL = D4 R̄ = 2.114 × 0.02276 = 0.04811, LCL = 0 (n = 5) [M, App. VI].
    sec = out["secondary"]
    assert sec["chart"] == "r"
    assert sec["center"] == pytest.approx(0.02276, abs=5e-6)
    assert sec["ucl"] == pytest.approx(0.04811, abs=2e-5)
    assert sec["lcl"] == 0.0
    # Phase II: subgroups 37, 38 and 39 plot above the UCL ([M] Ex. 6.3 continued; [Q] "beyond limits").
    assert _beyond(out["signals"], "xbar") == [37, 38, 39]
    assert _beyond(out["signals"], "r") == []
    # [Q] process.capability(q, spec.limits = c(73.95, 74.05)): Cp 1.70, Cp_k 1.66.
    cap = out["capability"]
    assert cap["cp"] == pytest.approx(1.70, abs=0.005)
    assert cap["cpk"] == pytest.approx(1.66, abs=0.005)
    # Pp/Ppk use the overall sample sd of the 125 phase I measurements (numpy, ddof = 1).
    groups, trial = _pistonrings(qcc)
    x = np.concatenate([g for g, t in zip(groups, trial, strict=True) if t])
    s = x.std(ddof=1)
    assert cap["pp"] == pytest.approx(0.1 / (6 * s), rel=1e-9)
    assert cap["ppk"] == pytest.approx(min(74.05 - x.mean(), x.mean() - 73.95) / (3 * s), rel=1e-9)
    # Every point carries its own limits; index is the 1-based subgroup number.
    assert [p["index"] for p in out["points"]] == list(range(1, 41))
    assert out["points"][36]["value"] == pytest.approx(groups[36].mean(), abs=1e-12)


def test_pistonrings_xbar_s(qcc: Path, spc: Spc) -> None:
    out = spc(
        "xbar-s",
        "--input",
        qcc / "pistonrings.txt",
        "--value-column",
        "diameter",
        "--subgroup-column",
        "sample",
        "--phase1-column",
        "trial",
        "--json",
    ).json()
    groups, trial = _pistonrings(qcc)
    s_bar = np.mean([g.std(ddof=1) for g, t in zip(groups, trial, strict=True) if t])
    # [M] Ex. 6.4 prints S̄ = 0.0094 (from hand-rounded sᵢ); the data give S̄ = 0.00924.
    assert s_bar == pytest.approx(0.0094, abs=2e-4)
    assert out["secondary"]["center"] == pytest.approx(s_bar, rel=1e-12)
    # X̄ chart: 74.001 ± A3 S̄ with A3 = 1.427 [M, App. VI]: UCL 74.014, LCL 73.988 [M Ex. 6.4].
    assert out["ucl"] == pytest.approx(74.014, abs=5e-4)
    assert out["lcl"] == pytest.approx(73.988, abs=5e-4)
    assert out["ucl"] == pytest.approx(out["center"] + 1.427 * s_bar, abs=5e-6)
    # S chart: UCL = B4 S̄ = 2.089 S̄, LCL = B3 S̄ = 0 for n = 5 [M, App. VI].
    assert out["secondary"]["ucl"] == pytest.approx(2.089 * s_bar, rel=5e-4)
    assert out["secondary"]["lcl"] == 0.0
    assert _beyond(out["signals"], "xbar") == [37, 38, 39]


def test_pistonrings_streaming(qcc: Path) -> None:
    """The monitor fed one diameter at a time (subgroups of 5, 25 for phase I) finds the same limits."""
    groups, _ = _pistonrings(qcc)
    for kind, secondary_center in (("xbar-r", 0.02276), ("xbar-s", None)):
        monitor = SpcMonitor(
            "ring-line",
            "diameter",
            MonitorConfig(chart=kind, subgroup_size=5, phase1_count=25, lsl=73.95, usl=74.05),
        )
        signals = [s for g in groups for v in g for s in monitor.update_value(float(v))]
        center, lcl, ucl = monitor.chart.control_limits(5)
        assert center == pytest.approx(74.00118, abs=5e-6)
        assert ucl == pytest.approx(74.014, abs=5e-4) and lcl == pytest.approx(73.988, abs=5e-4)
        if secondary_center is not None:
            assert _lim(monitor)["sigma"] == pytest.approx(0.009785, abs=5e-7)
            cap = monitor.capability
            assert cap is not None
            assert cap.cp == pytest.approx(1.70, abs=0.005)
            assert cap.cpk == pytest.approx(1.66, abs=0.005)
        assert sorted({s.index for s in signals if s.rule == "WE1"}) == [37, 38, 39]


# -- attribute charts -----------------------------------------------------------------------------
def test_orangejuice_p(qcc: Path, spc: Spc) -> None:
    out = spc(
        "p",
        "--input",
        qcc / "orangejuice.txt",
        "--value-column",
        "D",
        "--size-column",
        "size",
        "--phase1-column",
        "trial",
        "--json",
    ).json()
    # [M] Ex. 7.1 and [Q] qcc(D[trial], sizes=size[trial], type="p"): p̄ = 0.2313, UCL 0.4102, LCL 0.0524;
    # samples 15 and 23 plot above the UCL.
    assert out["chart"] == "p"
    assert out["center"] == pytest.approx(0.2313, abs=5e-5)
    assert out["ucl"] == pytest.approx(0.4102, abs=5e-5)
    assert out["lcl"] == pytest.approx(0.0524, abs=5e-5)
    assert out["secondary"] is None
    assert _beyond(out["signals"], "p") == [15, 23, 41]  # 41: phase II sample with D = 2 (p = 0.04 < LCL)
    monitor = SpcMonitor("filler", "cans", MonitorConfig(chart="p", phase1_count=30))
    rows = [line.split() for line in (qcc / "orangejuice.txt").read_text().splitlines()[1:]]
    signals = [s for _, d, n, _ in rows for s in monitor.update_count(float(d), float(n))]
    assert monitor.chart.control_limits(50) == pytest.approx((0.2313, 0.0524, 0.4102), abs=5e-5)
    assert sorted({s.index for s in signals if s.rule == "WE1"}) == [15, 23, 41]


def test_circuit_c(qcc: Path, spc: Spc) -> None:
    out = spc(
        "c", "--input", qcc / "circuit.txt", "--value-column", "x", "--phase1-column", "trial", "--json"
    ).json()
    # [M] Ex. 7.3 / [Q]: c̄ = 19.85 on the 26 trial samples, UCL 33.22, LCL 6.48 (the book rounds c̄ to
    # 19.85 before adding 3√c̄, so its UCL is 0.01 above 19.846 + 3√19.846 = 33.211); samples 6 and 20 out.
    assert out["center"] == pytest.approx(19.85, abs=0.005)
    assert out["ucl"] == pytest.approx(33.22, abs=0.012)
    assert out["lcl"] == pytest.approx(6.48, abs=0.005)
    assert _beyond(out["signals"], "c") == [6, 20]
    monitor = SpcMonitor("pcb", "defects", MonitorConfig(chart="c", phase1_count=26))
    rows = [line.split() for line in (qcc / "circuit.txt").read_text().splitlines()[1:]]
    signals = [s for r in rows for s in monitor.update_count(float(r[1]))]
    center, lcl, ucl = monitor.chart.control_limits()
    assert (center, lcl, ucl) == pytest.approx((19.85, 6.48, 33.22), abs=0.012)
    assert sorted({s.index for s in signals if s.rule == "WE1"}) == [6, 20]


def test_pcmanufact_u(qcc: Path, spc: Spc) -> None:
    out = spc(
        "u", "--input", qcc / "pcmanufact.txt", "--value-column", "x", "--size-column", "size", "--json"
    ).json()
    # [M] Ex. 7.5 / [Q]: ū = 1.93, UCL 3.79, LCL 0.07 with n = 5; no point out of control.
    assert out["center"] == pytest.approx(1.93, abs=5e-3)
    assert out["ucl"] == pytest.approx(3.79, abs=5e-3)
    assert out["lcl"] == pytest.approx(0.07, abs=5e-3)
    assert _beyond(out["signals"], "u") == []
    monitor = SpcMonitor("pc", "nonconformities", MonitorConfig(chart="u", phase1_count=20))
    rows = [line.split() for line in (qcc / "pcmanufact.txt").read_text().splitlines()[1:]]
    for x, n in rows:
        monitor.update_count(float(x), float(n))
    assert monitor.chart.control_limits(5) == pytest.approx((1.93, 0.07, 3.79), abs=5e-3)


# -- individuals ----------------------------------------------------------------------------------
def test_viscosity_imr(qcc: Path, spc: Spc) -> None:
    """[Q] qcc(viscosity[trial], type="xbar.one", newdata=...): center = mean of the 20 trial batches,
    sigma = MR̄/d2(2) with d2(2) = 1.128 [M App. VI]; verified here against numpy on the file."""
    out = spc(
        "imr",
        "--input",
        qcc / "viscosity.txt",
        "--value-column",
        "viscosity",
        "--phase1-column",
        "trial",
        "--json",
    ).json()
    rows = [line.split() for line in (qcc / "viscosity.txt").read_text().splitlines()[1:]]
    x = np.array([float(r[1]) for r in rows])
    trial = x[[r[2] == "TRUE" for r in rows]]
    mr_bar = np.abs(np.diff(trial)).mean()
    sigma = mr_bar / 1.128
    assert out["center"] == pytest.approx(trial.mean(), rel=1e-12)
    assert out["center"] == pytest.approx(34.088, abs=5e-4)
    assert out["sigma"] == pytest.approx(sigma, rel=5e-4)
    assert out["ucl"] == pytest.approx(trial.mean() + 3 * sigma, abs=2e-3)
    assert out["lcl"] == pytest.approx(trial.mean() - 3 * sigma, abs=2e-3)
    # MR chart: center MR̄, UCL D4(2) MR̄ = 3.267 MR̄, LCL 0 [M App. VI].
    assert out["secondary"]["chart"] == "mr"
    assert out["secondary"]["center"] == pytest.approx(mr_bar, rel=1e-12)
    assert out["secondary"]["ucl"] == pytest.approx(3.267 * mr_bar, rel=5e-4)
    beyond = [i + 1 for i, v in enumerate(x) if not trial.mean() - 3 * sigma < v < trial.mean() + 3 * sigma]
    assert _beyond(out["signals"], "i") == beyond == [4]
    monitor = SpcMonitor("mixer", "viscosity", MonitorConfig(chart="imr", phase1_count=20))
    signals = [s for v in x for s in monitor.update_value(float(v))]
    assert _lim(monitor)["center"] == pytest.approx(trial.mean(), rel=1e-12)
    assert sorted({s.index for s in signals if s.chart == "i" and s.rule == "WE1"}) == [4]


# -- CUSUM and EWMA: Montgomery Table 9.1 ----------------------------------------------------------
@pytest.fixture()
def table_9_1(tmp_path: Path) -> Path:
    path = tmp_path / "table_9_1.csv"
    path.write_text("period,x\n" + "".join(f"{i},{v}\n" for i, v in enumerate(TABLE_9_1, start=1)))
    return path


def test_montgomery_tabular_cusum(table_9_1: Path, spc: Spc) -> None:
    out = spc(
        "cusum",
        "--input",
        table_9_1,
        "--value-column",
        "x",
        "--target",
        10,
        "--sigma",
        1,
        "--k",
        0.5,
        "--h",
        5,
        "--json",
    ).json()
    upper = [round(p["upper"], 2) for p in out["points"]]
    assert upper == TABLE_9_2_UPPER  # [M] Table 9.2
    assert all(p["lower"] <= 0 for p in out["points"])
    assert (out["center"], out["lcl"], out["ucl"]) == (0.0, -5.0, 5.0)  # H = hσ = 5
    # [M] Ex. 9.1: C⁺₂₉ = 5.28 > H = 5, the first signal; C⁺₃₀ = 5.30 also beyond.
    assert [s["index"] for s in out["signals"]] == [29, 30]
    assert {(s["chart"], s["rule"]) for s in out["signals"]} == {("cusum", "LIMIT")}
    monitor = SpcMonitor("m", "x", MonitorConfig(chart="cusum", phase1_count=0, target=10, sigma=1))
    signals = [s for v in TABLE_9_1 for s in monitor.update_value(v)]
    assert [s.index for s in signals] == [29, 30]
    assert signals[0].value == pytest.approx(5.28, abs=0.005) and signals[0].ucl == 5.0


def test_montgomery_ewma(table_9_1: Path, spc: Spc) -> None:
    out = spc(
        "ewma",
        "--input",
        table_9_1,
        "--value-column",
        "x",
        "--target",
        10,
        "--sigma",
        1,
        "--lambda",
        0.1,
        "--L",
        2.7,
        "--json",
    ).json()
    pts = out["points"]
    # [M] Ex. 9.2: z1 = 9.945, z2 = 9.7495; limits 10 ± 2.7·√(0.1/1.9·(1 − 0.9^(2i))):
    # i = 1: UCL 10.27, LCL 9.73; i = 2: UCL 10.36, LCL 9.64; they approach 10.62 and 9.38.
    assert pts[0]["value"] == pytest.approx(9.945, abs=5e-5)
    assert pts[1]["value"] == pytest.approx(9.7495, abs=5e-5)
    assert (pts[0]["lcl"], pts[0]["ucl"]) == pytest.approx((9.73, 10.27), abs=5e-3)
    assert (pts[1]["lcl"], pts[1]["ucl"]) == pytest.approx((9.64, 10.36), abs=5e-3)
    assert (out["lcl"], out["ucl"]) == pytest.approx((9.38, 10.62), abs=5e-3)
    assert out["center"] == 10.0
    # Exact time-varying limits = the closed form at every i (independent numpy computation).
    i = np.arange(1, 31)
    half = 2.7 * np.sqrt(0.1 / 1.9 * (1 - 0.9 ** (2 * i)))
    np.testing.assert_allclose([p["ucl"] for p in pts], 10 + half, rtol=0, atol=1e-12)
    z, zs = 10.0, []
    for v in TABLE_9_1:
        z = 0.1 * v + 0.9 * z
        zs.append(z)
    np.testing.assert_allclose([p["value"] for p in pts], zs, rtol=0, atol=1e-12)
    # First out-of-control point. The data give z28 = 10.5731 < UCL28 = 10.6186 and
    # z29 = 10.6468 > UCL29 = 10.6187, so the EWMA signals first at sample 29 (and again at 30).
    first = int(np.argmax(np.array(zs) > 10 + half)) + 1
    assert [s["index"] for s in out["signals"]] == [first, 30] == [29, 30]
    monitor = SpcMonitor(
        "m", "x", MonitorConfig(chart="ewma", phase1_count=0, target=10, sigma=1, lam=0.1, width=2.7)
    )
    assert [s.index for v in TABLE_9_1 for s in monitor.update_value(v)] == [29, 30]
