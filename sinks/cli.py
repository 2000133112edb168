"""``millstream sink``, ``migrate``, ``sql``, ``metadata load`` and ``rollups rebuild``.

Cheap to import: the ClickHouse and Kafka clients are imported inside the commands.
"""

from __future__ import annotations

import argparse
import datetime as dt
import logging
import signal
import sys
import threading
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

_TABLES_HERE = "SELECT count() FROM system.tables WHERE database = currentDatabase()"


def register(subparsers: Any) -> None:
    sink = subparsers.add_parser(
        "sink",
        help="write windows, SPC signals, anomalies and dead letters from Kafka into ClickHouse",
        description="Consume the windows, dead-letters, late, SPC-signals and anomalies topics (and readings "
        "with MILLSTREAM_SINK_RAW_READINGS=true) and write them into ClickHouse (embedded by default: "
        "MILLSTREAM_CLICKHOUSE_URL unset). Offsets are committed after each written batch. "
        "SIGTERM/Ctrl-C flush the pending batch, commit and exit 0.",
    )
    sink.add_argument(
        "--metrics-port",
        type=int,
        default=None,
        metavar="P",
        help="serve /metrics, /healthz, /readyz and POST /alertmanager (Alertmanager webhook) on port P "
        "(default: MILLSTREAM_SINK_METRICS_PORT)",
    )
    sink.add_argument(
        "--exit-when-idle",
        type=float,
        default=None,
        metavar="S",
        help="stop after S seconds without records (demos, tests)",
    )
    sink.add_argument(
        "--group",
        default=None,
        metavar="G",
        help="consumer group id (default MILLSTREAM_SINK_GROUP_ID or millstream-sink)",
    )
    sink.add_argument(
        "--no-migrate", action="store_true", help="do not apply pending migrations and TTLs at start"
    )
    sink.set_defaults(func=run_sink)

    dl = subparsers.add_parser(
        "dead-letters", help="send dead letters back to their topics once the cause is fixed"
    )
    dl_sub = dl.add_subparsers(dest="dead_letters_command", required=True)
    rep = dl_sub.add_parser(
        "replay",
        help="produce the chosen dead letters' original records to the topics they came from",
        description="Read the dead-letter topic (from --since, or the beginning, to its end now) and "
        "produce the original bytes and key of each dead letter with one of the --reason codes to the "
        "topic it came from: after a ClickHouse migration fixed rows it refused (sink_rejected), or the "
        "stream job and sink were upgraded to read a new schema version (unknown_schema). Records that "
        "fail again become new dead letters. A replayed reading older than the stream job's watermark "
        "plus the allowed lateness goes to the late topic, not into windows. Prints a JSON summary.",
        epilog="example: millstream dead-letters replay --reason sink_rejected --since 2026-11-23T06:00Z "
        "--dry-run",
    )
    rep.add_argument(
        "--reason",
        action="append",
        required=True,
        metavar="CODE",
        help="reason code to replay (repeatable): sink_rejected, unknown_schema, invalid_record, ...",
    )
    rep.add_argument("--stage", default=None, help="only dead letters of this stage (windows, sink, gateway)")
    rep.add_argument("--topic", default=None, help="only records that came from this topic")
    rep.add_argument(
        "--since", default=None, metavar="TIME", help="ISO 8601; dead letters written from then on"
    )
    rep.add_argument(
        "--until", default=None, metavar="TIME", help="ISO 8601; dead letters written before then"
    )
    rep.add_argument("--dry-run", action="store_true", help="count what would be replayed, produce nothing")
    rep.set_defaults(func=run_dead_letters_replay)

    mig = subparsers.add_parser(
        "migrate",
        help="apply pending ClickHouse migrations (idempotent)",
        description="Apply the versioned DDL in infra/clickhouse/migrations that the database lacks "
        "(recorded in schema_migrations), (re)create changed views of infra/clickhouse/views, and set "
        "each table's TTL from the MILLSTREAM_CLICKHOUSE_TTL_* settings.",
    )
    mig.add_argument("--status", action="store_true", help="only list migrations and their state")
    mig.set_defaults(func=run_migrate)

    sql = subparsers.add_parser(
        "sql",
        help="run one SQL statement against the configured ClickHouse",
        description="Run a statement against ClickHouse (embedded by default; it cannot be opened while "
        'a sink process holds it). Example: millstream sql "SELECT count() FROM window_aggregates FINAL"',
    )
    sql.add_argument("query", help="the statement")
    sql.add_argument(
        "--format",
        choices=["table", "csv", "json"],
        default="table",
        help="output format (default: an aligned table)",
    )
    sql.set_defaults(func=run_sql)

    meta = subparsers.add_parser(
        "metadata", help="machine/sensor metadata in ClickHouse", description="Machine/sensor metadata."
    )
    meta_sub = meta.add_subparsers(dest="metadata_command", required=True, metavar="COMMAND")
    load = meta_sub.add_parser(
        "load",
        help="load a CSV of machines and sensors into the machines table (idempotent)",
        description="Columns: plant, line, machine_id, sensor (required), unit, lsl, usl, description. "
        "Loading again replaces the rows of the machines/sensors in the file.",
    )
    load.add_argument("file", type=Path, help="the CSV file (with a header row)")
    load.add_argument(
        "--no-migrate",
        action="store_true",
        help="do not create the database or apply migrations: the machines table must exist already, "
        "from `millstream migrate` (a Job beside the migrate Job)",
    )
    load.set_defaults(func=run_metadata_load)

    rollups = subparsers.add_parser(
        "rollups", help="1 min / 1 h / 1 day rollups", description="Maintain the rollup tables."
    )
    rollups_sub = rollups.add_subparsers(dest="rollups_command", required=True, metavar="COMMAND")
    rebuild = rollups_sub.add_parser(
        "rebuild",
        help="recompute whole days of rollups exactly from window_aggregates FINAL",
        description="Delete the days' rows of rollup_1m/1h/1d and recompute them from the final windows "
        "(late updates included, replay duplicates removed). Run it for complete days.",
    )
    rebuild.add_argument("--from", dest="first", type=_day, required=True, metavar="YYYY-MM-DD")
    rebuild.add_argument("--to", dest="last", type=_day, required=True, metavar="YYYY-MM-DD")
    rebuild.add_argument("--quiet", action="store_true", help="no progress bar")
    rebuild.set_defaults(func=run_rollups_rebuild)


def _day(text: str) -> dt.date:
    try:
        return dt.date.fromisoformat(text)
    except ValueError as exc:
        msg = f"{text!r} is not a date (YYYY-MM-DD)"
        raise argparse.ArgumentTypeError(msg) from exc


# ------------------------------------------------------------------------------------------ commands
def run_sink(args: argparse.Namespace) -> int:
    from schemas.config import KafkaSettings, SerdeSettings, TopicSettings
    from sinks.alerts import AlertReceiver, serve
    from sinks.clickhouse import connect
    from sinks.config import ClickHouseSettings, SinkSettings
    from sinks.exceptions import SinkError
    from sinks.runner import SinkRunner

    ch = ClickHouseSettings()
    overrides: dict[str, Any] = {}
    if args.group:
        overrides["group_id"] = args.group
    if args.metrics_port is not None:
        overrides["metrics_port"] = args.metrics_port
    sink = SinkSettings(**overrides)
    migrate_here = sink.auto_migrate and not args.no_migrate
    # Without migrations the database is left to `millstream migrate` (in a Replicated ClickHouse it
    # must be created Replicated there): a sink that created it plain first would split the replicas.
    try:
        client = connect(ch, create_database=migrate_here)
    except SinkError as exc:
        if migrate_here:
            raise
        msg = f"{exc} (the sink runs without migrations: run `millstream migrate` first)"
        raise SinkError(msg) from exc
    try:
        if migrate_here:
            for line in _migrate(client, ch):
                print(line, file=sys.stderr)
        server = None
        if sink.metrics_port is not None:
            server = serve(sink.metrics_port, AlertReceiver(client, ch))
        runner = SinkRunner(
            client,
            clickhouse=ch,
            sink=sink,
            kafka=KafkaSettings(),
            topics=TopicSettings(),
            serde_settings=SerdeSettings(),
            exit_when_idle=args.exit_when_idle,
        )
        restore = _install_stop_signals(runner.stop)
        try:
            stats = runner.run()
        finally:
            restore()
            if server is not None:
                server.shutdown()
    finally:
        client.close()
    print(
        f"sink: consumed {stats.consumed} records, wrote {stats.written} rows "
        f"({stats.dead_letters} dead letters) in {stats.flushes} batches",
        file=sys.stderr,
    )
    return 0


def _migrate(client: Any, settings: Any) -> list[str]:
    """Migrations, views and TTLs; one line per change."""
    from sinks.migrations import Migration, migrate
    from sinks.retention import apply_retention

    lines = []
    for done in migrate(client):
        if isinstance(done, Migration):
            lines.append(f"applied {done.version:04d}_{done.name}")
        else:
            lines.append(f"applied view file {done.file} ({', '.join(done.views)})")
    for change in apply_retention(client, settings):
        before = f"{change.before} days" if change.before is not None else "none"
        after = f"{change.after} days" if change.after is not None else "none"
        lines.append(f"TTL of {change.table}: {before} -> {after}")
    return lines


def run_migrate(args: argparse.Namespace) -> int:
    from sinks.clickhouse import connect
    from sinks.config import ClickHouseSettings
    from sinks.migrations import status, view_status
    from sinks.retention import current_ttls

    settings = ClickHouseSettings()
    client = connect(settings)
    try:
        if args.status:
            for st in status(client):
                print(f"{st.version:04d}  {st.name:<32} {st.state}")
            for file, state in view_status(client):
                print(f"view  {file:<32} {state}")
            for table, days in current_ttls(client).items():
                shown = "none" if days is None else "unmanaged" if days < 0 else f"{days} days"
                print(f"ttl   {table:<32} {shown}")
            return 0
        lines = _migrate(client, settings)
        print("\n".join(lines) if lines else "schema up to date")
        return 0
    finally:
        client.close()


def run_sql(args: argparse.Namespace) -> int:
    from sinks.clickhouse import connect, error_text
    from sinks.exceptions import SinkError
    from sinks.output import write_result
    from sinks.statements import one_statement

    parsed = one_statement(args.query)
    statement = parsed.text  # the statement the user typed (one; its trailing ';' removed)
    client = connect()
    try:
        try:
            if parsed.returns_rows:
                result = client.query(statement)
                columns, rows = list(result.column_names), [list(r) for r in result.result_rows]
                if not columns:  # the embedded engine names no columns of an empty result
                    header = client.raw_query(statement, fmt="TabSeparatedWithNames")
                    columns = header.decode().split("\n", 1)[0].split("\t") if header.strip() else []
            else:
                client.command(statement)
                print("OK")
                return 0
        except Exception as exc:
            msg = f"query failed: {error_text(exc)}{_empty_database_hint(client, exc)}"
            raise SinkError(msg) from exc
    finally:
        client.close()
    write_result(columns, rows, args.format, sys.stdout)
    return 0


def _empty_database_hint(client: Any, exc: Exception) -> str:
    """For an unknown table in a database without tables: where that database is and what to do."""
    if getattr(exc, "code", None) != 60 and "UNKNOWN_TABLE" not in str(exc):
        return ""
    from sinks.config import ClickHouseSettings

    try:
        tables = int(str(client.command(_TABLES_HERE)))
    except Exception:  # noqa: BLE001 - only a hint
        return ""
    if tables:
        return ""
    return (
        f". The database at {ClickHouseSettings().display_url()} has no tables: run the command from the "
        "folder of your Millstream data, set MILLSTREAM_DATA_DIR or MILLSTREAM_CLICKHOUSE_URL, or run "
        "`millstream migrate` (a demo or sink creates them)"
    )


def run_metadata_load(args: argparse.Namespace) -> int:
    from sinks.clickhouse import connect
    from sinks.config import ClickHouseSettings
    from sinks.exceptions import SinkError
    from sinks.metadata import load
    from sinks.migrations import migrate

    ch = ClickHouseSettings()
    # Without migrations the database and its tables are left to `millstream migrate`: in a Replicated
    # ClickHouse the database must be created Replicated there (as for `sink --no-migrate`).
    try:
        client = connect(ch, create_database=not args.no_migrate)
    except SinkError as exc:
        if not args.no_migrate:
            raise
        msg = f"{exc} (metadata load runs without migrations: run `millstream migrate` first)"
        raise SinkError(msg) from exc
    try:
        if not args.no_migrate:
            migrate(client)  # the machines table may be new
        elif not client.command("EXISTS TABLE machines"):
            msg = (
                f"the database {ch.resolved_database()!r} at {ch.display_url()} has no machines table yet "
                "(metadata load runs without migrations: run `millstream migrate` first)"
            )
            raise SinkError(msg)
        count = load(client, args.file)
    finally:
        client.close()
    print(f"loaded {count} machine/sensor row(s) from {args.file}")
    return 0


def run_rollups_rebuild(args: argparse.Namespace) -> int:
    from infra.progress import progress_bar
    from sinks.clickhouse import connect
    from sinks.rollups import rebuild

    client = connect()
    try:
        with progress_bar("rebuild", not args.quiet and sys.stderr.isatty()) as advance:
            done = rebuild(client, args.first, args.last, advance)
    finally:
        client.close()
    print(f"rebuilt rollups of {args.first}..{args.last} from {done.windows} window(s)")
    if done.kept:
        print(
            f"kept the rollups of {len(done.kept)} day(s) whose windows have expired "
            f"({done.kept[0]} … {done.kept[-1]}): nothing to rebuild them from",
            file=sys.stderr,
        )
    return 0


def _install_stop_signals(stop: Any) -> Any:
    """SIGTERM and SIGINT call ``stop`` (graceful: flush, commit, close); a second one interrupts.

    Returns a function that restores the previous handlers.
    """
    if threading.current_thread() is not threading.main_thread():
        return lambda: None
    previous = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGINT)}

    stopping = threading.Event()

    def handler(signum: int, frame: Any) -> None:
        if stopping.is_set():  # a second signal: give up on the graceful path
            raise KeyboardInterrupt
        stopping.set()
        logger.info("signal %s: stopping after the pending batch", signum)
        stop()

    for sig in previous:
        signal.signal(sig, handler)

    def restore() -> None:
        for sig, h in previous.items():
            signal.signal(sig, h)

    return restore


def run_dead_letters_replay(args: argparse.Namespace) -> int:
    import json

    from sinks.redrive import Selection, parse_time_ms, replay_dead_letters

    selection = Selection(
        reasons=tuple(args.reason),
        stage=args.stage,
        topic=args.topic,
        since_ms=parse_time_ms(args.since, "--since") if args.since else None,
        until_ms=parse_time_ms(args.until, "--until") if args.until else None,
    )
    summary = replay_dead_letters(selection, dry_run=args.dry_run)
    print(json.dumps({"dry_run": args.dry_run, **summary.to_dict()}))
    return 0
