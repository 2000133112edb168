"""The documented behaviour of the rollups (docs/clickhouse.md, migration 0008) and their rebuild.

Rollups take tumbling windows at their first emission (version 0); a late update does not change
them; a retried insert is not rolled up twice; a version-0 window written again by another insert
is not inserted again (sinks.replays), and ``millstream rollups rebuild`` makes whole days exact from
window_aggregates FINAL.
"""

from __future__ import annotations

import datetime as dt
import itertools
from collections import Counter
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from clickhouse_connect.driver.exceptions import DatabaseError, OperationalError
from sink_data import T0

from infra.cli import main
from sinks.config import ClickHouseSettings
from sinks.tables import WINDOW_AGGREGATES, Source
from sinks.writer import BatchWriter

_offsets = itertools.count(1)
KEY = ("m1", "temperature")


def write(client: Any, settings: ClickHouseSettings, records: list[dict[str, Any]]) -> None:
    w = BatchWriter(client, settings, sleep=lambda _: None)
    for r in records:
        offset = next(_offsets)
        assert w.add(WINDOW_AGGREGATES, r, Source("windows", 0, offset, None, b"%d" % offset))
    w.flush()


def hour(client: Any, table: str = "v_rollup_1h") -> tuple[int, int, float, float]:
    """(windows, readings, sum, max) of KEY's bucket on 2026-01-01 in a rollup view."""
    got = client.query(
        f"SELECT windows, count, sum, max FROM {table} "
        "WHERE machine_id = {m:String} AND sensor = {s:String} AND toDate(bucket) = {d:Date}",
        parameters={"m": KEY[0], "s": KEY[1], "d": dt.date(2026, 1, 1)},
    ).result_rows
    assert len(got) == 1, got
    return int(got[0][0]), int(got[0][1]), float(got[0][2]), float(got[0][3])


def six_windows(make_window: Any) -> list[dict[str, Any]]:
    """Six 10 s tumbling windows of one minute: 6 x 3 readings, sums 6.0 each, maxima 3.0."""
    return [make_window(window_start=T0 + i * 10_000, window_end=T0 + (i + 1) * 10_000) for i in range(6)]


def test_version_zero_tumbling_windows_roll_up_through_minute_hour_and_day(
    ch: Any, ch_settings: ClickHouseSettings, make_window: Any
) -> None:
    windows = six_windows(make_window)
    hopping = [make_window(window_kind="hopping", window_start=T0 + 5_000, window_end=T0 + 15_000, max=99.0)]
    write(ch, ch_settings, windows + hopping)
    expected = (6, 18, 36.0, 3.0)  # hopping windows overlap: left out
    assert hour(ch, "v_rollup_1m") == hour(ch, "v_rollup_1h") == hour(ch, "v_rollup_1d") == expected


def test_days_of_a_plant_time_zone_merge_its_hours_daylight_saving_included(
    ch: Any, ch_settings: ClickHouseSettings, make_window: Any
) -> None:
    """v_rollup_1d's days are UTC days; v_rollup_1d_p(tz) gives the plant's own days."""
    start = int(dt.datetime(2026, 3, 28, 20, tzinfo=dt.UTC).timestamp() * 1000)
    hourly = [make_window(window_start=start + h * 3_600_000, max=float(h)) for h in range(30)]
    write(ch, ch_settings, hourly)  # one window per UTC hour, 2026-03-28 20:00 .. 03-30 01:00
    berlin = ZoneInfo("Europe/Berlin")  # CET -> CEST on 2026-03-29: a local day of 23 hours
    days = Counter(dt.datetime.fromtimestamp(w["window_start"] / 1000, berlin).date() for w in hourly)
    assert days[dt.date(2026, 3, 29)] == 23
    local = "SELECT bucket, windows, count, max FROM v_rollup_1d_p(tz = {tz:String}) ORDER BY bucket"
    got = ch.query(local, parameters={"tz": "Europe/Berlin"}).result_rows
    assert [(d, n) for d, n, _, _ in got] == sorted(days.items())
    assert [c for _, _, c, _ in got] == [3 * days[d] for d, _, _, _ in got]
    assert got[-1][3] == 29.0  # the last window (03-30 01:00 UTC) is on 03-30 in Berlin
    utc_days = "SELECT bucket, windows, count, max FROM v_rollup_1d ORDER BY bucket"
    assert ch.query(local, parameters={"tz": "UTC"}).result_rows == ch.query(utc_days).result_rows
    with pytest.raises(DatabaseError, match="not a whole number of hours"):
        ch.query(local, parameters={"tz": "Asia/Kolkata"})


def test_late_updates_do_not_change_rollups_but_change_the_final_windows(
    ch: Any, ch_settings: ClickHouseSettings, make_window: Any
) -> None:
    windows = six_windows(make_window)
    write(ch, ch_settings, windows)
    late = {**windows[2], "version": 1, "count": 4, "sum": 10.0, "mean": 2.5, "max": 4.0}
    write(ch, ch_settings, [late])
    assert hour(ch) == (6, 18, 36.0, 3.0)
    final = ch.query("SELECT sum(count), max(max) FROM window_aggregates FINAL").result_rows[0]
    assert tuple(final) == (19, 4.0)


class ResponseLost:
    """The real client, but the first insert raises after ClickHouse stored the block."""

    def __init__(self, client: Any) -> None:
        self.client, self.lost = client, False

    def insert(self, *args: Any, **kwargs: Any) -> Any:
        result = self.client.insert(*args, **kwargs)
        if not self.lost:
            self.lost = True
            raise OperationalError("connection reset by peer while reading the response")
        return result

    def __getattr__(self, name: str) -> Any:  # everything but insert: the real client
        return getattr(self.client, name)


def test_a_retried_insert_is_not_rolled_up_twice(
    ch: Any, ch_settings: ClickHouseSettings, make_window: Any
) -> None:
    flaky = ResponseLost(ch)
    write(flaky, ch_settings, six_windows(make_window))
    assert flaky.lost
    assert ch.command("SELECT count() FROM window_aggregates") == 6  # the retry was dropped...
    assert hour(ch) == (6, 18, 36.0, 3.0)  # ...in the rollups too


def test_a_window_written_again_by_another_insert_counts_once_and_rebuild_is_exact(
    ch: Any,
    ch_settings: ClickHouseSettings,
    make_window: Any,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    windows = six_windows(make_window)
    write(ch, ch_settings, windows)
    # A replay with other batch cuts (new deduplication tokens), one window twice in one batch, and a
    # stream worker's re-emission with another emitted_at: not inserted again (sinks.replays).
    write(ch, ch_settings, [*windows[:2], windows[3], {**windows[3], "emitted_at": T0 + 99_000}])
    write(ch, ch_settings, [{**windows[5], "version": 1, "count": 4, "sum": 10.0, "max": 4.0}])  # late
    assert hour(ch) == (6, 18, 36.0, 3.0)  # each window once; the late update is not rolled up
    assert ch.command("SELECT count() FROM window_aggregates") == 7  # 6 first emissions + 1 update
    other_day = make_window(window_start=T0 - 86_400_000, window_end=T0 - 86_390_000)
    write(ch, ch_settings, [other_day])
    before_other = ch.query(
        "SELECT * FROM v_rollup_1d WHERE bucket = {d:Date}", parameters={"d": dt.date(2025, 12, 31)}
    )
    assert len(before_other.result_rows) == 1

    monkeypatch.setenv("MILLSTREAM_DATA_DIR", str(ch_settings.data_dir))  # the CLI opens the same database
    assert main(["rollups", "rebuild", "--from", "2026-01-01", "--to", "2026-01-01"]) == 0
    assert capsys.readouterr().out.strip() == "rebuilt rollups of 2026-01-01..2026-01-01 from 6 window(s)"
    # Exact: each window once, the late update included.
    assert hour(ch) == hour(ch, "v_rollup_1m") == hour(ch, "v_rollup_1d") == (6, 19, 40.0, 4.0)
    after_other = ch.query(
        "SELECT * FROM v_rollup_1d WHERE bucket = {d:Date}", parameters={"d": dt.date(2025, 12, 31)}
    )
    assert after_other.result_rows == before_other.result_rows  # other days untouched
    assert main(["rollups", "rebuild", "--from", "2026-01-02", "--to", "2026-01-01"]) == 1
    assert "is before --from" in capsys.readouterr().err


def test_a_replayed_first_emission_counts_once_after_a_late_update_merged_it_away(
    ch: Any, ch_settings: ClickHouseSettings, make_window: Any
) -> None:
    """A sink killed after writing a window's version 0 and its late update (version 1), replayed after
    a merge: the merge kept only version 1, and the replayed version 0 must still be recognised."""
    windows = six_windows(make_window)
    write(ch, ch_settings, windows)
    write(ch, ch_settings, [{**windows[2], "version": 1, "count": 4, "sum": 10.0, "max": 4.0}])
    ch.command("OPTIMIZE TABLE window_aggregates FINAL")  # the version-0 row of window 2 is gone
    assert ch.command("SELECT count() FROM window_aggregates") == 6
    write(ch, ch_settings, windows)  # the replay, with other deduplication tokens
    assert hour(ch) == (6, 18, 36.0, 3.0)


def test_rebuild_goes_a_day_at_a_time_and_a_failure_names_the_day_to_resume_from(
    ch: Any, ch_settings: ClickHouseSettings, make_window: Any
) -> None:
    from sinks.exceptions import SinkError
    from sinks.rollups import rebuild

    day = 86_400_000
    write(
        ch,
        ch_settings,
        [make_window(window_start=T0 + d * day, window_end=T0 + d * day + 10_000) for d in range(3)],
    )
    seen: list[tuple[int, int, str]] = []
    assert rebuild(ch, dt.date(2026, 1, 1), dt.date(2026, 1, 3), lambda *a: seen.append(a)).windows == 3
    assert seen == [(1, 3, "2026-01-01"), (2, 3, "2026-01-02"), (3, 3, "2026-01-03")]

    class FailsOnSecondDay:
        """The real client, but its insert for 2026-01-02 fails (a server error cannot be provoked on
        demand in the embedded engine)."""

        def command(self, sql: str, parameters: dict[str, Any], **kw: Any) -> Any:
            if sql.lstrip().startswith("INSERT") and parameters["first"] == dt.date(2026, 1, 2):
                raise OperationalError("connection reset")
            return ch.command(sql, parameters=parameters, **kw)

    with pytest.raises(SinkError) as err:
        rebuild(FailsOnSecondDay(), dt.date(2026, 1, 1), dt.date(2026, 1, 3))  # type: ignore[arg-type]
    text = str(err.value)
    assert "rollup rebuild of 2026-01-02 failed: OperationalError: connection reset" in text
    assert "2026-01-01..2026-01-01 are rebuilt" in text
    assert "--from 2026-01-02 --to 2026-01-03" in text
    days = ch.query("SELECT toString(bucket), windows FROM v_rollup_1d ORDER BY bucket").result_rows
    assert days == [("2026-01-01", 1), ("2026-01-03", 1)]  # the failed day is empty, the next untouched


def test_rebuild_keeps_the_rollups_of_days_whose_windows_have_expired(
    ch: Any,
    ch_settings: ClickHouseSettings,
    make_window: Any,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    day = 86_400_000
    write(
        ch,
        ch_settings,
        [make_window(window_start=T0 + d * day, window_end=T0 + d * day + 10_000) for d in range(2)],
    )
    # what the windows' shorter TTL does to an old day (90 days against the rollups' 730 and forever)
    ch.command(
        "ALTER TABLE window_aggregates DELETE WHERE toDate(window_start) = '2026-01-01' "
        "SETTINGS mutations_sync = 2"
    )
    monkeypatch.setenv("MILLSTREAM_DATA_DIR", str(ch_settings.data_dir))
    assert main(["rollups", "rebuild", "--from", "2026-01-01", "--to", "2026-01-03", "--quiet"]) == 0
    out, err = capsys.readouterr()
    assert out.strip() == "rebuilt rollups of 2026-01-01..2026-01-03 from 1 window(s)"
    assert "kept the rollups of 1 day(s) whose windows have expired (2026-01-01 … 2026-01-01)" in err
    days = ch.query("SELECT toString(bucket), windows FROM v_rollup_1d ORDER BY bucket").result_rows
    assert days == [("2026-01-01", 1), ("2026-01-02", 1)]  # the expired day's rollups are still there


def test_rebuild_before_migrate_says_so(
    tmp_path: Any, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("MILLSTREAM_CLICKHOUSE_URL", f"chdb://{tmp_path / 'fresh'}")
    assert main(["rollups", "rebuild", "--from", "2026-01-01", "--to", "2026-01-01", "--quiet"]) == 1
    err = capsys.readouterr().err
    assert (
        "no table window_aggregates, rollup_1m, rollup_1h, rollup_1d in this database: "
        "run `millstream migrate` first" in err
    )
