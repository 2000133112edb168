"""Session-window assignment: gap-based merging of one key's sessions.

Sessions of a key are disjoint: a session ``[start, last + gap)`` and the next one are at least ``gap``
apart. A record at ``ts`` belongs to a session when ``start - gap < ts < end`` (it is closer than
``gap`` to one of the session's records); it joins, extends, or bridges the sessions it touches.
"""

from __future__ import annotations

from typing import Any

from streams.windows.state import EEND, END, SUP, VER


def route_session(wins: dict[int, list[Any]], ts: int, gap: int) -> tuple[int, int, bool]:
    """Put a new record at ``ts`` into the sessions ``wins`` (start -> window list), merging as needed.

    Returns ``(start, end, reshaped)`` of the session now holding ``ts``. ``reshaped`` is False when the
    record fell inside an existing session without moving its bounds (the caller marks it changed);
    otherwise the session at ``start`` is new, extended or merged, and already marked pending. A merged
    session carries the highest version of its parts and, in ``SUP``, the emitted rows it replaces.
    """
    hits = [s for s, w in wins.items() if s - gap < ts < w[END]]
    if not hits:
        wins[ts] = [ts + gap, -1, True, -1, None]
        return ts, ts + gap, True
    if len(hits) == 1:
        s = hits[0]
        w = wins[s]
        if s <= ts and ts + gap <= w[END]:
            return s, w[END], False
    start = min(min(hits), ts)
    end = max(ts + gap, *(wins[s][END] for s in hits))
    version = -1
    emitted_end = -1
    sup: list[tuple[int, int]] = []
    for s in hits:
        w = wins.pop(s)
        version = max(version, w[VER])
        if w[SUP]:
            sup.extend(w[SUP])
        if s == start:
            emitted_end = w[EEND]
        elif w[VER] >= 0:
            sup.append((s, w[EEND]))
    wins[start] = [end, version, True, emitted_end, sup or None]
    return start, end, True
