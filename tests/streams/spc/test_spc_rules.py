"""Run rules: every Western Electric and Nelson rule fires exactly where its pattern completes, and a
sequence one point short of the pattern does not fire it.

Rule definitions: Western Electric, *Statistical Quality Control Handbook* (1956), rules 1–4;
L. S. Nelson, "The Shewhart Control Chart — Tests for Special Causes", J. Quality Technology 16(4),
1984, tests 1–8; as listed in Montgomery, *Introduction to SQC*, 6th ed., Tables 5.1 and 5.2.
Values are in standard errors (center 0, sigma 1, limits ±3), so the value is the zone score.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from streams.spc.rules import RuleTracker

Spc = Callable[..., Any]  # the `spc` fixture: runs `millstream spc ...`, returns a CliRun


def fired(rule_set: str, values: list[float]) -> dict[str, list[int]]:
    """1-based indices at which each rule fires."""
    tracker = RuleTracker(rule_set)
    out: dict[str, list[int]] = {}
    for i, v in enumerate(values, start=1):
        for rule in tracker.update(v, v, v > 3.0 or v < -3.0):
            out.setdefault(rule, []).append(i)
    return out


# (rules, pattern that completes at its last point, the same pattern one point short)
CASES = {
    "limit-high": (("WE1", "N1"), [0.5, -0.5, 3.2], [0.5, -0.5, 2.9]),
    "limit-low": (("WE1", "N1"), [0.5, -3.01], [0.5, -3.0]),  # on the limit is not beyond it
    "2of3-beyond-2": (("WE2", "N5"), [0.5, 2.5, -0.5, 2.5], [0.5, 2.5, -0.5, -0.5, 2.5]),
    "2of3-beyond-2-low": (("WE2", "N5"), [-2.1, 0.0, -2.6], [-2.1, 2.6, 0.0, -2.6]),
    "4of5-beyond-1": (("WE3", "N6"), [1.5, 1.5, 0.5, 1.5, 1.5], [1.5, 1.5, 0.5, 0.5, 1.5, 1.5]),
    "4of5-beyond-1-low": (("WE3", "N6"), [-1.2, -1.2, -1.2, 0.3, -1.2], [-1.2, -1.2, 0.3, -1.2, 0.3, -1.2]),
    "8-same-side": (("WE4",), [-0.5] + [0.5] * 8, [-0.5] + [0.5] * 7),
    "9-same-side": (("N2",), [0.5] + [-0.5] * 9, [0.5] + [-0.5] * 8),
    "6-increasing": (("N3",), [0.9, 0.0, 0.1, 0.2, 0.3, 0.4, 0.5], [0.9, 0.0, 0.1, 0.2, 0.3, 0.4]),
    "6-decreasing": (("N3",), [-0.9, 0.5, 0.4, 0.3, 0.2, 0.1, 0.0], [-0.9, 0.5, 0.4, 0.3, 0.2, 0.1]),
    "14-alternating": (("N4",), [0.5, 0.6] + [0.5, -0.5] * 7, [0.5, 0.6] + [0.5, -0.5] * 6 + [0.5]),
    "15-within-1": (("N7",), [1.5] + [0.2, -0.3, 0.4] * 5, [1.5] + [0.2, -0.3, 0.4] * 4 + [0.2, -0.3]),
    "8-beyond-1-either-side": (("N8",), [0.0] + [1.5, -1.5] * 4, [0.0] + [1.5, -1.5] * 3 + [1.5]),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_rule_fires_exactly_where_the_pattern_completes(case: str) -> None:
    rules, pattern, short = CASES[case]
    for rule in rules:
        rule_set = "we" if rule.startswith("WE") else "nelson"
        assert fired(rule_set, pattern).get(rule) == [len(pattern)], (rule, pattern)
        assert rule not in fired(rule_set, short), (rule, short)


def test_every_rule_has_a_case() -> None:
    covered = {rule for rules, _, _ in CASES.values() for rule in rules}
    assert covered == {f"WE{i}" for i in range(1, 5)} | {f"N{i}" for i in range(1, 9)}


def test_runs_keep_firing_while_the_pattern_holds() -> None:
    assert fired("we", [0.5] * 10)["WE4"] == [8, 9, 10]
    assert fired("nelson", [0.1 * i for i in range(8)])["N3"] == [6, 7, 8]


def test_a_point_on_the_center_line_ends_a_run_and_equal_values_end_a_trend() -> None:
    assert "WE4" not in fired("we", [0.5] * 4 + [0.0] + [0.5] * 7)
    assert "N3" not in fired("nelson", [0.0, 0.1, 0.2, 0.2, 0.3, 0.4, 0.5, 0.6])


def test_zone_rules_need_the_same_side() -> None:
    assert "WE2" not in fired("we", [2.5, -2.5, 0.5, 2.5])
    assert fired("we", [2.5, -2.5, 2.5])["WE2"] == [3]  # points 1 and 3 are both above 2 sigma
    assert "WE3" not in fired("we", [1.5, -1.5, 1.5, -1.5, 1.5])


def test_rule_set_none_only_signals_limits() -> None:
    assert fired("none", [0.5] * 10 + [3.5, -2.5, -2.5]) == {"LIMIT": [11]}


def test_rules_through_the_cli(tmp_path: Path, spc: Spc) -> None:
    """The same rules wired through `millstream spc imr` with known standards (center 0, sigma 1)."""
    values = [0.5, 2.5, -0.5, 2.5] + [-0.5] * 9 + [0.0, 0.1, 0.2, 0.3, 0.4, 0.5]
    path = tmp_path / "x.tsv"
    path.write_text("x\n" + "\n".join(str(v) for v in values) + "\n")
    for rule_set in ("we", "nelson"):
        out = spc(
            "imr",
            "--input",
            path,
            "--value-column",
            "x",
            "--target",
            0,
            "--sigma",
            1,
            "--rules",
            rule_set,
            "--json",
        ).json()
        got: dict[str, list[int]] = {}
        for s in out["signals"]:
            if s["chart"] == "i":
                got.setdefault(s["rule"], []).append(s["index"])
        assert got == fired(rule_set, values)
    assert got["N5"] == [4] and got["N2"] == [13] and got["N3"] == [18, 19]


# Each sequence completes one rule's pattern at its last point and no other rule's pattern anywhere
# (the N4 sequence: 1.6 then 1.5 is a step down, so the 14 alternating points start at the second).
ISOLATED = {
    "WE1": ("we", [0.5, -0.5, 3.5]),
    "WE2": ("we", [0.5, 2.5, -0.5, 2.5]),
    "WE3": ("we", [1.5, 1.5, 0.5, 1.5, 1.5]),
    "WE4": ("we", [-0.5] + [0.5] * 8),
    "N1": ("nelson", [0.5, -0.5, 3.5]),
    "N2": ("nelson", [0.5] + [-0.5] * 9),
    "N3": ("nelson", [0.9, 0.0, 0.1, 0.2, 0.3, 0.4, 0.5]),
    "N4": ("nelson", [1.6] + [1.5, -0.5] * 7),
    "N5": ("nelson", [0.5, 2.5, -0.5, 2.5]),
    "N6": ("nelson", [1.5, 1.5, 0.5, 1.5, 1.5]),
    "N7": ("nelson", [1.5] + [0.2, -0.3, 0.4] * 5),
    "N8": ("nelson", [0.0] + [1.5, -1.5] * 4),
}


@pytest.mark.parametrize("rule", sorted(ISOLATED))
def test_each_rule_alone(rule: str) -> None:
    rule_set, values = ISOLATED[rule]
    assert fired(rule_set, values) == {rule: [len(values)]}
