"""Per-key state of the window operator and its JSON form.

A key's state is a time-sorted buffer of its distinct records (``tss``/``vals``) and its windows.
The buffer serves three purposes at once: de-duplication by timestamp, the exact percentiles, and
recomputing a window when it is (re-)emitted. A window is a small list ``[end, version, pending,
emitted_end, supersedes]``; ``version`` is the last emitted version (-1 = never emitted), ``pending`` is
true when the window changed since its last emission, ``emitted_end`` the end it was last emitted with,
``supersedes`` (sessions only) the ``(start, end)`` rows to retract at its next emission.

JSON form of one key (floats round-trip exactly: json writes ``repr``)::

    {"t0": 1700000000000, "dt": [0, 1000, ...], "v": [20.5, 20.25, ...],
     "w": [[start, end, version, pending 0/1, emitted_end] (+ [[s, e], ...] when it supersedes rows)]}

``dt`` are deltas between consecutive timestamps, which keeps the snapshot of a 1 Hz sensor small.
"""

from __future__ import annotations

import math
from typing import Any

from streams.windows.exceptions import SnapshotError

END, VER, PEND, EEND, SUP = range(5)


class KeyState:
    """Buffer and windows of one key."""

    __slots__ = ("tss", "vals", "wins")

    def __init__(self) -> None:
        self.tss: list[int] = []
        self.vals: list[float] = []
        self.wins: dict[int, list[Any]] = {}


def encode_key(st: KeyState) -> dict[str, Any]:
    tss = st.tss
    dt = [b - a for a, b in zip(tss, tss[1:], strict=False)]
    wins: list[list[Any]] = []
    for start in sorted(st.wins):
        w = st.wins[start]
        row: list[Any] = [start, w[END], w[VER], 1 if w[PEND] else 0, w[EEND]]
        if w[SUP]:
            row.append([list(p) for p in w[SUP]])
        wins.append(row)
    return {"t0": tss[0] if tss else 0, "dt": [0, *dt] if tss else [], "v": list(st.vals), "w": wins}


def decode_key(snap: dict[str, Any]) -> KeyState:
    st = KeyState()
    try:
        t = int(snap["t0"])
        tss: list[int] = []
        for d in snap["dt"]:
            t += int(d)
            tss.append(t)
        vals = [float(v) for v in snap["v"]]
        if len(vals) != len(tss):
            msg = f"key snapshot has {len(tss)} timestamps but {len(vals)} values"
            raise SnapshotError(msg)
        if any(b <= a for a, b in zip(tss, tss[1:], strict=False)) or not all(map(math.isfinite, vals)):
            msg = "key snapshot buffer is not strictly time-ordered or holds non-finite values"
            raise SnapshotError(msg)
        st.tss = tss
        st.vals = vals
        for row in snap["w"]:
            sup = [(int(p[0]), int(p[1])) for p in row[5]] if len(row) > 5 else None
            st.wins[int(row[0])] = [int(row[1]), int(row[2]), bool(row[3]), int(row[4]), sup]
    except SnapshotError:
        raise
    except (KeyError, TypeError, ValueError, IndexError) as exc:
        msg = f"damaged key snapshot: {exc!r}"
        raise SnapshotError(msg) from exc
    return st
