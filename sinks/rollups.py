"""Exact rebuild of the rollups for whole days: ``millstream rollups rebuild --from D --to D``.

The materialized views roll up each tumbling window once, at its first emission (version 0); a
version-0 window written twice by different inserts counts twice (see migration 0008). A rebuild
deletes the days' rows from rollup_1m, rollup_1h and rollup_1d and inserts rollup_1m again from
``window_aggregates FINAL`` (the latest version of each window, late updates included); the
cascade views fill rollup_1h and rollup_1d from that insert. Rebuild days that are complete (older
than the stream job's allowed lateness) and while no sink writes those days.
"""

from __future__ import annotations

import datetime as dt
import logging
from typing import TYPE_CHECKING

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
_COUNT = (
    "SELECT count() FROM window_aggregates FINAL "
    "WHERE window_kind = 'tumbling' AND toDate(window_start) BETWEEN {first:Date} AND {last:Date}"
)


def rebuild(client: Client, first: dt.date, last: dt.date) -> int:
    """Recompute the rollups of the days ``first`` .. ``last`` (UTC, inclusive); returns windows used."""
    if last < first:
        msg = f"--to {last} is before --from {first}"
        raise SinkError(msg)
    days = {"first": first, "last": last}
    try:
        for table in ("rollup_1m", "rollup_1h", "rollup_1d"):
            client.command(_DELETE, parameters={"table": table, **days})
        # No block deduplication: the deleted rows' blocks may be identical to the new ones.
        client.command(
            _INSERT,
            parameters=days,
            settings={"insert_deduplicate": 0, "deduplicate_blocks_in_dependent_materialized_views": 0},
        )
        windows = int(str(client.command(_COUNT, parameters=days)))
    except Exception as exc:
        msg = f"rollup rebuild of {first}..{last} failed: {exc}"
        raise SinkError(msg) from exc
    logger.info("rebuilt rollups of %s..%s from %d windows", first, last, windows)
    return windows
