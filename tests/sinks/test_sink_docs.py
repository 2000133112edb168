"""docs/clickhouse.md's example queries and the analyst views, on a simulated plant.

One embedded ClickHouse for the module, loaded through the sink's own writer with
``sink_data.plant_data`` (the project's plant simulator, windows computed with numpy, the project's
SPC operator, a data gap, a silent machine, late window updates, anomalies, alerts, dead letters).
Expected values are recomputed here from the generated data, not read back from the code under test.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sink_data import MINUTE, SENSORS, SILENT_MIN, PlantData, load_plant, plant_data

from sinks.clickhouse import connect
from sinks.config import ClickHouseSettings
from sinks.migrations import migrate

REPO = Path(__file__).resolve().parents[2]
DOC = REPO / "docs" / "clickhouse.md"
SQL_BLOCK = re.compile(r"^```sql\n(.*?)^```", re.S | re.M)
BLOCKS = SQL_BLOCK.findall(DOC.read_text(encoding="utf-8"))
LIMITS = {sensor: (lsl, usl) for sensor, _, lsl, usl in SENSORS}


@pytest.fixture(scope="module")
def plant(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Any, PlantData]]:
    tmp = tmp_path_factory.mktemp("plant")
    settings = ClickHouseSettings(data_dir=tmp / "stack", batch_rows=100_000)
    client = connect(settings)
    try:
        migrate(client)
        data = plant_data(int(time.time() * 1000))
        load_plant(client, settings, data, tmp)
        yield client, data
    finally:
        client.close()


def rows(client: Any, sql: str, **params: Any) -> list[dict[str, Any]]:
    result = client.query(sql, parameters=params or None)
    return [dict(zip(result.column_names, r, strict=True)) for r in result.result_rows]


def ms(value: Any) -> int:
    return int(round(value.timestamp() * 1000))


# ------------------------------------------------------------------------------------------ docs
def test_the_docs_hold_ten_example_queries() -> None:
    assert len(BLOCKS) == 10, [b.splitlines()[0] for b in BLOCKS]


@pytest.mark.parametrize("index", range(len(BLOCKS)), ids=[f"query{i + 1}" for i in range(len(BLOCKS))])
def test_documented_query_runs_and_returns_rows(plant: tuple[Any, PlantData], index: int) -> None:
    client, _ = plant
    result = client.query(BLOCKS[index])
    assert result.result_rows, f"example query {index + 1} returned no rows:\n{BLOCKS[index]}"


INLINE_SELECT = re.compile(r"`(SELECT [^`…]*)`")  # a whole query quoted in prose (not "SELECT …")
INLINE = [
    (path.name, " ".join(q.split()))
    for path in sorted((REPO / "docs").glob("*.md"))
    for q in INLINE_SELECT.findall(path.read_text(encoding="utf-8"))
]


def test_the_docs_quote_inline_queries() -> None:
    assert {name for name, _ in INLINE} >= {"clickhouse.md", "observability.md"}


@pytest.mark.parametrize(("doc", "sql"), INLINE, ids=[f"{n}:{q[:40]}" for n, q in INLINE])
def test_inline_query_of_the_docs_runs_and_returns_rows(
    plant: tuple[Any, PlantData], doc: str, sql: str
) -> None:
    client, _ = plant
    assert client.query(sql).result_rows, f"{doc}: {sql}"


def test_documented_late_update_query_finds_exactly_the_updated_windows(plant: tuple[Any, PlantData]) -> None:
    client, data = plant
    got = rows(client, BLOCKS[3])
    originals = {(w["machine_id"], w["sensor"], w["window_start"]): w for w in data.windows}
    expected = {(u["machine_id"], u["sensor"], u["window_start"]): u for u in data.late_updates}
    assert {(r["machine_id"], r["sensor"], ms(r["window_start"])) for r in got} == set(expected)
    for r in got:
        key = (r["machine_id"], r["sensor"], ms(r["window_start"]))
        assert r["final_mean"] == pytest.approx(expected[key]["mean"], rel=1e-12)
        assert r["first_mean"] == pytest.approx(originals[key]["mean"], rel=1e-12)


def test_documented_alert_and_dead_letter_queries(plant: tuple[Any, PlantData]) -> None:
    client, data = plant
    # One row per firing: MillstreamSinkLagging fired, was resolved, and fires again now.
    end = data.now_ms // MINUTE * MINUTE - MINUTE
    got = [(r["alertname"], ms(r["fired_at"]), r["resolved_at"] and ms(r["resolved_at"]), r["still_firing"])
           for r in rows(client, BLOCKS[8])]  # fmt: skip
    assert got == [
        ("MillstreamSinkLagging", end - 10 * MINUTE, None, 1),
        ("MillstreamDeadLetters", end - 60 * MINUTE, end - 45 * MINUTE, 0),
        ("MillstreamSinkLagging", end - 130 * MINUTE, end - 120 * MINUTE, 0),
    ]
    dead = rows(client, BLOCKS[9])
    assert sorted((r["reason_code"], r["records"]) for r in dead) == sorted(
        (d["reason_code"], 1) for d in data.dead_letters
    )


# ------------------------------------------------------------------------------------------ views
def test_machine_latest_is_the_newest_window_with_limits_signals_and_anomalies(
    plant: tuple[Any, PlantData],
) -> None:
    client, data = plant
    newest: dict[tuple[str, str], dict[str, Any]] = {}
    for w in data.windows + data.late_updates:
        key = (w["machine_id"], w["sensor"])
        if key not in newest or (w["window_end"], w["version"]) > (
            newest[key]["window_end"],
            newest[key]["version"],
        ):
            newest[key] = w
    signals: dict[tuple[str, str], set[tuple[str, str, int]]] = {}
    for s in data.signals:
        signals.setdefault((s["machine_id"], s["sensor"]), set()).add(
            (s["chart"], s["rule"], s["point_index"])
        )
    got = {(r["machine_id"], r["sensor"]): r for r in rows(client, "SELECT * FROM v_machine_latest")}
    assert set(got) == set(newest)
    for key, w in newest.items():
        r = got[key]
        lsl, usl = LIMITS[key[1]]
        assert (ms(r["window_end"]), r["version"]) == (w["window_end"], w["version"])
        assert r["mean"] == pytest.approx(w["mean"], rel=1e-12)
        assert (r["lsl"], r["usl"]) == (lsl, usl)
        assert r["in_spec"] == int(lsl <= w["mean"] <= usl)
        assert r["spc_signals_24h"] == len(signals.get(key, set()))
        assert r["anomaly_open"] == int(key[0] == "m003")  # the one incident without a close event
    silent = [r["age_s"] for k, r in got.items() if k[0] == data.silent]
    assert all(a >= SILENT_MIN * 60 for a in silent)


def test_spc_violations_view_holds_each_signal_once_with_the_rule_text(plant: tuple[Any, PlantData]) -> None:
    from streams.spc.rules import RULE_DESCRIPTIONS

    client, data = plant
    got = rows(
        client,
        "SELECT machine_id, sensor, chart, rule, rule_description, point_index FROM v_spc_violations_24h",
    )
    identities = {
        (s["machine_id"], s["sensor"], s["chart"], s["rule"], s["point_index"]) for s in data.signals
    }
    assert len(got) == len(identities)
    assert {
        (r["machine_id"], r["sensor"], r["chart"], r["rule"], r["point_index"]) for r in got
    } == identities
    assert all(r["rule_description"] == RULE_DESCRIPTIONS[r["rule"]] for r in got)
    # Every rule the SPC library knows has its text in the view (not only those in this data).
    sql = (REPO / "infra" / "clickhouse" / "views" / "30_v_spc_violations_24h.sql").read_text()
    for rule, meaning in RULE_DESCRIPTIONS.items():
        assert f"'{rule}'" in sql and f"'{meaning}'" in sql, rule


def test_anomalies_are_ranked_by_peak_score_with_open_incidents(plant: tuple[Any, PlantData]) -> None:
    client, data = plant
    got = rows(client, "SELECT * FROM v_anomalies_ranked ORDER BY rank")
    incidents: dict[tuple[str, str, int], list[dict[str, Any]]] = {}
    for e in data.anomalies:
        incidents.setdefault((e["machine_id"], e["sensor"], e["started_at"]), []).append(e)
    peak = {k: max(e["score"] for e in v) for k, v in incidents.items()}
    expected_order = sorted(peak, key=lambda k: -peak[k])
    assert [(r["machine_id"], r["sensor"], ms(r["started_at"])) for r in got] == expected_order
    assert [r["rank"] for r in got] == list(range(1, len(got) + 1))
    for r in got:
        events = incidents[(r["machine_id"], r["sensor"], ms(r["started_at"]))]
        close = [e for e in events if e["state"] == "close"]
        assert r["is_open"] == int(not close)
        if close:
            assert ms(r["ended_at"]) == close[0]["event_time"]
            assert r["duration_s"] == (close[0]["event_time"] - close[0]["started_at"]) // 1000
        else:
            assert r["ended_at"] is None
        assert r["peak_score"] == peak[(r["machine_id"], r["sensor"], ms(r["started_at"]))]


def test_data_gaps_finds_the_gap_the_silent_machine_and_unreported_metadata(
    plant: tuple[Any, PlantData],
) -> None:
    client, data = plant
    got = rows(client, "SELECT * FROM v_data_gaps")
    gap_machine, gap_sensor, gap_start, gap_end = data.gap
    gaps = [r for r in got if r["kind"] == "gap"]
    assert [(r["machine_id"], r["sensor"], ms(r["gap_start"]), ms(r["gap_end"])) for r in gaps] == [
        (gap_machine, gap_sensor, gap_start, gap_end)
    ]
    assert gaps[0]["missing_windows"] == (gap_end - gap_start) // MINUTE
    assert gaps[0]["window_s"] == 60
    stale = {(r["machine_id"], r["sensor"]): r for r in got if r["kind"] == "stale"}
    silent_from = max(w["window_end"] for w in data.windows if w["machine_id"] == data.silent)
    expected = {(data.silent, s) for s, _, _, _ in SENSORS} | {("m099", "temperature")}
    assert set(stale) == expected
    for (machine, _), r in stale.items():
        if machine == "m099":  # listed in machines, never reported
            assert r["gap_start"] is None and r["gap_s"] is None
        else:
            assert ms(r["gap_start"]) == silent_from and r["gap_end"] is None
    # Looser thresholds: a 10-window gap is no gap at a factor of 12, silence of 30 min is not stale
    # after 12 h; the machine that never reported stays.
    loose = rows(
        client, "SELECT * FROM v_data_gaps_p(gap_factor = 12, stale_minutes = 720, lookback_hours = 24)"
    )
    assert [(r["machine_id"], r["kind"]) for r in loose] == [("m099", "stale")]


def test_rollups_equal_the_readings_and_ignore_late_updates(plant: tuple[Any, PlantData]) -> None:
    client, data = plant
    got = {
        (r["machine_id"], r["sensor"], ms(r["bucket"])): r
        for r in rows(
            client, "SELECT machine_id, sensor, bucket, count, mean, std, min, max FROM v_rollup_1h"
        )
    }
    expected: dict[tuple[str, str, int], np.ndarray[Any, Any]] = {}
    for s in data.series:
        hours = s.ts // 3_600_000
        for h in np.unique(hours):
            expected[(s.machine_id, s.sensor, int(h) * 3_600_000)] = s.values[hours == h]
    assert set(got) == set(expected)
    for key, values in expected.items():
        r = got[key]
        assert r["count"] == len(values)
        assert r["mean"] == pytest.approx(values.mean(), rel=1e-12)
        assert r["std"] == pytest.approx(values.std(ddof=1), rel=1e-6)
        assert (r["min"], r["max"]) == (values.min(), values.max())
    days = rows(client, "SELECT sum(count) AS n FROM v_rollup_1d")
    assert days[0]["n"] == sum(len(s.values) for s in data.series)
