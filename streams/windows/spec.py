"""Window specifications: what a window is, parsed from strings like ``tumbling:10s``.

Kinds (all times are integer epoch milliseconds, windows are half-open ``[start, end)``):

* ``tumbling:<size>``: ``[k*size, (k+1)*size)``, aligned to epoch 0. One window per record.
* ``hopping:<size>/<step>``: ``[k*step, k*step + size)``, aligned to epoch 0; ``step <= size``. A record
  is in every window whose start lies in ``(ts - size, ts]`` (``size/step`` windows when step divides size).
* ``sliding:<size>``: Kafka Streams' sliding windows, restricted to the windows that end at a record: for
  every distinct record time ``t`` of a key there is one window holding the key's records with
  ``t - size <= ts <= t`` (Kafka's inclusive ``timeDifference``), reported as ``[t - size, t + 1)``.
  Kafka Streams also materialises "right" windows that start just after a record; we do not.
* ``session:<gap>``: per key, records closer than ``gap`` (``next - previous < gap``) form one session,
  reported as ``[first_ts, last_ts + gap)``. A record that bridges two sessions merges them.

Durations are an integer followed by ``ms``, ``s``, ``m`` or ``h``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from streams.windows.exceptions import WindowSpecError

WindowKind = Literal["tumbling", "hopping", "sliding", "session"]
KINDS: tuple[WindowKind, ...] = ("tumbling", "hopping", "sliding", "session")

_UNITS = {"ms": 1, "s": 1_000, "m": 60_000, "h": 3_600_000}
_DURATION = re.compile(r"^\s*(\d+)\s*(ms|s|m|h)\s*$")


def parse_duration_ms(text: str) -> int:
    """``"10s"`` -> 10000. Units: ms, s, m, h; the number must be a positive integer."""
    m = _DURATION.match(text)
    if m is None:
        msg = f"bad duration {text!r}: expected an integer followed by ms, s, m or h (e.g. 10s)"
        raise WindowSpecError(msg)
    ms = int(m.group(1)) * _UNITS[m.group(2)]
    if ms <= 0:
        msg = f"bad duration {text!r}: must be positive"
        raise WindowSpecError(msg)
    return ms


def format_duration_ms(ms: int) -> str:
    """Shortest exact text for a duration: 10000 -> ``10s``, 1500 -> ``1500ms``."""
    for unit in ("h", "m", "s"):
        if ms % _UNITS[unit] == 0:
            return f"{ms // _UNITS[unit]}{unit}"
    return f"{ms}ms"


@dataclass(frozen=True)
class WindowSpec:
    """A window kind and its durations. Build with the constructor or ``WindowSpec.parse``."""

    kind: WindowKind
    size_ms: int | None = None
    step_ms: int | None = None
    gap_ms: int | None = None

    def __post_init__(self) -> None:
        kind = self.kind
        if kind not in KINDS:
            msg = f"unknown window kind {kind!r}; expected one of {', '.join(KINDS)}"
            raise WindowSpecError(msg)
        for name in ("size_ms", "step_ms", "gap_ms"):
            v = getattr(self, name)
            if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v <= 0):
                msg = f"{kind} window: {name} must be a positive integer number of ms, got {v!r}"
                raise WindowSpecError(msg)
        need = {
            "tumbling": ("size_ms",),
            "hopping": ("size_ms", "step_ms"),
            "sliding": ("size_ms",),
            "session": ("gap_ms",),
        }[kind]
        for name in ("size_ms", "step_ms", "gap_ms"):
            given = getattr(self, name) is not None
            if given != (name in need):
                what = "needs" if name in need else "takes no"
                msg = f"{kind} window {what} {name}"
                raise WindowSpecError(msg)
        if kind == "hopping" and self.step_ms > self.size_ms:  # type: ignore[operator]
            msg = f"hopping window: step {self.step_ms} ms is larger than size {self.size_ms} ms (gaps)"
            raise WindowSpecError(msg)

    @classmethod
    def parse(cls, text: str) -> WindowSpec:
        """``tumbling:10s``, ``hopping:60s/10s`` (size/step), ``sliding:10s``, ``session:30s`` (gap)."""
        kind, sep, rest = text.strip().partition(":")
        kind = kind.strip().lower()
        if not sep or not rest.strip():
            msg = f"bad window spec {text!r}: expected kind:duration, e.g. tumbling:10s or hopping:60s/10s"
            raise WindowSpecError(msg)
        if kind == "hopping":
            size, slash, step = rest.partition("/")
            if not slash:
                msg = f"bad window spec {text!r}: hopping needs size/step, e.g. hopping:60s/10s"
                raise WindowSpecError(msg)
            return cls("hopping", size_ms=parse_duration_ms(size), step_ms=parse_duration_ms(step))
        if kind in ("tumbling", "sliding"):
            return cls(kind, size_ms=parse_duration_ms(rest))  # type: ignore[arg-type]
        if kind == "session":
            return cls("session", gap_ms=parse_duration_ms(rest))
        msg = f"bad window spec {text!r}: unknown kind {kind!r}; expected one of {', '.join(KINDS)}"
        raise WindowSpecError(msg)

    def __str__(self) -> str:
        if self.kind == "hopping":
            return f"hopping:{format_duration_ms(self.size_ms)}/{format_duration_ms(self.step_ms)}"  # type: ignore[arg-type]
        if self.kind == "session":
            return f"session:{format_duration_ms(self.gap_ms)}"  # type: ignore[arg-type]
        return f"{self.kind}:{format_duration_ms(self.size_ms)}"  # type: ignore[arg-type]
