"""Run rules (Western Electric 1–4, Nelson 1–8), evaluated one point at a time.

Zones are measured in standard errors of the plotted statistic: ``z = (value − center) / sigma``;
the control limits sit at ±3 sigma (clipped where the statistic cannot go, e.g. below 0).
A rule fires on the point that completes its pattern, and again on every later point that still
completes it (a run of 10 on one side fires WE4 at points 8, 9 and 10).

==== ============================================================================
WE1  one point beyond a control limit
WE2  2 of 3 consecutive points beyond 2 sigma on the same side (this point is one of them)
WE3  4 of 5 consecutive points beyond 1 sigma on the same side (this point is one of them)
WE4  8 consecutive points on the same side of the center line
N1   one point beyond a control limit
N2   9 consecutive points on the same side of the center line
N3   6 consecutive points steadily increasing or steadily decreasing
N4   14 consecutive points alternating up and down
N5   2 of 3 consecutive points beyond 2 sigma on the same side (as WE2)
N6   4 of 5 consecutive points beyond 1 sigma on the same side (as WE3)
N7   15 consecutive points within 1 sigma of the center line (either side)
N8   8 consecutive points beyond 1 sigma, on either side
LIMIT  a point beyond a control limit, when no run rules are selected (``none``)
==== ============================================================================

A point exactly on the center line is on neither side (it ends a same-side run); equal consecutive
values end trends and alternations. State is a handful of integers: bit masks of the last 3 and 5
zone memberships and run counters, so it is small and JSON-serialisable.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from streams.spc.exceptions import SpcConfigError, SpcStateError
from streams.spc.state import Stateful

RULE_SETS: dict[str, tuple[str, ...]] = {
    "we": ("WE1", "WE2", "WE3", "WE4"),
    "nelson": ("N1", "N2", "N3", "N4", "N5", "N6", "N7", "N8"),
    "none": ("LIMIT",),
}
RULE_DESCRIPTIONS: dict[str, str] = {
    "LIMIT": "beyond a control limit",
    "WE1": "1 point beyond a control limit",
    "WE2": "2 of 3 beyond 2 sigma, same side",
    "WE3": "4 of 5 beyond 1 sigma, same side",
    "WE4": "8 in a row on one side of the center",
    "N1": "1 point beyond a control limit",
    "N2": "9 in a row on one side of the center",
    "N3": "6 in a row steadily increasing or decreasing",
    "N4": "14 in a row alternating up and down",
    "N5": "2 of 3 beyond 2 sigma, same side",
    "N6": "4 of 5 beyond 1 sigma, same side",
    "N7": "15 in a row within 1 sigma",
    "N8": "8 in a row beyond 1 sigma, either side",
}
_NO_SIGNAL: tuple[str, ...] = ()
_LIMIT = ("LIMIT",)
_FIELDS = ("up2", "dn2", "up1", "dn1", "side", "trend", "alt", "in1", "out1")


def check_rule_set(name: str) -> str:
    if name not in RULE_SETS:
        msg = f"unknown rule set {name!r}; choose one of {', '.join(RULE_SETS)}"
        raise SpcConfigError(msg)
    return name


class RuleTracker(Stateful):
    """Streaming evaluation of one rule set on the points of one chart."""

    state_type = "rules"
    __slots__ = ("rule_set", "up2", "dn2", "up1", "dn1", "side", "trend", "alt", "in1", "out1", "last")

    def __init__(self, rule_set: str = "we") -> None:
        self.rule_set = check_rule_set(rule_set)
        self.reset()

    def reset(self) -> None:
        self.up2 = self.dn2 = self.up1 = self.dn1 = 0  # bit i set: the point i steps back was in that zone
        self.side = 0  # +k: last k points above center, −k: below
        self.trend = 0  # +k: last k steps increasing, −k: decreasing
        self.alt = 0  # ±k: last k steps alternate in direction, the last one up (+) or down (−)
        self.in1 = 0  # last k points within 1 sigma
        self.out1 = 0  # last k points beyond 1 sigma
        self.last: float | None = None

    def update(self, value: float, z: float, beyond: bool) -> tuple[str, ...]:
        """Add one point; return the rules it fires (in rule-set order)."""
        rule_set = self.rule_set
        if rule_set == "none":
            return _LIMIT if beyond else _NO_SIGNAL
        up2 = self.up2 = ((self.up2 << 1) | (z > 2.0)) & 0b111
        dn2 = self.dn2 = ((self.dn2 << 1) | (z < -2.0)) & 0b111
        up1 = self.up1 = ((self.up1 << 1) | (z > 1.0)) & 0b11111
        dn1 = self.dn1 = ((self.dn1 << 1) | (z < -1.0)) & 0b11111
        side = self.side
        if z > 0.0:
            side = side + 1 if side > 0 else 1
        elif z < 0.0:
            side = side - 1 if side < 0 else -1
        else:
            side = 0
        self.side = side
        fired: list[str] = []
        zone2 = (up2 & 1 and up2.bit_count() >= 2) or (dn2 & 1 and dn2.bit_count() >= 2)
        zone1 = (up1 & 1 and up1.bit_count() >= 4) or (dn1 & 1 and dn1.bit_count() >= 4)
        if rule_set == "we":
            if beyond:
                fired.append("WE1")
            if zone2:
                fired.append("WE2")
            if zone1:
                fired.append("WE3")
            if side >= 8 or side <= -8:
                fired.append("WE4")
            return tuple(fired) if fired else _NO_SIGNAL
        # Nelson: also trends, alternation and zone-C runs.
        last = self.last
        self.last = value
        if last is None or value == last:
            self.trend = self.alt = 0
        else:
            step = 1 if value > last else -1
            trend = self.trend
            self.trend = trend + step if trend * step > 0 else step
            alt = self.alt  # sign: direction of the last step; size: length of the alternating run
            self.alt = (abs(alt) + 1) * step if alt * step < 0 else step
        if -1.0 < z < 1.0:
            self.in1 += 1
            self.out1 = 0
        elif z > 1.0 or z < -1.0:
            self.out1 += 1
            self.in1 = 0
        else:  # exactly on ±1 sigma: neither within nor beyond
            self.in1 = self.out1 = 0
        if beyond:
            fired.append("N1")
        if side >= 9 or side <= -9:
            fired.append("N2")
        if self.trend >= 5 or self.trend <= -5:
            fired.append("N3")
        if abs(self.alt) >= 13:
            fired.append("N4")
        if zone2:
            fired.append("N5")
        if zone1:
            fired.append("N6")
        if self.in1 >= 15:
            fired.append("N7")
        if self.out1 >= 8:
            fired.append("N8")
        return tuple(fired) if fired else _NO_SIGNAL

    def snapshot(self) -> dict[str, Any]:
        state = self._header()
        state["set"] = self.rule_set
        state["ints"] = [getattr(self, f) for f in _FIELDS]
        state["last"] = self.last
        return state

    def restore(self, state: Mapping[str, Any]) -> None:
        self._check_header(state)
        try:
            rule_set = check_rule_set(state["set"])
            ints = [int(i) for i in state["ints"]]
            last = None if state["last"] is None else float(state["last"])
        except (KeyError, TypeError, ValueError, SpcConfigError) as exc:
            msg = f"corrupt rules snapshot: {exc}"
            raise SpcStateError(msg) from exc
        if len(ints) != len(_FIELDS):
            msg = f"corrupt rules snapshot: expected {len(_FIELDS)} counters, got {len(ints)}"
            raise SpcStateError(msg)
        self.rule_set = rule_set
        for name, val in zip(_FIELDS, ints, strict=True):
            setattr(self, name, val)
        self.last = last
