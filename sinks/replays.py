"""Keep replayed first emissions of windows out of the rollups.

The rollups' materialized views add every version-0 tumbling window inserted into
``window_aggregates`` to their minute, hour and day buckets. ``window_aggregates`` itself absorbs a
replay (ReplacingMergeTree, one row per window identity), the rollups cannot: a window inserted again
by another block (a sink killed between write and commit and replayed with other batch cuts, so other
deduplication tokens; a stream worker re-emitting a window after a restart) would count twice.

So before a batch's window rows are inserted, :func:`drop_rolled_up` removes the version-0 tumbling
windows that ``window_aggregates`` already holds (one query per batch, by machine and time range), and
repeats of the same window within the batch. The row already stored is the same window at the same
version (the operator emits a window's version 0 once per state; a replay recomputes it from the same
readings); only its ``emitted_at`` may differ. Later versions (late updates) are never dropped: the
rollups ignore them and the table keeps the highest.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from sinks.tables import WINDOW_AGGREGATES

if TYPE_CHECKING:
    from clickhouse_connect.driver.client import Client

logger = logging.getLogger(__name__)

ROLLED_UP_KIND = "tumbling"  # the window kind the rollups take (migration 0008)

# The tumbling windows of some machines within a time range (a superset of a batch's), at any version:
# a stored later version means version 0 was inserted (the sink writes a partition in order), and a
# merge keeps only the highest version, so version 0 itself may be gone.
STORED_FIRST_EMISSIONS = (
    "SELECT DISTINCT machine_id, sensor, toUnixTimestamp64Milli(window_start), "
    "toUnixTimestamp64Milli(window_end) "
    "FROM window_aggregates "
    "WHERE window_kind = {kind:String} AND machine_id IN {machines:Array(String)} "
    "AND window_start >= fromUnixTimestamp64Milli({lo:Int64}, 'UTC') "
    "AND window_start <= fromUnixTimestamp64Milli({hi:Int64}, 'UTC')"
)

_COLS = WINDOW_AGGREGATES.columns
_MACHINE, _SENSOR, _KIND = _COLS.index("machine_id"), _COLS.index("sensor"), _COLS.index("window_kind")
_START, _END, _VERSION = _COLS.index("window_start"), _COLS.index("window_end"), _COLS.index("version")

Identity = tuple[str, str, int, int]


def _identity(row: Sequence[Any]) -> Identity | None:
    """The rollup identity of a window_aggregates row, None when the rollups do not take it."""
    if row[_VERSION] != 0 or row[_KIND] != ROLLED_UP_KIND:
        return None
    return (row[_MACHINE], row[_SENSOR], int(row[_START]), int(row[_END]))


def stored_first_emissions(client: Client, rows: Sequence[Sequence[Any]]) -> set[Identity]:
    """Identities of ``rows``' version-0 tumbling windows that window_aggregates already holds (at any
    version)."""
    wanted = {i for i in map(_identity, rows) if i is not None}
    if not wanted:
        return set()
    result = client.query(
        STORED_FIRST_EMISSIONS,
        parameters={
            "kind": ROLLED_UP_KIND,
            "machines": sorted({i[0] for i in wanted}),
            "lo": min(i[2] for i in wanted),
            "hi": max(i[2] for i in wanted),
        },
    )
    stored = {(str(m), str(s), int(a), int(b)) for m, s, a, b in result.result_rows}
    return stored & wanted


def drop_rolled_up(
    rows: Sequence[Sequence[Any]], stored: Callable[[Sequence[Sequence[Any]]], set[Identity]]
) -> list[int]:
    """Indexes of the rows to insert: without version-0 tumbling windows already stored (``stored``
    tells which) and without repeats of one within ``rows`` (the first is kept)."""
    present = stored(rows)
    keep: list[int] = []
    seen: set[Identity] = set()
    for i, row in enumerate(rows):
        ident = _identity(row)
        if ident is not None:
            if ident in present or ident in seen:
                continue
            seen.add(ident)
        keep.append(i)
    if len(keep) < len(rows):
        logger.info("%d window(s) already stored at version 0 not inserted again", len(rows) - len(keep))
    return keep
