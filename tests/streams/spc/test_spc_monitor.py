"""The streaming monitor and the offline CLI share one core: a replayed file gives the CLI's signals."""

from __future__ import annotations

import json
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from pydantic import ValidationError

from streams.spc.exceptions import SpcConfigError, SpcInputError
from streams.spc.monitor import MonitorConfig, SpcMonitor, SpcSignal
from streams.spc.operator import SpcOperator

Spc = Callable[..., Any]  # the `spc` fixture: runs `millstream spc ...`, returns a CliRun


def _lim(monitor: SpcMonitor) -> dict[str, float]:
    assert monitor.limits is not None, "the monitor is still in phase I"
    return monitor.limits


def _rows(path: Path) -> list[list[str]]:
    return [line.split() for line in path.read_text().splitlines()[1:] if line.strip()]


def _cli_signals(out: dict[str, Any]) -> list[tuple[int, str, str]]:
    return [(s["index"], s["chart"], s["rule"]) for s in out["signals"]]


def _monitor_signals(signals: list[SpcSignal]) -> list[tuple[int, str, str]]:
    return [(s.index, s.chart, s.rule) for s in signals]


# (chart, file, CLI options, monitor config, how the monitor is fed)
REPLAYS = [
    ("xbar-r", "pistonrings.txt", "--value-column diameter --subgroup-column sample --phase1-column trial",
     dict(subgroup_size=5, phase1_count=25), "values"),
    ("xbar-s", "pistonrings.txt",
     "--value-column diameter --subgroup-size 5 --phase1-count 25 --rules nelson",
     dict(subgroup_size=5, phase1_count=25, rules="nelson"), "values"),
    ("imr", "viscosity.txt", "--value-column viscosity --phase1-column trial",
     dict(phase1_count=20), "values"),
    ("imr", "pistonrings.txt", "--value-column diameter --phase1-count 125 --rules nelson",
     dict(phase1_count=125, rules="nelson"), "values"),
    ("ewma", "viscosity.txt", "--value-column viscosity --phase1-count 20 --lambda 0.2 --L 2.7",
     dict(phase1_count=20, lam=0.2, width=2.7), "values"),
    ("cusum", "pistonrings.txt",
     "--value-column diameter --subgroup-column sample --phase1-column trial --h 4",
     dict(subgroup_size=5, phase1_count=25, h=4.0), "values"),
    ("p", "orangejuice.txt", "--value-column D --size-column size --phase1-column trial",
     dict(phase1_count=30), "counts"),
    ("np", "orangejuice2.txt", "--value-column D --size-column size --phase1-column trial --rules nelson",
     dict(phase1_count=24, rules="nelson"), "counts"),
    ("c", "circuit.txt", "--value-column x --phase1-column trial", dict(phase1_count=26), "counts"),
    ("u", "pcmanufact.txt", "--value-column x --size-column size --rules none",
     dict(phase1_count=20, rules="none"), "counts"),
]  # fmt: skip


def _replay(monitor: SpcMonitor, path: Path, feed: str, restart_at: int | None = None) -> list[SpcSignal]:
    """Feed the file's rows in order; optionally stop, snapshot to JSON and continue in a new monitor."""
    header = path.read_text().splitlines()[0].split()
    signals: list[SpcSignal] = []
    for i, row in enumerate(_rows(path)):
        if restart_at is not None and i == restart_at:
            state = json.loads(json.dumps(monitor.snapshot(), allow_nan=False))
            monitor = SpcMonitor.from_snapshot(state)
        rec = dict(zip(header, row, strict=True))
        if feed == "values":
            value = rec.get("diameter") or rec["viscosity"]
            signals += monitor.update_value(float(value), event_time=1_700_000_000_000 + 1000 * i)
        else:
            signals += monitor.update_count(float(rec.get("D") or rec["x"]), float(rec["size"]))
    return signals


@pytest.mark.parametrize(
    ("kind", "name", "args", "config", "feed"), REPLAYS, ids=[f"{r[0]}-{r[1]}" for r in REPLAYS]
)
def test_streaming_monitor_equals_cli_on_a_replayed_file(
    qcc: Path, spc: Spc, kind: str, name: str, args: str, config: dict[str, Any], feed: str
) -> None:
    out = spc(kind, "--input", qcc / name, *args.split(), "--json").json()
    monitor = SpcMonitor("replay", "sensor", MonitorConfig(chart=kind, **config))
    signals = _replay(monitor, qcc / name, feed)
    assert _monitor_signals(signals) == _cli_signals(out)
    # The limits carried by the signals are the CLI's per-point limits.
    points = {p["index"]: p for p in out["points"]}
    for s in signals:
        if s.chart == out["chart"]:
            assert (s.lcl, s.ucl) == pytest.approx(
                (points[s.index]["lcl"], points[s.index]["ucl"]), rel=1e-12
            )
    # A restart in the middle of phase I and one in phase II change nothing.
    rows = len(_rows(qcc / name))
    for restart_at in (3, rows - 5):
        again = _replay(
            SpcMonitor("replay", "sensor", MonitorConfig(chart=kind, **config)), qcc / name, feed, restart_at
        )
        assert _monitor_signals(again) == _monitor_signals(signals)


def test_some_replays_do_signal(qcc: Path, spc: Spc) -> None:
    """Guard against a vacuous equality above: most of the replayed files raise signals."""
    raising = 0
    for kind, name, args, _, _ in REPLAYS:
        raising += bool(spc(kind, "--input", qcc / name, *args.split(), "--json").json()["signals"])
    assert raising >= 8


def _pistonring_windows(qcc: Path) -> list[dict[str, Any]]:
    groups: OrderedDict[str, list[float]] = OrderedDict()
    for diameter, sample, _ in _rows(qcc / "pistonrings.txt"):
        groups.setdefault(sample, []).append(float(diameter))
    windows = []
    for i, values in enumerate(groups.values()):
        x = np.array(values)
        windows.append(
            {
                "machine_id": "ring-press-1",
                "sensor": "diameter",
                "count": len(x),
                "mean": float(x.mean()),
                "std": float(x.std(ddof=1)),
                "min": float(x.min()),
                "max": float(x.max()),
                "window_start": 60_000 * i,
                "window_end": 60_000 * (i + 1),
            }
        )
    return windows


@pytest.mark.parametrize("kind", ["xbar-r", "xbar-s"])
def test_window_aggregates_as_subgroups(qcc: Path, spc: Spc, kind: str) -> None:
    out = spc(
        kind,
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
    operator = SpcOperator(MonitorConfig(chart=kind, phase1_count=25))
    signals = [s for w in _pistonring_windows(qcc) for s in operator.process_window(w)]
    assert _monitor_signals(signals) == _cli_signals(out)
    s37 = next(s for s in signals if s.index == 37)
    assert (s37.window_start, s37.window_end) == (36 * 60_000, 37 * 60_000)
    assert s37.to_dict()["machine"] == "ring-press-1"


def test_imr_of_window_means_and_small_windows_skipped(qcc: Path) -> None:
    windows = _pistonring_windows(qcc)
    imr = SpcMonitor("m", "d", MonitorConfig(chart="imr", phase1_count=25))
    for w in windows:
        imr.update_window(w)
    assert _lim(imr)["center"] == pytest.approx(np.mean([w["mean"] for w in windows[:25]]), rel=1e-12)
    xbar = SpcMonitor("m", "d", MonitorConfig(chart="xbar-r", phase1_count=2))
    assert xbar.update_window({**windows[0], "count": 1, "std": 0.0}) == []
    assert xbar.skipped == 1 and xbar.phase == 1
    xbar.update_window(windows[1])
    assert (
        xbar.update_window({**windows[1], "version": 1, "count": 6}) == []
    )  # late re-emission: not re-judged
    assert xbar.skipped == 2 and xbar.chart.count == 0 and len(xbar.snapshot()["phase1"]) == 1


def test_phase_one_then_frozen_limits() -> None:
    monitor = SpcMonitor("m", "s", MonitorConfig(chart="imr", phase1_count=10))
    for v in [10.0, 11.0] * 5:
        assert monitor.phase == 1
        monitor.update_value(v)
    assert monitor.phase == 2
    frozen = dict(_lim(monitor))
    assert frozen["center"] == 10.5 and frozen["sigma"] == pytest.approx(1.0 / 1.1283791670955126)
    shifted = [s for _ in range(20) for s in monitor.update_value(14.0)]
    assert monitor.limits == frozen  # phase II never re-estimates
    assert shifted[0].rule == "WE1" and shifted[0].index == 11 and shifted[0].value == 14.0
    assert shifted[0].ucl == pytest.approx(10.5 + 3 / 1.1283791670955126)


def test_operator_keeps_one_monitor_per_machine_and_sensor() -> None:
    operator = SpcOperator(
        MonitorConfig(chart="imr", phase1_count=5),
        overrides={"pressure": MonitorConfig(chart="ewma", phase1_count=5)},
    )
    for i in range(12):
        for machine in ("press-1", "press-2"):
            for sensor in ("temperature", "pressure"):
                operator.process_reading(
                    {"machine_id": machine, "sensor": sensor, "value": float(i % 3), "event_time": 1000 * i}
                )
    assert len(operator.monitors) == 4
    assert operator.monitor("press-1", "pressure").chart.kind == "ewma"
    assert operator.monitor("press-2", "temperature").chart.count == 12
    state = operator.snapshot_key("press-2", "temperature")
    fresh = SpcOperator(MonitorConfig(chart="imr", phase1_count=5))  # the same settings: limits carry on
    assert fresh.restore_key(json.loads(json.dumps(state))).snapshot() == state


def test_monitor_input_errors() -> None:
    with pytest.raises(SpcConfigError):
        MonitorConfig(chart="p", subgroup_size=5)
    with pytest.raises(SpcConfigError):
        MonitorConfig(chart="hist")
    with pytest.raises(SpcConfigError):
        SpcMonitor("m", "s", MonitorConfig(chart="p")).update_value(1.0)
    with pytest.raises(SpcInputError):
        SpcMonitor("m", "s").update_value(float("nan"))
    with pytest.raises(SpcInputError):
        SpcMonitor("m", "s", MonitorConfig(chart="xbar-s")).update_window({"count": 3, "mean": 1.0})
    with pytest.raises(SpcConfigError):  # phase I of one value cannot estimate a moving range
        SpcMonitor("m", "s", MonitorConfig(chart="imr", phase1_count=1)).update_value(1.0)


def test_settings_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    from streams.spc.config import SpcSettings

    monkeypatch.setenv("MILLSTREAM_SPC_CHART", "xbar-s")
    monkeypatch.setenv("MILLSTREAM_SPC_PHASE1_COUNT", "20")
    monkeypatch.setenv("MILLSTREAM_SPC_RULES", "nelson")
    config = SpcSettings().monitor_config()
    assert (config.chart, config.subgroup_size, config.rules, config.phase1_count) == (
        "xbar-s",
        None,
        "nelson",
        20,
    )
    monkeypatch.setenv("MILLSTREAM_SPC_RULES", "iso")
    with pytest.raises(ValidationError, match="unknown rule set; choose one of we, nelson, none"):
        SpcSettings()  # refused when read: the stream job stops at start-up, naming the variable
