"""Retention: each table's TTL, set from :class:`~sinks.config.ClickHouseSettings`, idempotently.

``apply_retention`` reads the TTL each table has now (``system.tables.engine_full``) and issues
``ALTER TABLE … MODIFY TTL`` (or ``REMOVE TTL`` for 0 = keep forever) only where it differs, so
running it at every start changes nothing once the tables match the settings. The days travel as
a bound query parameter and the table and column as identifier parameters: no SQL is built here.

A TTL counts from the row's event time (window_start, event_time, …), not from when it was written:
replaying history older than the retention writes rows that expire at the next merge. Tables with
daily partitions set ``ttl_only_drop_parts`` (migration 0009), so expiry drops whole parts.
Changing a TTL makes ClickHouse re-evaluate existing parts in the background (a mutation).
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

from sinks.exceptions import SinkError

if TYPE_CHECKING:
    from clickhouse_connect.driver.client import Client

    from sinks.config import ClickHouseSettings

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Retention:
    """A table, the time column its TTL counts from, and the setting holding its days."""

    table: str
    column: str
    setting: str


RETENTION: tuple[Retention, ...] = (
    Retention("readings", "event_time", "ttl_readings_days"),
    Retention("window_aggregates", "window_start", "ttl_windows_days"),
    Retention("rollup_1m", "bucket", "ttl_rollup_1m_days"),
    Retention("rollup_1h", "bucket", "ttl_rollup_1h_days"),
    Retention("rollup_1d", "bucket", "ttl_rollup_1d_days"),
    Retention("spc_signals", "emitted_at", "ttl_events_days"),
    Retention("anomalies", "started_at", "ttl_events_days"),
    Retention("alerts", "starts_at", "ttl_events_days"),
    Retention("dead_letters", "failed_at", "ttl_dead_letters_days"),
)

_ENGINE_FULL = (
    "SELECT name, engine_full FROM system.tables "
    "WHERE database = currentDatabase() AND name IN {names:Array(String)}"
)
_MODIFY = (
    "ALTER TABLE {table:Identifier} MODIFY TTL toDateTime({column:Identifier}) + toIntervalDay({days:UInt32})"
)
_REMOVE = "ALTER TABLE {table:Identifier} REMOVE TTL"
# How ClickHouse prints the TTL _MODIFY sets (the bound days appear as a cast literal).
_TTL_RE = re.compile(r"\sTTL toDateTime\((?P<column>\w+)\) \+ toIntervalDay\((?:_CAST\()?(?P<days>\d+)")


@dataclass(frozen=True)
class RetentionChange:
    """A TTL that was changed: days before and after (None = no TTL)."""

    table: str
    before: int | None
    after: int | None


def current_ttls(client: Client) -> dict[str, int | None]:
    """Days of TTL per managed table that exists (None = no TTL, -1 = a TTL this module did not set)."""
    rows = client.query(_ENGINE_FULL, parameters={"names": [r.table for r in RETENTION]}).result_rows
    engines = {str(name): str(engine) for name, engine in rows}
    out: dict[str, int | None] = {}
    for r in RETENTION:
        engine = engines.get(r.table)
        if engine is None:
            continue
        m = _TTL_RE.search(engine)
        if m is not None and m["column"] == r.column:
            out[r.table] = int(m["days"])
        else:
            out[r.table] = -1 if " TTL " in engine else None
    return out


def apply_retention(client: Client, settings: ClickHouseSettings) -> list[RetentionChange]:
    """Make every managed table's TTL match the settings; returns the changes made (none when equal)."""
    changes: list[RetentionChange] = []
    current = current_ttls(client)
    for r in RETENTION:
        if r.table not in current:
            continue  # table not created (yet): migrations first
        days = int(getattr(settings, r.setting))
        before = current[r.table]
        wanted = days or None
        if before == wanted:
            continue
        try:
            if wanted is None:
                client.command(_REMOVE, parameters={"table": r.table})
            else:
                client.command(_MODIFY, parameters={"table": r.table, "column": r.column, "days": wanted})
        except Exception as exc:
            msg = f"cannot set the TTL of {r.table} to {wanted or 'none'}: {exc}"
            raise SinkError(msg) from exc
        shown = "unmanaged" if before == -1 else before
        logger.info("TTL of %s: %s -> %s days", r.table, shown, wanted or "none")
        changes.append(RetentionChange(r.table, None if before == -1 else before, wanted))
    return changes
