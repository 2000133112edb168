"""Contract of every stateful SPC class (discovered from the registry, like river's estimator checks):
snapshot() is strict JSON; restore() into a fresh, differently configured instance and continuing gives
exactly the output of an uninterrupted run; runs are deterministic; foreign snapshots are refused."""

from __future__ import annotations

import json
from collections.abc import Callable
from functools import partial
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streams.spc.charts import Chart, ChartConfig, Count, Subgroup, chart_types, make_chart
from streams.spc.exceptions import SpcStateError
from streams.spc.monitor import MonitorConfig, SpcMonitor
from streams.spc.operator import SpcOperator
from streams.spc.rules import RuleTracker
from streams.spc.state import Stateful, stateful_classes

Factory = Callable[[], Stateful]
Step = Callable[[Any, Any], Any]
Case = tuple[Factory, Factory, Step, list[Any]]  # (configured instance, fresh instance, one step, inputs)


def _values(n: int, seed: int = 3) -> list[float]:
    rng = np.random.default_rng(seed)
    x = rng.normal(50.0, 2.0, n)
    x[n // 2 :] += 3.0  # a shift, so rules and limits fire after restore too
    return [float(v) for v in x]


def _samples(chart_cls: type[Chart], n: int) -> list[Any]:
    rng = np.random.default_rng(11)
    if chart_cls.data == "counts":
        sizes = rng.integers(40, 60, n)
        return [
            Count(float(rng.binomial(s, 0.1 if i < n // 2 else 0.25)), float(s)) for i, s in enumerate(sizes)
        ]
    values = _values(4 * n)
    size = 1 if chart_cls.min_n == 1 and chart_cls.kind == "imr" else 4
    return [Subgroup.of(values[i * size : (i + 1) * size]) for i in range(n)]


def _chart_case(kind: str) -> Case:
    cls = chart_types()[kind]
    samples = _samples(cls, 60)
    config = ChartConfig(rules="nelson", lam=0.3, width=2.8, k=0.4, h=4.5)

    def fitted() -> Chart:
        chart = make_chart(kind, config)
        chart.fit(samples[:20])
        return chart

    return fitted, lambda: make_chart(kind), lambda chart, s: chart.judge(s), samples


def _monitor_case(kind: str) -> Case:
    cls = chart_types()[kind]
    if cls.data == "counts":
        inputs = _samples(cls, 60)
        config = MonitorConfig(chart=kind, phase1_count=15, rules="nelson")
        step: Step = lambda m, s: m.update_count(s.x, s.n)  # noqa: E731
    else:
        inputs = _values(180)
        config = MonitorConfig(
            chart=kind, phase1_count=10, subgroup_size=None if kind == "imr" else 3, lsl=40.0, usl=60.0
        )
        step = lambda m, v: m.update_value(v, 1000)  # noqa: E731
    return (lambda: SpcMonitor("press", "force", config)), (lambda: SpcMonitor("other", "x")), step, inputs


def _window_case() -> Case:
    values = _values(300)
    # Windows of 3-5 readings; every 7th repeats the previous window_start (a late re-emission).
    windows = [
        {
            "count": 3 + i % 3,
            "mean": float(np.mean(w)),
            "std": float(np.std(w, ddof=1)),
            "min": min(w),
            "max": max(w),
            "window_start": 1000 * (i - i % 7 // 6),
            "window_end": 1000 * (i + 1),
        }
        for i, w in enumerate(values[j : j + 3 + j % 3] for j in range(0, 240, 4))
    ]
    config = MonitorConfig(chart="xbar-s", phase1_count=10)
    step: Step = lambda m, w: m.update_window(w)  # noqa: E731
    return (lambda: SpcMonitor("w", "x", config)), (lambda: SpcMonitor("o", "y")), step, windows


def _cases() -> dict[str, list[Case]]:
    rules: list[Case] = [
        (partial(RuleTracker, rule_set), RuleTracker, lambda r, v: r.update(v, v, abs(v) > 3), v)
        for rule_set in ("we", "nelson", "none")
        for v in [[(x - 50.0) / 2.0 for x in _values(80)]]
    ]
    operator_inputs = [
        {"machine_id": f"m{i % 3}", "sensor": "temp", "value": v, "event_time": 1000 * i}
        for i, v in enumerate(_values(150))
    ]
    operator: list[Case] = [(lambda: SpcOperator(MonitorConfig(chart="ewma", phase1_count=12)), SpcOperator,
                 lambda o, r: o.process_reading(r), operator_inputs)]  # fmt: skip
    cases: dict[str, list[Case]] = {
        "rules": rules,
        "monitor": [*(_monitor_case(kind) for kind in chart_types()), _window_case()],
        "operator": operator,
    }
    for kind in chart_types():
        cases[f"chart:{kind}"] = [_chart_case(kind)]
    return cases


CASES = _cases()


def test_every_stateful_class_is_covered() -> None:
    assert set(stateful_classes()) == set(CASES)


def _roundtrip(make: Factory, fresh: Factory, step: Step, inputs: list[Any], split: int) -> None:
    whole = make()
    expected = [step(whole, x) for x in inputs]
    first = make()
    head = [step(first, x) for x in inputs[:split]]
    state = json.loads(json.dumps(first.snapshot(), allow_nan=False))
    second = fresh()
    second.restore(state)
    assert second.snapshot() == state
    tail = [step(second, x) for x in inputs[split:]]
    assert head + tail == expected
    assert second.snapshot() == whole.snapshot()


@pytest.mark.parametrize("state_type", sorted(CASES))
def test_snapshot_restore_continues_identically(state_type: str) -> None:
    for make, fresh, step, inputs in CASES[state_type]:
        for split in (0, 1, 7, len(inputs) // 2, len(inputs) - 1, len(inputs)):
            _roundtrip(make, fresh, step, inputs, split)
        a, b = make(), make()
        outputs = [step(a, x) for x in inputs]
        assert outputs == [step(b, x) for x in inputs]  # deterministic
        assert any(outputs), f"{state_type}: the inputs raise nothing, the check would be vacuous"


@pytest.mark.parametrize("state_type", sorted(CASES))
def test_foreign_or_corrupt_snapshots_are_refused(state_type: str) -> None:
    make, _, step, inputs = CASES[state_type][0]
    obj = make()
    for x in inputs[:5]:
        step(obj, x)
    other = RuleTracker() if state_type != "rules" else make_chart("imr")
    with pytest.raises(SpcStateError):
        obj.restore(other.snapshot())
    state = obj.snapshot()
    state["v"] = 99
    with pytest.raises(SpcStateError):
        make().restore(state)
    with pytest.raises(SpcStateError):
        make().restore({k: v for k, v in obj.snapshot().items() if k in ("type", "v")})


@settings(max_examples=40, deadline=None)
@given(
    kind=st.sampled_from(["imr", "xbar-r", "xbar-s", "ewma", "cusum"]),
    values=st.lists(st.floats(-1e3, 1e3, allow_nan=False), min_size=8, max_size=60),
    split=st.integers(0, 60),
)
def test_monitor_restart_anywhere_is_invisible(kind: str, values: list[float], split: int) -> None:
    """Any data, any restart point: restored monitors emit the uninterrupted monitor's signals."""
    config = MonitorConfig(chart=kind, phase1_count=4, subgroup_size=None if kind == "imr" else 2)
    _roundtrip(
        lambda: SpcMonitor("m", "s", config),
        lambda: SpcMonitor("x", "y"),
        lambda m, v: m.update_value(v),
        values,
        min(split, len(values)),
    )
