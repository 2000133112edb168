"""v_machine_latest reads window_latest (migration 0011), one row of argMax states per (machine, sensor)
kept up to date by a materialized view on window_aggregates, instead of scanning 7 days of windows on
every dashboard refresh. These tests check it gives what a scan of the written windows gives: the
newest window per key (its highest version), keys of the last 7 days only, and windows written before
the migration (its backfill).
"""

from __future__ import annotations

import itertools
import shutil
import time
from pathlib import Path
from typing import Any

from sink_data import anomaly

from sinks.clickhouse import connect
from sinks.config import ClickHouseSettings
from sinks.migrations import default_directory, default_views_directory, migrate
from sinks.tables import ANOMALIES, WINDOW_AGGREGATES, Source
from sinks.writer import BatchWriter

_offsets = itertools.count(1)
MINUTE = 60_000
DAY = 86_400_000
COLUMNS = "machine_id, sensor, toUnixTimestamp64Milli(window_start), count, mean, version"


def write(client: Any, settings: ClickHouseSettings, records: list[dict[str, Any]]) -> None:
    """Each call is its own insert (batch), as separate sink batches are."""
    w = BatchWriter(client, settings, sleep=lambda _: None)
    for r in records:
        offset = next(_offsets)
        assert w.add(WINDOW_AGGREGATES, r, Source("windows", 0, offset, None, b"%d" % offset))
    w.flush()


def latest(client: Any) -> set[tuple[Any, ...]]:
    return {tuple(r) for r in client.query(f"SELECT {COLUMNS} FROM v_machine_latest").result_rows}


def expected(records: list[dict[str, Any]], now: int) -> set[tuple[Any, ...]]:
    """Per key the window with the greatest (window_end, version) among those of the last 7 days."""
    best: dict[tuple[str, str], dict[str, Any]] = {}
    for r in records:
        if r["window_end"] < now - 7 * DAY:
            continue
        key = (r["machine_id"], r["sensor"])
        if key not in best or (r["window_end"], r["version"]) > (
            best[key]["window_end"],
            best[key]["version"],
        ):
            best[key] = r
    return {(*k, r["window_start"], r["count"], r["mean"], r["version"]) for k, r in best.items()}


def _batches(make_window: Any, now: int) -> list[list[dict[str, Any]]]:
    base = now - now % MINUTE - 30 * MINUTE
    first = [
        make_window(machine_id=m, sensor=s, window_start=base + i * MINUTE,
                    window_end=base + (i + 1) * MINUTE, mean=float(i), sum=3.0 * i)
        for m, s, i in itertools.product(("m1", "m2"), ("temperature", "vibration"), range(5))
    ]  # fmt: skip
    newest = first[4]  # m1/temperature, minute 4
    return [
        first,
        # a late update of m1/temperature's newest window (version 1) and a replay of m2's newest
        [{**newest, "version": 1, "count": 4, "mean": 9.5, "sum": 38.0}, dict(first[9])],
        # an older window arriving after the newer ones (a gateway's spool), and a key silent 8 days
        [make_window(machine_id="m2", sensor="vibration", window_start=base - 10 * MINUTE,
                     window_end=base - 9 * MINUTE, mean=-1.0),
         make_window(machine_id="m3", sensor="temperature", window_start=now - 8 * DAY,
                     window_end=now - 8 * DAY + MINUTE)],
    ]  # fmt: skip


def test_the_view_gives_each_keys_newest_window_of_the_last_seven_days(
    ch: Any, ch_settings: ClickHouseSettings, make_window: Any
) -> None:
    now = int(time.time() * 1000)
    batches = _batches(make_window, now)
    for batch in batches:
        write(ch, ch_settings, batch)
    records = [r for b in batches for r in b]
    got = latest(ch)
    assert got == expected(records, now)
    assert ("m1", "temperature", records[4]["window_start"], 4, 9.5, 1) in got  # the late update wins
    assert not [r for r in got if r[0] == "m3"]  # silent for 8 days: not in the latest state
    # the same as a scan of the windows themselves
    scan = ch.query(
        "SELECT machine_id, sensor, toUnixTimestamp64Milli(argMax(window_start, (window_end, version))), "
        "argMax(count, (window_end, version)), argMax(mean, (window_end, version)), "
        "argMax(version, (window_end, version)) FROM window_aggregates "
        "WHERE window_end >= now64(3) - INTERVAL 7 DAY GROUP BY machine_id, sensor"
    ).result_rows
    assert got == {tuple(r) for r in scan}
    # one row of states per key however many windows were written
    assert ch.command("SELECT count() FROM (SELECT machine_id, sensor FROM window_latest FINAL)") == 5


def test_the_migration_backfills_windows_written_before_it(
    tmp_path: Path, ch_settings: ClickHouseSettings, make_window: Any
) -> None:
    """A database migrated up to 0010 that already holds windows: after `millstream migrate` the view
    shows them."""
    before = tmp_path / "migrations"
    before.mkdir()
    for f in sorted(default_directory().glob("*.sql")):
        if int(f.name[:4]) < 11:
            shutil.copy(f, before / f.name)
    views = tmp_path / "views"
    views.mkdir()
    shutil.copy(default_views_directory() / "10_rollups.sql", views / "10_rollups.sql")
    client = connect(ch_settings)
    try:
        migrate(client, before, views)
        assert not client.command("EXISTS TABLE window_latest")
        now = int(time.time() * 1000)
        batches = _batches(make_window, now)
        for batch in batches:
            write(client, ch_settings, batch)
        applied = [getattr(a, "name", "") for a in migrate(client)]
        assert "window_latest" in applied
        assert latest(client) == expected([r for b in batches for r in b], now)
    finally:
        client.close()


def test_an_incident_whose_close_was_lost_is_not_open_once_a_later_one_started(
    ch: Any, ch_settings: ClickHouseSettings, make_window: Any
) -> None:
    """A machine has one anomaly incident open at a time. When the anomaly state starts over (a switch
    of engine, a new app id) an open incident never gets its close event; the machine's next incident
    shows that it ended. Only an incident that is the machine's latest and has no close is open."""
    now = int(time.time() * 1000) // MINUTE * MINUTE
    lost, later, current = now - 180 * MINUTE, now - 120 * MINUTE, now - 10 * MINUTE
    events = [
        anomaly(machine_id="m1", state="open", started_at=lost, event_time=lost),  # close lost
        anomaly(machine_id="m1", state="open", started_at=later, event_time=later),
        anomaly(machine_id="m1", state="close", started_at=later, event_time=later + 10 * MINUTE),
        anomaly(machine_id="m2", state="open", started_at=current, event_time=current),  # open now
    ]
    w = BatchWriter(ch, ch_settings, sleep=lambda _: None)
    for e in events:
        offset = next(_offsets)
        assert w.add(ANOMALIES, e, Source("anomalies", 0, offset, None, b"%d" % offset))
    w.flush()
    write(ch, ch_settings, [make_window(machine_id=m, window_start=now - 2 * MINUTE) for m in ("m1", "m2")])

    ranked = ch.query(
        "SELECT machine_id, toUnixTimestamp64Milli(started_at), is_open, ended_at IS NULL, duration_s "
        "FROM v_anomalies_ranked WHERE machine_id = 'm1' ORDER BY started_at"
    ).result_rows
    assert [tuple(r) for r in ranked] == [("m1", lost, 0, 1, 3600), ("m1", later, 0, 0, 600)]
    assert ch.command("SELECT is_open FROM v_anomalies_ranked WHERE machine_id = 'm2'") == 1
    flags = ch.query("SELECT machine_id, anomaly_open FROM v_machine_latest ORDER BY machine_id").result_rows
    assert [tuple(r) for r in flags] == [("m1", 0), ("m2", 1)]
