"""What the window operator emits: window results and late records."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class WindowResult:
    """Statistics of one key over one window ``[start, end)`` (epoch ms).

    Window identity downstream is ``(key, kind, start)``; a row with a higher ``version`` replaces the
    row with the same identity. ``version`` is 0 when the window first closes and +1 per late update.
    ``supersedes`` is only ever non-empty for session windows: it lists ``(start, end)`` of rows emitted
    earlier for this key whose session was merged into this one (a late record bridged them or moved the
    session start); downstream deletes those identities. The row with this row's own start is never listed.
    """

    key: str
    kind: str
    start: int
    end: int
    count: int
    sum: float
    mean: float
    min: float
    max: float
    std: float
    first_ts: int
    last_ts: int
    first: float
    last: float
    p50: float | None
    p95: float | None
    p99: float | None
    slope: float | None
    version: int
    supersedes: tuple[tuple[int, int], ...] = ()


@dataclass(frozen=True, slots=True)
class LateRecord:
    """A record that came after every window it belongs to was purged; it updated nothing."""

    key: str
    ts_ms: int
    value: float
    watermark_ms: int
    reason: str
