"""Exact rebuild of the rollups for whole days: ``millstream rollups rebuild --from D --to D``.

The materialized views roll up each tumbling window once, at its first emission (version 0); a
version-0 window written twice by different inserts counts twice (see migration 0008). A rebuild
goes a day at a time: it deletes the day's rows from rollup_1m, rollup_1h and rollup_1d and inserts
rollup_1m again from ``window_aggregates FINAL`` (the latest version of each window, late updates
included); the cascade views fill rollup_1h and rollup_1d from that insert. Rebuild days that are
complete (older than the stream job's allowed lateness) and while no sink writes those days.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from sinks.clickhouse import error_text
from sinks.exceptions import SinkError

if TYPE_CHECKING:
    from clickhouse_connect.driver.client import Client

logger = logging.getLogger(__name__)

_DELETE = (
    "ALTER TABLE {table:Identifier} DELETE WHERE toDate(bucket) BETWEEN {first:Date} AND {last:Date} "
    "SETTINGS mutations_sync = 2"
)
# Same states as mv_rollup_1m (infra/clickhouse/migrations/0008_rollups.sql), from the final rows.
_INSERT = """
INSERT INTO rollup_1m
SELECT
    machine_id,
    sensor,
    toStartOfMinute(window_start) AS bucket,
    any(plant) AS plant,
    any(line) AS line,
    any(unit) AS unit,
    countState() AS windows,
    sumState(count) AS n,
    sumState(sum) AS sum,
    sumState(if(count > 1, std * std * (count - 1), 0) + count * mean * mean) AS sum_sq,
    minState(min) AS min,
    maxState(max) AS max,
    argMinState(first, first_ts) AS first,
    argMaxState(last, last_ts) AS last
FROM window_aggregates FINAL
WHERE window_kind = 'tumbling' AND toDate(window_start) BETWEEN {first:Date} AND {last:Date}
GROUP BY machine_id, sensor, bucket
"""
_ROLLUPS = ("rollup_1m", "rollup_1h", "rollup_1d")
_EXISTS = "EXISTS TABLE {t:Identifier}"
_ROLLUP_ROWS = (
    "SELECT count() FROM {table:Identifier} WHERE toDate(bucket) BETWEEN {first:Date} AND {last:Date}"
)
_COUNT = (
    "SELECT count() FROM window_aggregates FINAL "
    "WHERE window_kind = 'tumbling' AND toDate(window_start) BETWEEN {first:Date} AND {last:Date}"
)


@dataclass
class Rebuilt:
    windows: int = 0  # final windows the rollups were recomputed from
    kept: list[dt.date] = field(default_factory=list)  # days left alone: rollups but no windows any more


def rebuild(
    client: Client, first: dt.date, last: dt.date, progress: Callable[[int, int, str], None] | None = None
) -> Rebuilt:
    """Recompute the rollups of the days ``first`` .. ``last`` (UTC, inclusive), one day at a time.
    ``progress(days_done, days, day)`` is called after each day.

    A day whose windows have expired (window_aggregates keeps fewer days than rollup_1h and
    rollup_1d) but that still has rollups is left alone: its rollups are all that is left of it.
    A day is deleted and inserted again before the next one starts, so a failure leaves the days
    before it rebuilt, the days after it as they were, and that day possibly empty: the error says
    which day to start again from."""
    if last < first:
        msg = f"--to {last} is before --from {first}"
        raise SinkError(msg)
    missing = [t for t in ("window_aggregates", *_ROLLUPS) if not int(str(client.command(_EXISTS, {"t": t})))]
    if missing:
        msg = f"no table {', '.join(missing)} in this database: run `millstream migrate` first"
        raise SinkError(msg)
    days = (last - first).days + 1
    out = Rebuilt()
    for i in range(days):
        day = first + dt.timedelta(days=i)
        try:
            windows = _rebuild_day(client, day)
        except Exception as exc:
            done = f"{first}..{day - dt.timedelta(days=1)} are rebuilt; " if day > first else ""
            msg = (
                f"rollup rebuild of {day} failed: {error_text(exc)}. {done}{day}'s rollups may be "
                f"incomplete: run `millstream rollups rebuild --from {day} --to {last}` again"
            )
            raise SinkError(msg) from exc
        if windows is None:
            out.kept.append(day)
        else:
            out.windows += windows
        if progress is not None:
            progress(i + 1, days, str(day))
    logger.info("rebuilt rollups of %s..%s from %d windows", first, last, out.windows)
    return out


def _rebuild_day(client: Client, day: dt.date) -> int | None:
    """Delete one day's rollup rows and insert them again from the final windows; returns the windows
    used, or None for a day without windows that still has rollups (left as it is)."""
    days = {"first": day, "last": day}
    windows = int(str(client.command(_COUNT, parameters=days)))
    if windows == 0:
        if any(int(str(client.command(_ROLLUP_ROWS, {"table": t, **days}))) for t in _ROLLUPS):
            return None
        return 0
    for table in _ROLLUPS:
        client.command(_DELETE, parameters={"table": table, **days})
    # No block deduplication: the deleted rows' blocks may be identical to the new ones.
    client.command(
        _INSERT,
        parameters=days,
        settings={"insert_deduplicate": 0, "deduplicate_blocks_in_dependent_materialized_views": 0},
    )
    return windows
