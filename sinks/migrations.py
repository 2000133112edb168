"""Versioned ClickHouse DDL, applied in order and recorded in ``schema_migrations``; analyst views.

Migrations are the files ``infra/clickhouse/migrations/NNNN_name.sql`` (shipped as package data).
A file holds one or more statements, each ending with ``;`` at the end of a line; ``--`` lines are
comments. Tables are unqualified: they land in the configured database.

ClickHouse DDL is not transactional, so every statement must be idempotent on its own
(``CREATE TABLE IF NOT EXISTS``, ``ADD COLUMN IF NOT EXISTS`` ...): a migration interrupted half way
is simply applied again. A migration is recorded only after all its statements succeeded.
Applied files must not change; a changed checksum is reported by :func:`status` and logged.

Views are different: ``infra/clickhouse/views/NN_name.sql`` hold only ``CREATE OR REPLACE VIEW``
statements and are *repeatable*: after the versioned migrations, a view file is applied again
whenever its text changed (or one of its views is missing), in file-name order. Their checksums are
recorded in ``schema_views``. Edit a view in place; never put a table in a view file.

The files name plain ``*MergeTree`` engines. In a ``Replicated`` database (several ClickHouse replicas
behind one Service, DDL replicated through Keeper) every table must replicate its data too, so there
each engine is applied as its ``Replicated*MergeTree`` twin without Keeper arguments: the database
then fills in ``/clickhouse/tables/{uuid}/{shard}`` and ``{replica}`` (server settings
``default_replica_path`` / ``default_replica_name``). Checksums stay those of the files.
"""

from __future__ import annotations

import hashlib
import logging
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sinks.exceptions import SinkError

if TYPE_CHECKING:
    from clickhouse_connect.driver.client import Client

logger = logging.getLogger(__name__)

MIGRATIONS_TABLE = "schema_migrations"
VIEWS_TABLE = "schema_views"
_FILE_RE = re.compile(r"^(?P<version>\d{4})_(?P<name>[a-z0-9_]+)\.sql$")
_VIEW_FILE_RE = re.compile(r"^(?P<order>\d{2})_(?P<name>[a-z0-9_]+)\.sql$")
_MERGE_TREE_RE = re.compile(
    r"\bENGINE(\s*)=(\s*)((?:Replacing|Aggregating|Summing|Collapsing|VersionedCollapsing|Graphite)?MergeTree)\b",
    re.I,
)
_VIEW_RE = re.compile(r"^CREATE\s+OR\s+REPLACE\s+VIEW\s+`?(?P<name>[A-Za-z_][A-Za-z0-9_]*)`?\s", re.I)

_CREATE_TABLE = """
CREATE TABLE IF NOT EXISTS schema_migrations
(
    version    UInt32,
    name       String,
    checksum   String,
    applied_at DateTime64(3, 'UTC')
)
ENGINE = ReplacingMergeTree(applied_at)
ORDER BY version
"""
_CREATE_VIEWS_TABLE = """
CREATE TABLE IF NOT EXISTS schema_views
(
    file       String,
    checksum   String,
    applied_at DateTime64(3, 'UTC')
)
ENGINE = ReplacingMergeTree(applied_at)
ORDER BY file
"""


@dataclass(frozen=True)
class Migration:
    """One migration file."""

    version: int
    name: str
    statements: tuple[str, ...]
    checksum: str  # sha256 of the file text


@dataclass(frozen=True)
class MigrationStatus:
    """A migration and its state in the database: applied, pending or changed (applied, file edited)."""

    version: int
    name: str
    state: str
    applied_at_ms: int | None = None


@dataclass(frozen=True)
class ViewFile:
    """One repeatable view file and the views it creates."""

    file: str
    views: tuple[str, ...]
    statements: tuple[str, ...]
    checksum: str


def default_directory() -> Path:
    """``infra/clickhouse/migrations`` inside the installed (or checked-out) package tree."""
    return Path(str(resources.files("infra"))) / "clickhouse" / "migrations"


def default_views_directory() -> Path:
    """``infra/clickhouse/views`` inside the installed (or checked-out) package tree."""
    return Path(str(resources.files("infra"))) / "clickhouse" / "views"


def split_statements(text: str) -> list[str]:
    """Statements of a migration file: ``--`` comment lines dropped, split at a ``;`` ending a line."""
    statements: list[str] = []
    current: list[str] = []
    for line in text.splitlines():
        if line.strip().startswith("--"):
            continue
        stripped = line.rstrip()
        if stripped.endswith(";"):
            current.append(stripped[:-1])
            statement = "\n".join(current).strip()
            if statement:
                statements.append(statement)
            current = []
        else:
            current.append(line)
    rest = "\n".join(current).strip()
    if rest:
        statements.append(rest)
    return statements


def load_migrations(directory: Path | None = None) -> list[Migration]:
    """Every migration in ``directory``, ordered by version."""
    directory = directory or default_directory()
    if not directory.is_dir():
        msg = f"migrations folder {directory} not found"
        raise SinkError(msg)
    found: dict[int, Migration] = {}
    for path in sorted(directory.glob("*.sql")):
        m = _FILE_RE.match(path.name)
        if not m:
            msg = f"migration file {path.name} is not named NNNN_lower_snake_name.sql"
            raise SinkError(msg)
        version = int(m["version"])
        if version in found:
            msg = f"two migrations with version {version}: {found[version].name} and {m['name']}"
            raise SinkError(msg)
        text = path.read_text(encoding="utf-8")
        statements = tuple(split_statements(text))
        if not statements:
            msg = f"migration {path.name} has no statements"
            raise SinkError(msg)
        checksum = hashlib.sha256(text.encode()).hexdigest()
        found[version] = Migration(version, m["name"], statements, checksum)
    return [found[v] for v in sorted(found)]


def replicated_engines(statement: str) -> str:
    """``statement`` with every plain ``*MergeTree`` engine replaced by its ``Replicated*`` twin (engine
    parameters kept, no Keeper path: a Replicated database supplies it)."""
    return _MERGE_TREE_RE.sub(lambda m: f"ENGINE{m[1]}={m[2]}Replicated{m[3]}", statement)


def is_replicated_database(client: Client) -> bool:
    """True when the client's current database has the ``Replicated`` engine."""
    rows = client.query("SELECT engine FROM system.databases WHERE name = currentDatabase()").result_rows
    return bool(rows) and str(rows[0][0]) == "Replicated"


Ddl = Callable[[str], str]


def _ddl(client: Client) -> Ddl:
    """How DDL is applied in this database: as written, or with replicated engines (asks the server)."""
    return replicated_engines if is_replicated_database(client) else (lambda statement: statement)


def _applied(client: Client, ddl: Ddl | None = None) -> dict[int, tuple[str, str, int]]:
    _run(client, ((ddl or _ddl(client))(_CREATE_TABLE),), f"creating {MIGRATIONS_TABLE}")
    result = client.query(
        "SELECT version, name, checksum, toUnixTimestamp64Milli(applied_at) FROM schema_migrations FINAL"
    )
    return {int(v): (str(n), str(c), int(t)) for v, n, c, t in result.result_rows}


def status(client: Client, directory: Path | None = None) -> list[MigrationStatus]:
    """State of every known migration (and of recorded ones whose file is gone: state 'missing')."""
    migrations = load_migrations(directory)
    applied = _applied(client)
    out: list[MigrationStatus] = []
    for mig in migrations:
        rec = applied.get(mig.version)
        if rec is None:
            out.append(MigrationStatus(mig.version, mig.name, "pending"))
        else:
            state = "applied" if rec[1] == mig.checksum else "changed"
            out.append(MigrationStatus(mig.version, mig.name, state, rec[2]))
    known = {m.version for m in migrations}
    for version, rec in sorted(applied.items()):
        if version not in known:
            out.append(MigrationStatus(version, rec[0], "missing", rec[2]))
    return sorted(out, key=lambda s: s.version)


def migrate(
    client: Client, directory: Path | None = None, views_directory: Path | None = None
) -> list[Migration | ViewFile]:
    """Apply pending migrations in version order, then new or changed view files.

    Returns what was applied now (empty = up to date).
    """
    migrations = load_migrations(directory)
    try:
        ddl = _ddl(client)
        applied = _applied(client, ddl)
    except Exception as exc:
        msg = f"cannot read {MIGRATIONS_TABLE}: {exc}"
        raise SinkError(msg) from exc
    done: list[Migration | ViewFile] = []
    for mig in migrations:
        rec = applied.get(mig.version)
        if rec is not None:
            if rec[1] != mig.checksum:
                logger.warning(
                    "migration %04d_%s was edited after it was applied; edits are not re-applied, "
                    "add a new migration instead",
                    mig.version,
                    mig.name,
                )
            continue
        _run(client, tuple(map(ddl, mig.statements)), f"migration {mig.version:04d}_{mig.name}")
        row: list[Any] = [mig.version, mig.name, mig.checksum, int(time.time() * 1000)]
        client.insert(MIGRATIONS_TABLE, [row], column_names=["version", "name", "checksum", "applied_at"])
        logger.info("applied migration %04d_%s", mig.version, mig.name)
        done.append(mig)
    done.extend(apply_views(client, views_directory, ddl))
    return done


def _run(client: Client, statements: tuple[str, ...], what: str) -> None:
    for i, statement in enumerate(statements, 1):
        try:
            client.command(statement)
        except Exception as exc:
            msg = f"{what} statement {i} failed: {exc}"
            raise SinkError(msg) from exc


# ------------------------------------------------------------------------------------------ views
def load_views(directory: Path | None = None) -> list[ViewFile]:
    """Every view file in ``directory``, in file-name order."""
    directory = directory or default_views_directory()
    if not directory.is_dir():
        return []
    out: list[ViewFile] = []
    for path in sorted(directory.glob("*.sql")):
        if not _VIEW_FILE_RE.match(path.name):
            msg = f"view file {path.name} is not named NN_lower_snake_name.sql"
            raise SinkError(msg)
        text = path.read_text(encoding="utf-8")
        statements = tuple(split_statements(text))
        views = []
        for statement in statements:
            m = _VIEW_RE.match(statement)
            if m is None:
                msg = f"{path.name}: a view file holds only CREATE OR REPLACE VIEW statements"
                raise SinkError(msg)
            views.append(m["name"])
        if not statements:
            msg = f"view file {path.name} has no statements"
            raise SinkError(msg)
        checksum = hashlib.sha256(text.encode()).hexdigest()
        out.append(ViewFile(path.stem, tuple(views), statements, checksum))
    return out


def _applied_views(client: Client, ddl: Ddl | None = None) -> dict[str, str]:
    _run(client, ((ddl or _ddl(client))(_CREATE_VIEWS_TABLE),), f"creating {VIEWS_TABLE}")
    rows = client.query("SELECT file, checksum FROM schema_views FINAL").result_rows
    return {str(f): str(c) for f, c in rows}


def _existing_views(client: Client) -> set[str]:
    rows = client.query(
        "SELECT name FROM system.tables WHERE database = currentDatabase() AND engine = 'View'"
    ).result_rows
    return {str(r[0]) for r in rows}


def view_status(client: Client, directory: Path | None = None) -> list[tuple[str, str]]:
    """(file, state) of every view file: applied, pending (new, changed or a view missing)."""
    recorded, existing = _applied_views(client), _existing_views(client)
    return [
        (vf.file, "applied" if _current(vf, recorded, existing) else "pending")
        for vf in load_views(directory)
    ]


def _current(vf: ViewFile, recorded: dict[str, str], existing: set[str]) -> bool:
    return recorded.get(vf.file) == vf.checksum and set(vf.views) <= existing


def apply_views(client: Client, directory: Path | None = None, ddl: Ddl | None = None) -> list[ViewFile]:
    """(Re)create the views of every new or changed view file; returns the files applied now.
    ``ddl``: how DDL is applied here, if the caller knows already (else the server is asked)."""
    recorded, existing = _applied_views(client, ddl), _existing_views(client)
    done: list[ViewFile] = []
    for vf in load_views(directory):
        if _current(vf, recorded, existing):
            continue
        _run(client, vf.statements, f"view file {vf.file}")
        row: list[Any] = [vf.file, vf.checksum, int(time.time() * 1000)]
        client.insert(VIEWS_TABLE, [row], column_names=["file", "checksum", "applied_at"])
        logger.info("applied view file %s (%s)", vf.file, ", ".join(vf.views))
        done.append(vf)
    return done
