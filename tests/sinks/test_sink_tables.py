"""Every table: its design (engine, keys, types), its retention, hostile values through the real
write paths, and a structural check that sinks/ never builds SQL from data."""

from __future__ import annotations

import ast
import itertools
import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from sink_data import T0, alert_payload, anomaly, reading, spc_signal

from sinks.alerts import AlertReceiver
from sinks.config import ClickHouseSettings
from sinks.metadata import load
from sinks.retention import RETENTION, apply_retention, current_ttls
from sinks.tables import ANOMALIES, DEAD_LETTERS, READINGS, SPC_SIGNALS, WINDOW_AGGREGATES, Source, TableSpec
from sinks.writer import BatchWriter

REPO = Path(__file__).resolve().parents[2]
_offsets = itertools.count(1)

# (table, engine prefix, sorting key, partition key) as docs/clickhouse.md describes them.
DESIGN = [
    ("readings", "ReplacingMergeTree", "machine_id, sensor, event_time", "toDate(event_time)"),
    ("spc_signals", "ReplacingMergeTree", "machine_id, sensor, chart, rule, point_index, point_start", ""),
    ("anomalies", "ReplacingMergeTree", "machine_id, sensor, started_at, state", "toYYYYMM(started_at)"),
    ("alerts", "ReplacingMergeTree(received_at)", "fingerprint, starts_at, status", "toYYYYMM(starts_at)"),
    ("machines", "ReplacingMergeTree(loaded_at)", "machine_id, sensor", ""),
    ("rollup_1m", "AggregatingMergeTree", "machine_id, sensor, bucket", "toDate(bucket)"),
    ("rollup_1h", "AggregatingMergeTree", "machine_id, sensor, bucket", "toYYYYMM(bucket)"),
    ("rollup_1d", "AggregatingMergeTree", "machine_id, sensor, bucket", "toYear(bucket)"),
]


def _columns(client: Any, table: str) -> dict[str, tuple[str, str]]:
    rows = client.query(
        "SELECT name, type, compression_codec FROM system.columns "
        "WHERE database = currentDatabase() AND table = {t:String}",
        parameters={"t": table},
    ).result_rows
    return {n: (t, c) for n, t, c in rows}


@pytest.mark.parametrize(("table", "engine", "sorting", "partition"), DESIGN, ids=[d[0] for d in DESIGN])
def test_table_design(ch: Any, table: str, engine: str, sorting: str, partition: str) -> None:
    got = ch.query(
        "SELECT engine_full, sorting_key, partition_key FROM system.tables "
        "WHERE database = currentDatabase() AND name = {t:String}",
        parameters={"t": table},
    ).result_rows
    assert got, f"{table} missing"
    engine_full, got_sorting, got_partition = got[0]
    assert engine_full.startswith(engine) and (got_sorting, got_partition) == (sorting, partition)


@pytest.mark.parametrize(
    ("table", "schema"),
    [("spc_signals", "spc_signal"), ("anomalies", "anomaly_event"), ("readings", "reading")],
)
def test_every_schema_field_has_a_column_with_the_right_time_type(ch: Any, table: str, schema: str) -> None:
    cols = _columns(ch, table)
    fields = json.loads((REPO / "schemas" / f"{schema}.v1.avsc").read_text())["fields"]
    for f in fields:
        assert f["name"] in cols, (table, f["name"])
        logical = [t.get("logicalType") for t in (f["type"] if isinstance(f["type"], list) else [f["type"]])
                   if isinstance(t, dict)]  # fmt: skip
        if "timestamp-millis" in logical:
            assert "DateTime64(3, 'UTC')" in cols[f["name"]][0], (table, f["name"])
    for name in ("plant", "line", "sensor"):
        assert cols[name][0] == "LowCardinality(String)", (table, name)


def test_time_series_codecs(ch: Any) -> None:
    windows = _columns(ch, "window_aggregates")
    assert windows["window_start"][1] == "CODEC(DoubleDelta, ZSTD(1))"
    assert windows["mean"][1] == "CODEC(Gorilla(8), ZSTD(1))"
    assert windows["std"][1] == "CODEC(ZSTD(1))"  # Gorilla measured worse on noise-like values
    readings = _columns(ch, "readings")
    assert readings["event_time"][1] == "CODEC(DoubleDelta, ZSTD(1))"
    assert readings["value"][1] == "CODEC(Gorilla(8), ZSTD(1))"


# ------------------------------------------------------------------------------------------ retention
def test_retention_is_applied_once_and_follows_the_settings(ch: Any, ch_settings: ClickHouseSettings) -> None:
    assert set(current_ttls(ch).values()) == {None}
    changes = apply_retention(ch, ch_settings)
    expected = {r.table: getattr(ch_settings, r.setting) or None for r in RETENTION}
    assert {c.table: c.after for c in changes} == {t: d for t, d in expected.items() if d is not None}
    assert current_ttls(ch) == expected
    assert apply_retention(ch, ch_settings) == []  # idempotent
    shorter = ch_settings.model_copy(update={"ttl_windows_days": 3, "ttl_rollup_1h_days": 0})
    changes = apply_retention(ch, shorter)
    assert {(c.table, c.before, c.after) for c in changes} == {
        ("window_aggregates", 90, 3),
        ("rollup_1h", 730, None),
    }
    assert apply_retention(ch, shorter) == []


def test_ttl_expires_old_rows_and_keeps_recent_ones(
    ch: Any, ch_settings: ClickHouseSettings, make_window: Any
) -> None:
    import time

    now = int(time.time() * 1000) // 60_000 * 60_000
    old, recent = now - 40 * 86_400_000, now - 3_600_000
    w = BatchWriter(ch, ch_settings)
    for start in (old, recent):
        w.add(
            WINDOW_AGGREGATES,
            make_window(window_start=start, window_end=start + 60_000),
            Source("w", 0, start),
        )
    w.flush()
    apply_retention(ch, ch_settings.model_copy(update={"ttl_windows_days": 30}))
    ch.command("OPTIMIZE TABLE window_aggregates FINAL")
    got = ch.query("SELECT toUnixTimestamp64Milli(window_start) FROM window_aggregates").result_rows
    assert [r[0] for r in got] == [recent]


# ------------------------------------------------------------------------------------------ injection
HOSTILE = [
    "'); DROP TABLE x; --",
    "m'1",
    'm"2',
    "back\\slash",
    "`tick`",
    "{placeholder:String}",
    "%(name)s",
    "semi;colon",
    "new\nline\ttab",
    "nul\x00byte",
    "ünïcødé ✓ 机器",
]


def _src(table: str) -> Source:
    offset = next(_offsets)
    return Source(table, 0, offset, None, b"%d" % offset)


def _write(ch: Any, settings: ClickHouseSettings, spec: Any, records: list[dict[str, Any]]) -> None:
    w = BatchWriter(ch, settings)
    for r in records:
        assert w.add(spec, r, _src(spec.name)), r
    w.flush()


def test_an_spc_monitor_that_starts_over_does_not_replace_older_signals(
    ch: Any, ch_settings: ClickHouseSettings
) -> None:
    """point_index counts from 1 again when a key's SPC monitor starts over (a new app id, a switch of
    engine): a later signal of an old number is another signal. A replayed signal still collapses."""
    minute, month = 60_000, 31 * 86_400_000

    def signal(point: int, start: int, **kw: Any) -> dict[str, Any]:
        end = start + minute
        return spc_signal(point_index=point, window_start=start, window_end=end, emitted_at=end + 500, **kw)

    january = [signal(30, T0 + 30 * minute), signal(31, T0 + 31 * minute)]
    _write(ch, ch_settings, SPC_SIGNALS, january)
    again = signal(30, T0 + month + 30 * minute, value=90.0)  # the monitor's new point 30, a month later
    replayed = {**january[1], "emitted_at": january[1]["emitted_at"] + 5_000}
    _write(ch, ch_settings, SPC_SIGNALS, [again, replayed])
    ch.command("OPTIMIZE TABLE spc_signals FINAL")
    got = ch.query(
        "SELECT point_index, toUnixTimestamp64Milli(window_start), value FROM spc_signals "
        "ORDER BY window_start"
    ).result_rows
    assert [tuple(r) for r in got] == [
        (30, T0 + 30 * minute, 75.5),
        (31, T0 + 31 * minute, 75.5),
        (30, T0 + month + 30 * minute, 90.0),
    ]


def _pairs(ch: Any, table: str) -> list[tuple[str, str]]:
    rows = ch.query(f"SELECT machine_id, sensor FROM {table}").result_rows  # noqa: S608 - test constant
    return sorted((r[0], r[1]) for r in rows)


def test_hostile_machine_ids_and_sensor_names_round_trip_in_every_table(
    ch: Any, ch_settings: ClickHouseSettings, make_window: Any, tmp_path: Path
) -> None:
    ch.command("CREATE TABLE x (a UInt8) ENGINE = MergeTree ORDER BY a")
    expected = sorted((name, name[::-1]) for name in HOSTILE)
    by_kind: dict[TableSpec, Callable[[int, str], dict[str, Any]]] = {
        WINDOW_AGGREGATES: lambda i, n: make_window(
            machine_id=n, sensor=n[::-1], plant=n, window_start=T0 + i * 60_000
        ),
        READINGS: lambda i, n: reading(machine_id=n, sensor=n[::-1], lot_id=n, event_time=T0 + i),
        SPC_SIGNALS: lambda i, n: spc_signal(machine_id=n, sensor=n[::-1], rule=n, point_index=i),
        ANOMALIES: lambda i, n: anomaly(machine_id=n, sensor=n[::-1], model_id=n, features={n: 1.0}),
    }
    for spec, make in by_kind.items():
        _write(ch, ch_settings, spec, [make(i, n) for i, n in enumerate(HOSTILE)])
        assert _pairs(ch, spec.name) == expected, spec.name
    dead = [{"stage": n, "topic": n, "partition": 0, "offset": i, "key": n.encode(), "payload": n.encode(),
             "reason_code": n, "reason": n, "failed_at": T0} for i, n in enumerate(HOSTILE)]  # fmt: skip
    _write(ch, ch_settings, DEAD_LETTERS, dead)
    got = ch.query("SELECT topic, reason FROM dead_letters").result_rows
    assert sorted(tuple(r) for r in got) == sorted((n, n) for n in HOSTILE)
    # alerts: hostile label values and fingerprints through the webhook receiver
    payload = json.loads(alert_payload(T0))
    payload["alerts"] = [
        {**payload["alerts"][0], "fingerprint": n, "labels": {"alertname": n, n: n}} for n in HOSTILE
    ]
    assert AlertReceiver(ch, ch_settings).receive(json.dumps(payload).encode()) == len(HOSTILE)
    got = ch.query("SELECT fingerprint, alertname, labels FROM alerts").result_rows
    assert sorted((r[0], r[1], r[2][r[0]]) for r in got) == sorted((n, n, n) for n in HOSTILE)
    # machines: through the CSV loader (csv quoting; the NUL byte cannot be in a CSV file)
    import csv

    names = [n for n in HOSTILE if "\x00" not in n]
    path = tmp_path / "machines.csv"
    with path.open("w", newline="", encoding="utf-8") as f:
        out = csv.writer(f)
        out.writerow(["plant", "line", "machine_id", "sensor", "description"])
        out.writerows([[n, n, n, n[::-1], n] for n in names])
    assert load(ch, path) == len(names)
    assert _pairs(ch, "machines") == sorted((n, n[::-1]) for n in names)
    tables = {r[0] for r in ch.query("SHOW TABLES").result_rows}
    assert {"x", "window_aggregates", "readings", "spc_signals", "anomalies", "alerts", "machines"} <= tables


# ------------------------------------------------------------------------------------------ structure
CLIENT_CALLS = {
    "query",
    "command",
    "insert",
    "raw_query",
    "raw_insert",
    "query_df",
    "query_np",
    "query_arrow",
}
# Text that starts like a SQL statement (upper-case keywords, as all SQL here is written).
SQL_START = re.compile(r"\s*\(?\s*(SELECT|INSERT|ALTER|CREATE|DROP|DELETE|TRUNCATE|OPTIMIZE|WITH|SYSTEM)\b")
# Non-literal SQL that is not data: the shipped migration/view files and the user's own statement.
ALLOWED_NAMES = {
    ("migrations.py", "statement"),  # statements of infra/clickhouse/{migrations,views}/*.sql
    ("cli.py", "statement"),  # `millstream sql "..."`: the statement the user typed
}


def _module_constants(tree: ast.Module) -> set[str]:
    out = set()
    for node in tree.body:
        if (
            isinstance(node, ast.Assign)
            and isinstance(node.value, ast.Constant)
            and isinstance(node.value.value, str)
        ):
            out |= {t.id for t in node.targets if isinstance(t, ast.Name)}
    return out


def _starts_like_sql(node: ast.AST | None) -> bool:
    return (
        isinstance(node, ast.Constant) and isinstance(node.value, str) and bool(SQL_START.match(node.value))
    )


def test_no_sql_is_built_from_data_in_sinks() -> None:
    problems = []
    for path in sorted((REPO / "sinks").glob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        constants = _module_constants(tree)
        for node in ast.walk(tree):
            # 1. No f-string, %-format or .format() producing SQL text anywhere.
            if isinstance(node, ast.JoinedStr) and _starts_like_sql(node.values[0] if node.values else None):
                problems.append(f"{path.name}:{node.lineno}: f-string SQL")
            if (
                isinstance(node, ast.BinOp)
                and isinstance(node.op, ast.Mod | ast.Add)
                and _starts_like_sql(node.left)
            ):
                problems.append(f"{path.name}:{node.lineno}: SQL built with % or +")
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr == "format"
                and _starts_like_sql(node.func.value)
            ):
                problems.append(f"{path.name}:{node.lineno}: SQL built with .format()")
            # 2. What reaches the client is a literal, a module constant, or a TableSpec name (inserts).
            if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)):
                continue
            if node.func.attr not in CLIENT_CALLS or not node.args:
                continue
            arg = node.args[0]
            ok = (
                (isinstance(arg, ast.Constant) and isinstance(arg.value, str))
                or (isinstance(arg, ast.Name) and arg.id in constants)
                or (isinstance(arg, ast.Name) and (path.name, arg.id) in ALLOWED_NAMES)
                or (node.func.attr == "insert" and isinstance(arg, ast.Attribute) and arg.attr == "name")
            )
            if not ok:
                problems.append(f"{path.name}:{node.lineno}: {node.func.attr}() gets {ast.unparse(arg)}")
    assert problems == []


def test_the_structural_check_catches_string_built_sql() -> None:
    bad = [
        "client.query(f\"SELECT * FROM t WHERE machine_id = '{m}'\")",
        "client.command(\"ALTER TABLE t DELETE WHERE m = '%s'\" % m)",
        "client.query(\"SELECT * FROM t WHERE m = '{}'\".format(m))",
    ]
    for source in bad:
        tree = ast.parse(source)
        flagged = [
            n
            for n in ast.walk(tree)
            if (isinstance(n, ast.JoinedStr) and _starts_like_sql(n.values[0]))
            or (isinstance(n, ast.BinOp) and _starts_like_sql(n.left))
            or (isinstance(n, ast.Call) and isinstance(n.func, ast.Attribute) and n.func.attr == "format"
                and _starts_like_sql(n.func.value))
        ]  # fmt: skip
        assert flagged, source
