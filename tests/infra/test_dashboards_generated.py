"""The generated dashboards: committed JSON is current, structure is sound, every query is valid.

Prometheus expressions are checked offline by promtool (as recording rules) and against the metric
names the code registers; every ClickHouse query runs, macros expanded, against an embedded
ClickHouse migrated with the real migrations and filled through the real sink writer.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from infra.grafana import dashboards
from infra.grafana.panels import CLICKHOUSE_TYPE, PROMETHEUS_TYPE
from infra.grafana.queries import (
    PanelTarget,
    clickhouse_sql,
    duration_ms,
    exported_metric_names,
    label_values_query,
    metric_names,
    prometheus_query,
    query_variables,
    targets,
    variable_datasource,
    variable_sql,
)

REPO = Path(__file__).resolve().parents[2]
RULES = REPO / "infra" / "prometheus" / "rules.yml"

BOARDS = {name: build() for name, build in dashboards.DASHBOARDS.items()}
ALL_TARGETS = [t for b in BOARDS.values() for t in targets(b)]
PROM_TARGETS = [t for t in ALL_TARGETS if t.datasource == PROMETHEUS_TYPE]
CH_TARGETS = [t for t in ALL_TARGETS if t.datasource == CLICKHOUSE_TYPE]
MULTI = {v["name"] for b in BOARDS.values() for v in query_variables(b) if v.get("multi")}

# Stand-in values for the offline checks (the live test resolves real ones from Prometheus).
VALUES = {
    "plant": ["p1"],
    "line": ["l1"],
    "machine": ["m001"],
    "sensor": ["temperature", "vibration_rms"],
    "component": ["gateway", "windows", "sink"],
    "job": ["millstream"],
}


# ------------------------------------------------------------------------------------ files
def test_committed_dashboards_are_current() -> None:
    stale = dashboards.stale()
    assert stale == [], f"stale dashboard JSON {stale}: run python -m infra.grafana.dashboards"


def test_generator_writes_the_same_files(tmp_path: Path) -> None:
    written = dashboards.write_all(tmp_path)
    assert sorted(p.name for p in written) == sorted(p.name for p in dashboards.OUT_DIR.glob("*.json"))
    assert dashboards.stale(tmp_path) == []


# ------------------------------------------------------------------------------------ structure
def test_five_dashboards_with_unique_uids_and_panel_ids() -> None:
    uids = [b["uid"] for b in BOARDS.values()]
    assert len(BOARDS) == 5 and len(set(uids)) == 5
    for b in BOARDS.values():
        ids = [p["id"] for p in b["panels"]]
        assert len(ids) == len(set(ids)) and 0 not in ids, b["uid"]
        assert {"prometheus", "clickhouse"} <= {v["name"] for v in b["templating"]["list"]}


def test_every_panel_reads_a_datasource_variable() -> None:
    for b in BOARDS.values():
        for p in b["panels"]:
            if p["type"] == "row":
                continue
            assert p["datasource"]["uid"] in ("${prometheus}", "${clickhouse}"), (b["uid"], p["title"])
            assert p["targets"], (b["uid"], p["title"])


def test_machine_detail_has_plant_line_machine_variables_chained() -> None:
    b = BOARDS["machine-detail"]
    qv = {v["name"]: v for v in query_variables(b)}
    assert [n for n in qv if n in ("plant", "line", "machine", "sensor")] == [
        "plant",
        "line",
        "machine",
        "sensor",
    ]
    assert "${plant:singlequote}" in qv["line"]["query"]
    assert (
        "${plant:singlequote}" in qv["machine"]["query"] and "${line:singlequote}" in qv["machine"]["query"]
    )
    assert "${machine:singlequote}" in qv["sensor"]["query"]


# Metrics only the Faust job (or Flink in loopback mode) exports: the per-machine domain metrics.
DOMAIN_METRICS = set(
    re.findall(r"Gauge\(\s*\"(millstream_[a-z0-9_]+)\"", (REPO / "sinks" / "domain_metrics.py").read_text())
)


def _uses(query: str, name: str) -> bool:
    return re.search(r"\$\{?" + name + r"\b", query) is not None


def test_variables_have_values_on_both_engines() -> None:
    """A variable read from a Faust-only metric is empty on Flink, and so is every panel filtered by
    it: such a variable may only filter panels that read the same metric (empty on Flink anyway)."""
    assert {"millstream_last_reading_timestamp_seconds", "millstream_window_mean"} <= DOMAIN_METRICS
    for b in BOARDS.values():
        for v in query_variables(b):
            if variable_datasource(v) != PROMETHEUS_TYPE:
                continue
            match, _ = label_values_query(v)
            engine_only = metric_names(match or "") & DOMAIN_METRICS
            if not engine_only:
                continue
            for t in targets(b):
                if _uses(t.query, v["name"]):
                    assert engine_only <= metric_names(t.query), (b["uid"], v["name"], t.id)
            for other in query_variables(b):
                q = other.get("query")
                assert not _uses(q if isinstance(q, str) else json.dumps(q), v["name"]), (
                    b["uid"],
                    other["name"],
                )


def test_every_panel_says_what_it_shows() -> None:
    """The on-call engineer hovers over the (i) of a panel to learn what it counts and what to do."""
    missing = [
        f"{b['uid']}/{p['title']}"
        for b in BOARDS.values()
        for p in b["panels"]
        if p["type"] != "row" and len(p.get("description", "")) < 40
    ]
    assert missing == []


def test_every_panel_kind_is_used() -> None:
    kinds = {p["type"] for b in BOARDS.values() for p in b["panels"]}
    assert {"timeseries", "stat", "table", "bargauge"} <= kinds


def _selected_columns(sql: str) -> set[str]:
    """The output column names of a query's outer SELECT (alias, or the column itself)."""
    head = re.split(r"\bFROM\b", sql, maxsplit=1, flags=re.I)[0].removeprefix("SELECT ")
    return {re.split(r"\s+AS\s+", item.strip(), flags=re.I)[-1].strip() for item in head.split(",")}


def test_tables_of_machines_open_machine_detail() -> None:
    """A table listing machines links each machine_id to Machine detail with that machine selected:
    the maintenance engineer goes from "which machine" to "what happened to it" in one click."""
    detail = BOARDS["machine-detail"]
    names = {v["name"] for v in detail["templating"]["list"]}
    linked = 0
    for b in BOARDS.values():
        for p in b["panels"]:
            if p["type"] != "table":
                continue
            columns = _selected_columns(p["targets"][0]["rawSql"])
            overrides = {
                o["matcher"]["options"]: o["properties"] for o in p["fieldConfig"].get("overrides", [])
            }
            if not {"plant", "line", "machine_id"} <= columns:
                continue
            linked += 1
            (prop,) = overrides.get("machine_id", [{}])
            assert prop.get("id") == "links", (b["uid"], p["title"])
            (link,) = prop["value"]
            path, _, query = link["url"].partition("?")
            assert path == f"/d/{detail['uid']}", link
            for key, value in (kv.split("=", 1) for kv in query.split("&") if "=" in kv):
                assert key.removeprefix("var-") in names, (p["title"], key)
                fields = set(re.findall(r"\$\{__data\.fields\.(\w+)\}", value))
                assert fields <= columns, (p["title"], value)
    assert linked >= 7


def test_bar_panels_over_machines_show_a_bounded_number_of_bars() -> None:
    """One bar per machine is unreadable at 300 machines: such a bar panel shows the top k."""
    per_machine = DOMAIN_METRICS | {"machine:millstream_seconds_since_last_reading"}
    checked = 0
    for b in BOARDS.values():
        bars = {p["title"] for p in b["panels"] if p["type"] == "bargauge"}
        for t in targets(b):
            if t.panel in bars and t.datasource == PROMETHEUS_TYPE and metric_names(t.query) & per_machine:
                checked += 1
                assert re.search(r"\b(topk|bottomk)\(\s*\d+\s*,", t.query), t.id
    assert checked >= 2  # plant overview: seconds since last reading; anomalies: top scores


def test_pipeline_health_shows_the_selected_deployments_only() -> None:
    """Two deployments (job labels) in one Prometheus: every series the SRE dashboard reads is
    filtered by the job variable, else their rates and counts add up and legends repeat."""
    b = BOARDS["pipeline-health"]
    assert [v["name"] for v in query_variables(b)] == ["job", "component"]
    for t in targets(b):
        if t.datasource != PROMETHEUS_TYPE:
            continue
        for name in metric_names(t.query) - {"ALERTS"}:  # alerts without a job label count too
            selectors = re.findall(rf"(?<![\w:]){re.escape(name)}\{{([^}}]*)\}}", t.query)
            assert selectors and all('job=~"$job"' in sel for sel in selectors), (t.id, name)


# ------------------------------------------------------------------------------------ Prometheus
def test_prometheus_expressions_parse_with_promtool(tmp_path: Path) -> None:
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.fail("promtool is not installed: sudo apt-get install -y prometheus")
    rules = [
        {"record": f"dashboard:check_{i}", "expr": prometheus_query(t.query, VALUES, MULTI)}
        for i, t in enumerate(PROM_TARGETS)
    ]
    path = tmp_path / "dashboard-exprs.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboards", "rules": rules}]}))
    proc = subprocess.run(
        [promtool, "check", "rules", str(path)], capture_output=True, text=True, check=False
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_prometheus_panels_use_metrics_the_code_exports_or_rules_record() -> None:
    recorded = {
        r["record"] for g in yaml.safe_load(RULES.read_text())["groups"] for r in g["rules"] if "record" in r
    }
    known = exported_metric_names(REPO) | recorded | {"up", "ALERTS"}
    process = {"process_cpu_seconds_total", "process_resident_memory_bytes"}
    for t in PROM_TARGETS:
        unknown = metric_names(t.query) - known - process
        assert unknown == set(), f"{t.id}: {t.query}"


# ------------------------------------------------------------------------------------ ClickHouse
NOW_MS = int(time.time() * 1000)
T0 = NOW_MS // 60_000 * 60_000 - 30 * 60_000  # half an hour ago, on a minute


def _fixture_records() -> dict[str, list[dict[str, Any]]]:
    """Records of every schema the sink routes, as the stream job emits them (schema field names)."""
    windows, signals, events = [], [], []
    for i in range(10):
        start = T0 + i * 60_000
        for sensor, base in (("temperature", 60.0), ("vibration_rms", 2.0)):
            mean = base + i / 10
            windows.append(
                {
                    "plant": "p1", "line": "l1", "machine_id": "m001", "sensor": sensor, "unit": "u",
                    "window_kind": "tumbling", "window_start": start, "window_end": start + 60_000,
                    "count": 60, "sum": mean * 60, "mean": mean, "min": mean - 1, "max": mean + 1,
                    "std": 0.5, "first_ts": start, "last_ts": start + 59_000, "first": mean, "last": mean,
                    "p50": mean, "p95": mean + 0.8, "p99": mean + 0.9, "slope": 0.0, "version": 0,
                    "emitted_at": start + 61_000,
                }
            )  # fmt: skip
    for i in (3, 7):
        ws = T0 + i * 60_000
        signals.append(
            {
                "plant": "p1", "line": "l1", "machine_id": "m001", "sensor": "temperature", "chart": "i",
                "rule": "WE1", "point_index": i, "value": 75.0, "center": 60.0, "lcl": 55.0, "ucl": 65.0,
                "window_start": ws, "window_end": ws + 60_000, "emitted_at": ws + 61_000,
            }
        )  # fmt: skip
        events.append(
            {
                "plant": "p1", "line": "l1", "machine_id": "m001", "sensor": "vibration_rms", "state": "open",
                "event_time": ws + 30_000, "started_at": ws + 30_000, "score": 0.95, "threshold": 0.8,
                "model_id": "hst-v1", "features": {}, "emitted_at": ws + 61_000,
            }
        )  # fmt: skip
    dead = [
        {
            "stage": "windows", "topic": "millstream.readings.v1", "partition": 0, "offset": n,
            "key": b"m001", "payload": b"\x00garbage", "reason_code": "decode_error",
            "reason": "not Avro", "failed_at": T0 + n * 1000,
        }
        for n in range(3)
    ]  # fmt: skip
    readings = [
        {
            "plant": "p1", "line": "l1", "machine_id": "m001", "sensor": sensor, "unit": "u",
            "event_time": T0 + k * 10_000, "value": base + k / 100, "quality": "GOOD", "gateway_id": "gw-1",
            "seq": k, "lot_id": None,
        }
        for k in range(60)
        for sensor, base in (("temperature", 60.0), ("vibration_rms", 2.0))
    ]  # fmt: skip
    return {
        "millstream.Reading": readings,
        "millstream.WindowAggregate": windows,
        "millstream.DeadLetter": dead,
        "millstream.SpcSignal": signals,
        "millstream.AnomalyEvent": events,
    }


def _alert_notification() -> bytes:
    """An Alertmanager webhook notification (format version 4) with one firing alert."""
    starts = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime((T0 + 5 * 60_000) / 1000))
    alert = {
        "status": "firing",
        "labels": {"alertname": "MillstreamMachineSilent", "severity": "warning", "plant": "p1",
                   "line": "l1", "machine_id": "m001", "job": "millstream"},
        "annotations": {"summary": "No data from p1/l1/m001 for 5m 0s"},
        "startsAt": starts,
        "endsAt": "0001-01-01T00:00:00Z",
        "generatorURL": "http://prometheus:9090/graph",
        "fingerprint": "0123456789abcdef",
    }  # fmt: skip
    body = {"version": "4", "receiver": "millstream-sink", "status": "firing", "groupKey": "{}:{}",
            "alerts": [alert]}  # fmt: skip
    return json.dumps(body).encode()


@pytest.fixture(scope="module")
def clickhouse(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Any, set[str]]]:
    """A migrated embedded ClickHouse holding the fixture records; yields (client, filled tables).

    Records go in the way production writes them: stream records through the sink's routes and
    batch writer, an Alertmanager notification through the webhook receiver, metadata from a CSV.
    """
    from sinks.alerts import AlertReceiver
    from sinks.clickhouse import connect
    from sinks.config import ClickHouseSettings
    from sinks.metadata import load
    from sinks.migrations import migrate
    from sinks.tables import ROUTES, Source
    from sinks.writer import BatchWriter

    folder = tmp_path_factory.mktemp("dash-ch")
    settings = ClickHouseSettings(data_dir=folder, batch_rows=10_000)
    client = connect(settings)
    try:
        migrate(client)
        writer = BatchWriter(client, settings)
        filled: set[str] = set()
        offset = 0
        for schema, records in _fixture_records().items():
            route = ROUTES[schema]
            for record in records:
                for r in route.records(record):
                    assert writer.add(route.table, r, Source("fixture", 0, offset)), (schema, r)
                offset += 1
            filled.add(route.table.name)
        assert writer.flush().rejected == 0
        assert AlertReceiver(client, settings).receive(_alert_notification()) == 1
        filled.add("alerts")
        csv = folder / "machines.csv"
        csv.write_text(
            "plant,line,machine_id,sensor,unit,lsl,usl,description\n"
            "p1,l1,m001,temperature,Cel,40,80,spindle temperature\n"
            "p1,l1,m001,vibration_rms,mm/s,,4.5,spindle vibration\n"
        )
        assert load(client, csv) == 2
        filled.add("machines")
        yield client, filled
    finally:
        client.close()


def _views(client: Any) -> set[str]:
    rows = client.query(
        "SELECT name FROM system.tables WHERE database = currentDatabase() AND engine = 'View'"
    )
    return {r[0] for r in rows.result_rows}


def _tables_read(sql: str) -> set[str]:
    return set(re.findall(r"\bFROM\s+([a-zA-Z_][a-zA-Z0-9_]*)", sql, flags=re.I))


@pytest.mark.parametrize("target", CH_TARGETS, ids=lambda t: t.id)
def test_clickhouse_panel_query_runs(clickhouse: tuple[Any, set[str]], target: PanelTarget) -> None:
    client, filled = clickhouse
    span_ms = duration_ms(target.time_from or "1h")  # the dashboard's default range, or the panel's own
    # NOW_MS is the fixture data's time; written_at is the real insert time, which in a long test run
    # can be minutes after collection: the range ends at the real now.
    to_ms = int(time.time() * 1000) + 60_000
    sql = clickhouse_sql(target.query, VALUES, MULTI, from_ms=NOW_MS - span_ms, to_ms=to_ms)
    rows = client.query(sql).result_rows
    # The fixture fills every table the views read, so every panel must show something.
    assert rows, f"no rows from the fixture data: {sql}"
    assert _tables_read(sql) <= filled | _views(client), sql


def test_clickhouse_variables_offer_the_machines_of_the_data(clickhouse: tuple[Any, set[str]]) -> None:
    """Each ClickHouse variable, resolved in declaration order as Grafana does (first value, or All),
    offers the plant, line, machine and sensors the fixture wrote."""
    client, _ = clickhouse
    expected = {
        "plant": ["p1"],
        "line": ["l1"],
        "machine": ["m001"],
        "sensor": ["temperature", "vibration_rms"],
    }
    resolved = 0
    for b in BOARDS.values():
        values: dict[str, list[str]] = {}
        multi: set[str] = set()
        for v in query_variables(b):
            if variable_datasource(v) != CLICKHOUSE_TYPE:
                continue
            got = [str(r[0]) for r in client.query(variable_sql(v, values, multi)).result_rows]
            assert got == expected[v["name"]], (b["uid"], v["name"], got)
            values[v["name"]] = got if v.get("multi") else got[:1]
            if v.get("multi"):
                multi.add(v["name"])
            resolved += 1
    assert resolved == 7  # plant on four dashboards; line, machine, sensor on machine detail


# ------------------------------------------------------------------------------------ query expansion
# Expected strings follow grafana/clickhouse-datasource pkg/macros/macros.go (the plugin's own
# expansion) and Grafana's Prometheus formatting of multi-value variables (regex alternation).
def test_clickhouse_macros_expand_like_the_plugin() -> None:
    sql = clickhouse_sql(
        "SELECT $__timeInterval_ms(t) AS time FROM x WHERE $__timeFilter_ms(t) AND $__timeFilter(d) "
        "AND d > $__fromTime AND d < $__toTime AND t > $__fromTime_ms GROUP BY $__timeInterval(d)",
        {},
        set(),
        from_ms=1_700_000_000_123,
        to_ms=1_700_000_600_456,
        interval_ms=15_000,
    )
    assert sql == (
        "SELECT toStartOfInterval(toDateTime64(t, 3), INTERVAL 15000 millisecond) AS time FROM x "
        "WHERE t >= fromUnixTimestamp64Milli(1700000000123) AND t <= fromUnixTimestamp64Milli(1700000600456) "
        "AND d >= toDateTime(1700000000) AND d <= toDateTime(1700000600) "
        "AND d > toDateTime(1700000000) AND d < toDateTime(1700000600) "
        "AND t > fromUnixTimestamp64Milli(1700000000123) "
        "GROUP BY toStartOfInterval(toDateTime(d), INTERVAL 15 second)"
    )


def test_unknown_macro_or_leftover_variable_is_an_error() -> None:
    with pytest.raises(ValueError, match="unknown ClickHouse macro"):
        clickhouse_sql("SELECT $__nope(x)", {}, set(), 0, 1)
    with pytest.raises(ValueError, match="unexpanded"):
        clickhouse_sql("SELECT '$missing'", {}, set(), 0, 1)


def test_variables_are_formatted_per_datasource() -> None:
    values = {"plant": ["p.1", "p2"], "machine": ["m'1"]}
    assert prometheus_query('x{plant=~"$plant"}', values, {"plant"}) == 'x{plant=~"(p\\\\.1|p2)"}'
    assert prometheus_query('x{machine_id="$machine"}[$__rate_interval]', values, set(), "30s") == (
        'x{machine_id="m\'1"}[30s]'
    )
    sql = clickhouse_sql(
        "WHERE plant IN (${plant:singlequote}) AND m = '${machine}'", values, {"plant"}, 0, 1
    )
    assert sql == "WHERE plant IN ('p.1','p2') AND m = 'm'1'"
