"""The produce benchmark runs end to end (real broker) and writes a complete results file.

A smoke run with tiny sizes: the figures themselves are measured by `make bench`, not asserted here.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from benchmarks import bench_produce

pytestmark = pytest.mark.integration


def test_smoke_run_writes_every_side_and_the_headline(tmp_path: Path) -> None:
    out = tmp_path / "produce.json"
    args = ["--rounds", "2", "--seconds", "0.05", "--machines", "5", "--out", str(out)]
    assert bench_produce.main(args) == 0
    result = json.loads(out.read_text())
    sides = result["sides"]
    assert set(sides) == {"raw", "gateway", "gateway_per_scan", "gateway_all_reports"}
    for side in sides.values():
        assert len(side["rounds"]) == 2
        assert all(r["messages"] == result["workload"]["messages_per_side"] > 0 for r in side["rounds"])
    head = result["headline"]
    gateway, raw = sides["gateway"]["rounds"], sides["raw"]["rounds"]
    pairs = [g["values_per_s"] / r["values_per_s"] for g, r in zip(gateway, raw, strict=True)]
    assert head["ratio"] == round(sum(pairs) / 2, 3)  # the median of two is their mean
    assert head["goal_met"] == (head["ratio"] >= head["goal_ratio"])
    assert result["encoder"]["mismatches"] == 0
