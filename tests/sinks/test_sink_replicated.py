"""Migrations in a Replicated database create Replicated*MergeTree tables.

No ClickHouse with Keeper can run here (the embedded engine has no Keeper), so the replicated case
is checked on the statements `migrate` sends: a recording client stands in for the server and
answers the one question migrate asks about the database (its engine). The non-replicated path runs
on the real embedded ClickHouse.
"""

from __future__ import annotations

import re
from typing import Any

from clickhouse_connect.driver.client import Client

from sinks.migrations import (
    _CREATE_TABLE,
    _CREATE_VIEWS_TABLE,
    is_replicated_database,
    load_migrations,
    load_views,
    migrate,
    replicated_engines,
)

ENGINE = re.compile(r"\bENGINE\s*=\s*(\w+)", re.I)


def engines(statement: str) -> list[str]:
    return ENGINE.findall(statement)


class RecordingClient:
    """Stands in for a ClickHouse server whose database has the Replicated engine."""

    def __init__(self) -> None:
        self.commands: list[str] = []
        self.inserts: list[str] = []
        self.queries: list[str] = []

    def query(self, sql: str) -> Any:
        self.queries.append(sql)

        class Result:
            result_rows: list[tuple[Any, ...]] = []

        result = Result()
        if "system.databases" in sql:
            result.result_rows = [("Replicated",)]
        return result

    def command(self, sql: str) -> None:
        self.commands.append(sql)

    def insert(self, table: str, rows: Any, column_names: Any = None) -> None:
        self.inserts.append(table)


def test_every_table_of_every_migration_gets_its_replicated_engine() -> None:
    statements = [s for m in load_migrations() for s in m.statements] + [_CREATE_TABLE, _CREATE_VIEWS_TABLE]
    seen = 0
    for statement in statements:
        before, after = engines(statement), engines(replicated_engines(statement))
        assert after == [f"Replicated{e}" for e in before]
        assert re.sub(r"Replicated(\w*MergeTree)", r"\1", replicated_engines(statement)) == statement
        seen += len(before)
    assert seen >= 10  # the migrations create at least ten tables


def test_migrate_on_a_replicated_database_sends_only_replicated_engines() -> None:
    client = RecordingClient()
    applied = migrate(client)  # type: ignore[arg-type]
    assert len(applied) == len(load_migrations()) + len(load_views())
    created = [e for c in client.commands for e in engines(c)]
    assert created and all(e.startswith("Replicated") and e.endswith("MergeTree") for e in created)
    assert {"schema_migrations", "schema_views"} <= set(client.inserts)
    assert sum("system.databases" in q for q in client.queries) == 1  # the engine is asked once


def test_the_embedded_database_is_not_replicated_and_keeps_plain_engines(ch: Client) -> None:
    assert not is_replicated_database(ch)
    sql = "SELECT name, engine FROM system.tables WHERE database = currentDatabase() AND engine LIKE '%Tree'"
    rows = ch.query(sql).result_rows
    assert rows and not [n for n, e in rows if e.startswith("Replicated")]
