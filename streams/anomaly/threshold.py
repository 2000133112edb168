"""From calibrated scores to anomaly events: warm-up, hysteresis, minimum duration, cooldown.

States: ``idle`` -> (``min_duration`` readings >= ``enter``) -> ``active`` -> (``exit_duration``
readings in a row < ``exit``, or ``max_duration`` readings that also span ``max_duration_ms`` of
event time) -> ``cooldown`` (``cooldown`` readings, no
new event) -> ``idle``.
One incident gives one event, however long it lasts, so alerts do not storm.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class GateStep:
    is_anomaly: bool
    opened: bool  # this reading confirmed a new event
    closed: bool  # the event open before this reading has ended (this reading is not part of it)
    start_ms: int | None  # first reading of the open (or just closed) event
    peak: float  # highest score of that event
    timed_out: bool = False  # the event was closed by max_duration, not by the score


class EventGate:
    __slots__ = (
        "enter",
        "exit",
        "min_duration",
        "exit_duration",
        "cooldown",
        "max_duration",
        "max_duration_ms",
        "warmup",
        "seen",
        "state",
        "pending",
        "pending_start",
        "start_ms",
        "length",
        "peak",
        "cool_left",
        "below",
    )

    def __init__(
        self,
        enter: float = 0.5,
        exit: float = 0.3,
        min_duration: int = 1,
        cooldown: int = 50,
        max_duration: int = 500,
        warmup: int = 0,
        exit_duration: int = 1,
        max_duration_ms: int = 0,
    ) -> None:
        self.enter = enter
        self.exit = exit
        self.min_duration = min_duration
        self.exit_duration = exit_duration
        self.cooldown = cooldown
        self.max_duration = max_duration
        self.max_duration_ms = max_duration_ms
        self.warmup = warmup
        self.seen = 0
        self.state = "idle"
        self.pending = 0
        self.pending_start: int | None = None
        self.start_ms: int | None = None
        self.length = 0
        self.peak = 0.0
        self.cool_left = 0
        self.below = 0

    def _close(self, timed_out: bool) -> GateStep:
        self.state = "cooldown" if self.cooldown else "idle"
        self.cool_left = self.cooldown
        return GateStep(False, False, True, self.start_ms, self.peak, timed_out)

    def step(self, score: float, ts_ms: int) -> GateStep:
        self.seen += 1
        if self.state == "active":
            lasted_ms = ts_ms - (ts_ms if self.start_ms is None else self.start_ms)
            if self.length >= self.max_duration and lasted_ms >= self.max_duration_ms:
                return self._close(True)
            self.below = self.below + 1 if score < self.exit else 0
            if self.below >= self.exit_duration:
                return self._close(False)
            self.length += 1
            self.peak = max(self.peak, score)
            return GateStep(True, False, False, self.start_ms, self.peak)
        if self.state == "cooldown":
            self.cool_left -= 1
            if self.cool_left <= 0:
                self.state = "idle"
            return GateStep(False, False, False, None, 0.0)
        # idle
        if self.seen <= self.warmup or score < self.enter:
            self.pending = 0
            self.pending_start = None
            return GateStep(False, False, False, None, 0.0)
        if self.pending == 0:
            self.pending_start = ts_ms
            self.peak = score
        self.pending += 1
        self.peak = max(self.peak, score)
        if self.pending < self.min_duration:
            return GateStep(False, False, False, None, 0.0)
        self.state = "active"
        self.start_ms = self.pending_start
        self.length = self.pending
        self.pending = 0
        self.below = 0
        return GateStep(True, True, False, self.start_ms, self.peak)

    @property
    def active(self) -> bool:
        return self.state == "active"

    def snapshot(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__slots__}

    @classmethod
    def from_snapshot(cls, s: Mapping[str, Any]) -> EventGate:
        g = cls()
        for k in cls.__slots__:
            if k in s or k != "max_duration_ms":  # snapshots from before it have none: 0, as they ran
                setattr(g, k, s[k])
        return g
