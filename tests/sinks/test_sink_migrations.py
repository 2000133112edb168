"""Versioned DDL against the real embedded ClickHouse."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from sinks.clickhouse import connect
from sinks.config import ClickHouseSettings
from sinks.exceptions import SinkError
from sinks.migrations import (
    Migration,
    ViewFile,
    default_directory,
    load_migrations,
    load_views,
    migrate,
    split_statements,
    status,
    view_status,
)

REPO = Path(__file__).resolve().parents[2]


def _columns(client: Any, table: str) -> dict[str, str]:
    rows = client.query(
        "SELECT name, type FROM system.columns WHERE database = currentDatabase() AND table = {t:String}",
        parameters={"t": table},
    ).result_rows
    return {n: t for n, t in rows}


def _table(client: Any, table: str) -> tuple[str, str, str]:
    rows = client.query(
        "SELECT engine_full, sorting_key, partition_key FROM system.tables "
        "WHERE database = currentDatabase() AND name = {t:String}",
        parameters={"t": table},
    ).result_rows
    assert rows, f"table {table} missing"
    return rows[0][0], rows[0][1], rows[0][2]


def test_migrate_twice_applies_and_records_once(ch_settings: ClickHouseSettings) -> None:
    client = connect(ch_settings)
    try:
        done = migrate(client)
        first = [m for m in done if isinstance(m, Migration)]
        assert [m.version for m in first] == [m.version for m in load_migrations()]
        assert [v.file for v in done if isinstance(v, ViewFile)] == [v.file for v in load_views()]
        assert migrate(client) == []
        # Recorded once each: plain count, no FINAL.
        rows = client.query("SELECT version, name FROM schema_migrations ORDER BY version").result_rows
        assert [tuple(r) for r in rows] == [(m.version, m.name) for m in first]
        assert {s.state for s in status(client)} == {"applied"}
        assert {state for _, state in view_status(client)} == {"applied"}
    finally:
        client.close()
    # A new process-level connection (fresh client) sees the same state and changes nothing.
    client = connect(ch_settings)
    try:
        assert migrate(client) == []
        assert client.command("SELECT count() FROM schema_migrations") == len(first)
    finally:
        client.close()


def test_window_aggregates_table_matches_the_design(ch: Any) -> None:
    engine, sorting, partition = _table(ch, "window_aggregates")
    assert engine.startswith("ReplacingMergeTree(version)")
    assert sorting == "machine_id, sensor, window_kind, window_start, window_end"
    assert partition == "toDate(window_start)"
    cols = _columns(ch, "window_aggregates")
    schema = json.loads((REPO / "schemas" / "window_aggregate.v1.avsc").read_text())
    fields = {f["name"]: f for f in schema["fields"]}
    assert set(fields) <= set(cols), "every WindowAggregate field has a column"
    for name, f in fields.items():
        if isinstance(f["type"], dict) and f["type"].get("logicalType") == "timestamp-millis":
            assert cols[name] == "DateTime64(3, 'UTC')", name
    for name in ("plant", "line", "sensor", "unit", "window_kind"):
        assert cols[name] == "LowCardinality(String)", name
    for name in ("p50", "p95", "p99", "slope"):
        assert cols[name] == "Nullable(Float64)", name


def test_dead_letters_table_matches_the_design(ch: Any) -> None:
    engine, sorting, _ = _table(ch, "dead_letters")
    assert engine.startswith("ReplacingMergeTree")
    assert sorting == "topic, partition, offset, stage"
    schema = json.loads((REPO / "schemas" / "dead_letter.v1.avsc").read_text())
    assert {f["name"] for f in schema["fields"]} <= set(_columns(ch, "dead_letters"))


def test_later_migration_applies_alone_and_edits_are_reported(
    ch_settings: ClickHouseSettings, tmp_path: Path
) -> None:
    folder = tmp_path / "migrations"
    shutil.copytree(default_directory(), folder)
    client = connect(ch_settings)
    try:
        migrate(client, folder)
        (folder / "0099_extra.sql").write_text(
            "-- a later migration with two statements\n"
            "CREATE TABLE IF NOT EXISTS extra_a (x UInt8) ENGINE = MergeTree ORDER BY x;\n"
            "ALTER TABLE extra_a ADD COLUMN IF NOT EXISTS y String;\n"
        )
        assert [s.state for s in status(client, folder)][-1] == "pending"
        applied = migrate(client, folder)
        assert [(m.version, m.name) for m in applied if isinstance(m, Migration)] == [(99, "extra")]
        assert [m for m in applied if not isinstance(m, Migration)] == []
        assert set(_columns(client, "extra_a")) == {"x", "y"}
        first = sorted(folder.glob("0001_*.sql"))[0]
        first.write_text(first.read_text() + "\n-- edited\n")
        states = {s.version: s.state for s in status(client, folder)}
        assert states[1] == "changed" and states[99] == "applied"
        assert migrate(client, folder) == []  # an edited migration is not re-run
    finally:
        client.close()


def test_split_statements_handles_comments_and_multiline() -> None:
    text = (
        "-- header ; with a semicolon\n"
        "CREATE TABLE a\n(\n  x UInt8\n)\nENGINE = Memory;\n\n"
        "  -- another\n"
        "ALTER TABLE a ADD COLUMN IF NOT EXISTS s String DEFAULT 'a;b';\n"
        "SELECT 1"
    )
    assert split_statements(text) == [
        "CREATE TABLE a\n(\n  x UInt8\n)\nENGINE = Memory",
        "ALTER TABLE a ADD COLUMN IF NOT EXISTS s String DEFAULT 'a;b'",
        "SELECT 1",
    ]


@pytest.mark.parametrize(
    ("files", "match"),
    [
        ({"1_short.sql": "SELECT 1;"}, "not named"),
        ({"0001_a.sql": "SELECT 1;", "0001_b.sql": "SELECT 2;"}, "two migrations with version 1"),
        ({"0001_empty.sql": "-- nothing\n"}, "no statements"),
    ],
)
def test_bad_migration_folders_are_refused(tmp_path: Path, files: dict[str, str], match: str) -> None:
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    with pytest.raises(SinkError, match=match):
        load_migrations(tmp_path)


# ALTER statements that are idempotent by nature, without IF [NOT] EXISTS: setting a table setting,
# a column's type and codec or the sorting key to the same value again changes nothing (a sorting key
# may only grow by a column the same ALTER adds: ADD COLUMN IF NOT EXISTS, test_alter_forms_repeat).
IDEMPOTENT_ALTERS = (" MODIFY SETTING ", " MODIFY COLUMN ", " MODIFY ORDER BY ", " ADD COLUMN IF NOT EXISTS ")
# Backfills of tables of argMax / max states: inserting the same rows again changes no result.
IDEMPOTENT_INSERTS = (" INSERT INTO WINDOW_LATEST ",)


def test_shipped_migrations_are_idempotent_statements() -> None:
    # Interrupted migrations are re-run whole, so each statement must be safe to repeat.
    for mig in load_migrations():
        for statement in mig.statements:
            head = " ".join(statement.split()[:6]).upper()
            flat = f" {' '.join(statement.split()).upper()} "
            by_nature = (
                flat.startswith(" ALTER TABLE ") and any(form in flat for form in IDEMPOTENT_ALTERS)
            ) or flat.startswith(IDEMPOTENT_INSERTS)
            assert "IF NOT EXISTS" in head or "IF EXISTS" in head or by_nature, (mig.name, head)
    # View files are re-applied whenever they change: only CREATE OR REPLACE VIEW.
    for vf in load_views():
        assert vf.views and all(s.upper().startswith("CREATE OR REPLACE VIEW") for s in vf.statements)


def test_alter_forms_repeat(ch: Any) -> None:
    """Every ALTER of the shipped migrations runs a second time without error (an interrupted
    migration is applied again whole)."""
    for mig in load_migrations():
        for statement in mig.statements:
            if statement.lstrip().upper().startswith("ALTER TABLE"):
                ch.command(statement)


def test_view_files_are_reapplied_when_changed_or_dropped(ch: Any, tmp_path: Path) -> None:
    folder = tmp_path / "views"
    folder.mkdir()
    (folder / "10_one.sql").write_text("-- a view\nCREATE OR REPLACE VIEW v_one AS SELECT 1 AS x;\n")
    assert [v.file for v in migrate(ch, views_directory=folder) if isinstance(v, ViewFile)] == ["10_one"]
    assert migrate(ch, views_directory=folder) == []
    (folder / "10_one.sql").write_text("CREATE OR REPLACE VIEW v_one AS SELECT 2 AS x;\n")
    assert view_status(ch, folder) == [("10_one", "pending")]
    assert [v.file for v in migrate(ch, views_directory=folder) if isinstance(v, ViewFile)] == ["10_one"]
    assert ch.command("SELECT x FROM v_one") == 2
    ch.command("DROP VIEW v_one")
    assert [v.file for v in migrate(ch, views_directory=folder) if isinstance(v, ViewFile)] == ["10_one"]
    assert ch.command("SELECT x FROM v_one") == 2
    (folder / "20_bad.sql").write_text("CREATE TABLE IF NOT EXISTS t (x UInt8) ENGINE = Memory;\n")
    with pytest.raises(SinkError, match="only CREATE OR REPLACE VIEW"):
        migrate(ch, views_directory=folder)
