"""Edge cases a quality engineer meets: constant data (sigma 0), too short a phase I, settings that
changed across a restart, missing values in a file.

Sources
- [M] D. C. Montgomery, *Introduction to Statistical Quality Control*, 6th ed., Wiley 2009.
  §9.1, the tabular CUSUM C⁺ᵢ = max(0, xᵢ − (μ0 + K) + C⁺ᵢ₋₁), C⁻ᵢ = max(0, (μ0 − K) − xᵢ + C⁻ᵢ₋₁),
  K = kσ, H = hσ, a signal when C⁺ᵢ or C⁻ᵢ exceeds H.
- [Q] L. Scrucca, qcc reference manual: ``qcc.groups`` and every chart drop NA observations, so a
  subgroup with a missing value is charted with the values it has.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from streams.spc.monitor import MonitorConfig, SpcMonitor

Spc = Callable[..., Any]  # the `spc` fixture: runs `millstream spc ...`, returns a CliRun


# -- sigma 0 --------------------------------------------------------------------------------------
def _tabular_cusum(x: list[float], mu0: float, big_k: float, big_h: float) -> tuple[list[float], list[int]]:
    """[M] §9.1 in data units, written out independently: (C⁺ per point, 1-based signalling points)."""
    up = down = 0.0
    uppers, out = [], []
    for i, v in enumerate(x, start=1):
        up = max(0.0, v - (mu0 + big_k) + up)
        down = max(0.0, (mu0 - big_k) - v + down)
        uppers.append(up)
        if up > big_h or down > big_h:
            out.append(i)
    return uppers, out


def test_cusum_on_a_constant_baseline_signals_any_departure(tmp_path: Path, spc: Spc) -> None:
    """A constant baseline gives σ̂ = 0, hence K = kσ̂ = 0 and H = hσ̂ = 0: [M]'s sums then exceed H at
    the first departure from μ0. The I and EWMA charts already signal there; CUSUM must not stay quiet."""
    x = [5.0] * 5 + [6.0, 5.0, 7.0, 4.0]
    path = tmp_path / "const.csv"
    path.write_text("x\n" + "\n".join(str(v) for v in x) + "\n")
    out = spc("cusum", "--input", path, "--value-column", "x", "--phase1-count", 5, "--json").json()
    uppers, expected = _tabular_cusum(x, mu0=5.0, big_k=0.0, big_h=0.0)
    assert expected == [6, 7, 8, 9]
    assert out["sigma"] == 0.0
    assert [s["index"] for s in out["signals"]] == expected
    assert [p["upper"] for p in out["points"]] == uppers
    monitor = SpcMonitor("m", "x", MonitorConfig(chart="cusum", phase1_count=5))
    signals = [s for v in x for s in monitor.update_value(v)]
    assert [s.index for s in signals] == expected
    state = json.loads(json.dumps(monitor.snapshot(), allow_nan=False))  # sums stay finite JSON numbers
    assert SpcMonitor.from_snapshot(state).snapshot() == monitor.snapshot()


# -- phase I too short ----------------------------------------------------------------------------
def test_a_phase_one_too_short_for_the_chart_is_refused_at_start_up() -> None:
    """MR̄ needs 2 values ([M] ch. 6, individuals chart: σ̂ = MR̄/d2 over consecutive pairs), and a
    center needs at least one sample. Before, SpcSettings(phase1_count=1) was accepted and the first
    window of every key raised SpcConfigError inside the running stream job (uncaught there)."""
    from pydantic import ValidationError

    from streams.spc.config import SpcSettings
    from streams.spc.exceptions import SpcConfigError

    for count in (0, 1):
        with pytest.raises(ValidationError, match="MILLSTREAM_SPC_.*phase1_count"):
            SpcSettings(phase1_count=count)
        for chart in ("imr", "ewma", "cusum"):
            with pytest.raises(SpcConfigError, match="phase I needs 2"):
                MonitorConfig(chart=chart, phase1_count=count)
    with pytest.raises(SpcConfigError, match="phase I needs 1"):
        MonitorConfig(chart="xbar-r", phase1_count=0)
    with pytest.raises(SpcConfigError, match="phase I needs 1"):
        MonitorConfig(chart="imr", phase1_count=0, sigma=1.0)  # the center still needs a sample
    # What is enough: 2 individuals; 1 subgroup; nothing when both standards are known.
    assert SpcSettings(phase1_count=2).phase1_count == 2
    assert MonitorConfig(chart="xbar-s", phase1_count=1).phase1_count == 1
    assert MonitorConfig(chart="c", phase1_count=0, target=4.0).phase1_count == 0
    assert SpcSettings(phase1_count=0, target=10.0, sigma=1.0, sensors="temperature").phase1_count == 0
    with pytest.raises(ValidationError, match="lsl"):
        SpcSettings(lsl=2.0, usl=1.0, sensors="temperature")


# -- restart under changed settings ---------------------------------------------------------------
def _window(i: int, mean: float) -> dict[str, Any]:
    return {
        "machine_id": "m1", "sensor": "temperature", "count": 1, "mean": mean, "std": 0.0,
        "min": mean, "max": mean, "window_start": 1000 * i, "window_end": 1000 * (i + 1),
    }  # fmt: skip


def test_a_restart_under_changed_settings_starts_a_new_phase_one(caplog: pytest.LogCaptureFixture) -> None:
    """Limits survive a restart under the same settings (README, "Statistical process control"). Before,
    a key restored under new MILLSTREAM_SPC_* settings (here: EWMA with Nelson rules instead of I-MR with
    WE rules) silently kept its old chart and rules forever; new keys got the new ones."""
    from streams.spc.operator import SpcOperator

    old = SpcOperator(MonitorConfig(chart="imr", rules="we", phase1_count=5))
    for i in range(8):
        old.process_window(_window(i, float(i % 2)))
    state = json.loads(json.dumps(old.snapshot_key("m1", "temperature")))

    same = SpcOperator(MonitorConfig(chart="imr", rules="we", phase1_count=5))
    assert same.restore_key(state).snapshot() == state  # unchanged settings: exactly where it stopped

    new = MonitorConfig(chart="ewma", rules="nelson", phase1_count=5)
    operator = SpcOperator(new)
    with caplog.at_level("WARNING", logger="streams.spc.operator"):
        monitor = operator.restore_key(state)
    assert monitor.config == new and monitor.chart.kind == "ewma"
    assert monitor.phase == 1 and monitor.limits is None  # a new baseline under the new settings
    assert "chart 'imr' -> 'ewma'" in caplog.text and "rules 'we' -> 'nelson'" in caplog.text
    # A window the old monitor already took, re-emitted after the restart, is not taken again.
    assert operator.process_window(_window(7, 1.0)) == [] and monitor.skipped == 1
    for i in range(8, 13):
        operator.process_window(_window(i, float(i % 2)))
    assert monitor.phase == 2  # five new windows formed the new phase I
    # Sample numbers go on after the 8 the old chart judged: spc_signals (keyed by machine, sensor,
    # chart, rule, point_index) must not replace an old signal with a new one of the same number.
    jump = operator.process_window(_window(13, 100.0))
    assert [(s.index, s.chart, s.rule) for s in jump] == [(8 + 6, "ewma", "LIMIT")]
    restored = SpcOperator(new).restore_key(
        json.loads(json.dumps(operator.snapshot_key("m1", "temperature")))
    )
    assert [s.index for s in restored.update_window(_window(14, 100.0))] == [15]


# -- stream job settings that cannot mean what they say --------------------------------------------
def test_stream_settings_that_would_apply_to_every_sensor_or_to_nothing_are_refused() -> None:
    """The stream job feeds each monitor its windows (PartitionProcessor._analyse → process_window):
    one window is one subgroup, so MILLSTREAM_SPC_SUBGROUP_SIZE (which only SpcMonitor.update_value
    reads) changed nothing. And one process mean, sigma or spec limit describes one characteristic: the
    same MILLSTREAM_SPC_TARGET for temperature (°C) and pressure (bar) is a wrong center for all but one.
    Before, both were accepted without a word."""
    from pydantic import ValidationError

    from streams.spc.config import SpcSettings

    with pytest.raises(ValidationError, match="SUBGROUP_SIZE does not apply to the stream job"):
        SpcSettings(chart="xbar-r", subgroup_size=5)
    for field in ("target", "sigma", "lsl", "usl"):
        with pytest.raises(ValidationError, match="set MILLSTREAM_SPC_SENSORS to the one sensor"):
            SpcSettings(**{field: 1.0})
        with pytest.raises(ValidationError, match="each of pressure, temperature"):
            SpcSettings(**{field: 1.0}, sensors="temperature,pressure")
    one = SpcSettings(target=60.0, sigma=0.5, lsl=58.0, usl=62.0, sensors="temperature")
    assert one.charted == frozenset({"temperature"})
    assert (one.monitor_config().target, one.monitor_config().usl) == (60.0, 62.0)


# -- missing values -------------------------------------------------------------------------------
def test_missing_values_are_left_out_of_their_subgroup(tmp_path: Path, spc: Spc) -> None:
    """[Q] charts subgroups with the values they have. Subgroups {5, NA, 6} and {"", 4, 5} become
    n = 2 subgroups: x̄ = 5.5 and 4.5, R = 1 and 1, so x̿ = 5, R̄ = 1 and, with A2(2) = 1.880 and
    D4(2) = 3.267 ([M] Appendix VI), UCL = 6.880, LCL = 3.120, R chart UCL = 3.267. Subgroup 3 has no
    value at all and is not charted; subgroup 4 = {7, 8} (x̄ = 7.5) is beyond the UCL. Before, the
    first "NA" stopped the command ("'NA' is not a finite number")."""
    path = tmp_path / "na.csv"
    path.write_text("x,g,t\n5,1,TRUE\nNA,1,TRUE\n6,1,TRUE\n,2,TRUE\n4,2,TRUE\n5,2,TRUE\nNA,3,FALSE\n,3,FALSE\n"
                    "7,4,FALSE\n8,4,FALSE\n")  # fmt: skip
    args = ("xbar-r", "--input", path, "--value-column", "x", "--subgroup-column", "g")
    args += ("--phase1-column", "t")
    out = spc(*args, "--json").json()
    assert [p["label"] for p in out["points"]] == ["1", "2", "4"]
    assert [p["value"] for p in out["points"]] == [5.5, 4.5, 7.5]
    assert out["center"] == 5.0 and out["phase1"] == 2
    assert out["ucl"] == pytest.approx(5 + 1.880, abs=5e-4)
    assert out["lcl"] == pytest.approx(5 - 1.880, abs=5e-4)
    assert out["secondary"]["ucl"] == pytest.approx(3.267, abs=5e-4)
    assert [(s["index"], s["chart"], s["rule"]) for s in out["signals"]] == [(3, "xbar", "WE1")]
    assert (out["missing"], out["dropped"]) == (4, ["3"])
    text = spc(*args).out
    assert "4 missing values left out; samples without any value, not charted: 3" in text
    # Counts: a row without a count or a size is not a sample (p̄ = (3 + 4)/(50 + 50) = 0.07).
    counts = tmp_path / "counts.csv"
    counts.write_text("x,n\n3,50\nNA,50\n5,\n4,50\n")
    p = spc("p", "--input", counts, "--value-column", "x", "--size-column", "n", "--json").json()
    assert p["center"] == pytest.approx(0.07, rel=1e-12) and p["dropped"] == ["2", "3"]
    # Still refused: a value that is there but is not a number.
    path.write_text("x\n1\nabc\n")
    bad = spc("imr", "--input", path, "--value-column", "x")
    assert bad.rc == 1 and "'abc' is not a finite number" in bad.err


def test_the_c_chart_refuses_samples_of_different_sizes(qcc: Path, spc: Spc) -> None:
    """c̄ ± 3√c̄ assumes every sample is the same inspection unit; with variable sizes the chart is the
    u chart, ū ± 3√(ū/nᵢ) ([M] ch. 7, the dyed-cloth example). Before, `c --size-column size` on the
    dyed cloth read the sizes and ignored them: one c̄ = 15.3 for samples of 8 to 13 units."""
    bad = spc("c", "--input", qcc / "dyedcloth.txt", "--value-column", "x", "--size-column", "size")
    assert bad.rc == 1 and "use the u chart" in bad.err
    # One size throughout (the circuit boards, 100 each) is what the c chart is for.
    same = spc("c", "--input", qcc / "circuit.txt", "--value-column", "x", "--size-column", "size", "--json")
    assert same.json()["chart"] == "c"


def test_windows_too_small_for_a_subgroup_chart_are_reported_once(caplog: pytest.LogCaptureFixture) -> None:
    """A range or standard deviation needs 2+ readings ([M] ch. 6, X̄ and R charts), so X̄-R skips
    single-reading windows; with a window spec that only gives such windows the key never leaves
    phase I. Before, that was logged at DEBUG only."""
    monitor = SpcMonitor("m1", "temperature", MonitorConfig(chart="xbar-r", phase1_count=3))
    with caplog.at_level("DEBUG", logger="streams.spc.monitor"):
        for i in range(5):
            assert monitor.update_window(_window(i, 1.0)) == []
    warnings = [r for r in caplog.records if r.levelname == "WARNING"]
    assert len(warnings) == 1 and "needs subgroups of 2+" in warnings[0].getMessage()
    assert monitor.skipped == 5 and monitor.phase == 1


def test_phase_one_signals_are_pointed_out(qcc: Path, spc: Spc) -> None:
    """[M] Ex. 7.1: in the orange-juice phase I, samples 15 and 23 plot above the UCL; the book drops
    them (assignable causes) and revises the limits. [M] Ex. 6.3: the piston-ring phase I is in control.
    Before, the text output listed such signals among all others without saying the baseline failed."""
    juice = ("p", "--input", qcc / "orangejuice.txt", "--value-column", "D", "--size-column", "size")
    out = spc(*juice, "--phase1-column", "trial", "--rules", "none").out
    assert "  phase I samples with signals: 15, 23\n" in out
    rings = ("xbar-r", "--input", qcc / "pistonrings.txt", "--value-column", "diameter")
    out = spc(*rings, "--subgroup-column", "sample", "--phase1-column", "trial").out
    assert "phase I samples with signals" not in out


@pytest.mark.parametrize("kind", ["imr", "ewma", "cusum"])
def test_no_moving_range_spans_a_missing_value(tmp_path: Path, spc: Spc, kind: str) -> None:
    """Individuals 1, 2, NA, 10, 11, 12: the moving ranges of consecutive values are |2 − 1|,
    |11 − 10| and |12 − 11|, so MR̄ = 1 and σ̂ = MR̄/d2(2) = 1/1.128 ([M] ch. 6, individuals chart;
    d2(2) from App. VI). A moving range from 2 to 10 is not one of consecutive observations (Minitab
    leaves such ranges out); counting it would give MR̄ = 11/4 and a σ̂ 2.75 times too large."""
    path = tmp_path / "gap.csv"
    path.write_text("x\n1\n2\nNA\n10\n11\n12\n")
    out = spc(kind, "--input", path, "--value-column", "x", "--json").json()
    assert out["sigma"] == pytest.approx(1 / 1.128, rel=5e-4)
    if kind == "imr":
        assert out["secondary"]["center"] == pytest.approx(1.0, rel=1e-12)
        mr = {p["index"]: p["value"] for p in out["secondary"]["points"]}
        assert mr == {2: 1.0, 4: 1.0, 5: 1.0}  # sample 3 (the 10) starts afresh after the gap
    only_gap = tmp_path / "only_gap.csv"
    only_gap.write_text("x\n1\nNA\n10\n")  # no two consecutive values: no moving range at all
    bad = spc(kind, "--input", only_gap, "--value-column", "x")
    assert bad.rc == 1 and "moving ranges" in bad.err
