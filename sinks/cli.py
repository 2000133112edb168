"""``millstream sink``, ``millstream migrate`` and ``millstream sql``.

Cheap to import: the ClickHouse and Kafka clients are imported inside the commands.
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import json
import logging
import signal
import sys
import threading
from collections.abc import Sequence
from decimal import Decimal
from typing import Any, TextIO

logger = logging.getLogger(__name__)

_READ_PREFIXES = ("SELECT", "WITH", "SHOW", "DESCRIBE", "DESC", "EXPLAIN", "EXISTS", "(")


def register(subparsers: Any) -> None:
    sink = subparsers.add_parser(
        "sink",
        help="write window aggregates and dead letters from Kafka into ClickHouse",
        description="Consume the windows and dead-letters topics and write them into ClickHouse "
        "(embedded by default: MILLSTREAM_CLICKHOUSE_URL unset). Offsets are committed after each "
        "written batch. SIGTERM/Ctrl-C flush the pending batch, commit and exit 0.",
    )
    sink.add_argument(
        "--metrics-port",
        type=int,
        default=None,
        metavar="P",
        help="serve /metrics, /healthz, /readyz on port P (default: MILLSTREAM_SINK_METRICS_PORT)",
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
    sink.add_argument("--no-migrate", action="store_true", help="do not apply pending migrations at start")
    sink.set_defaults(func=run_sink)

    mig = subparsers.add_parser(
        "migrate",
        help="apply pending ClickHouse migrations (idempotent)",
        description="Apply the versioned DDL in infra/clickhouse/migrations that the database lacks; "
        "applied versions are recorded in schema_migrations.",
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


# ------------------------------------------------------------------------------------------ commands
def run_sink(args: argparse.Namespace) -> int:
    from schemas.config import KafkaSettings, SerdeSettings, TopicSettings
    from sinks.clickhouse import connect
    from sinks.config import ClickHouseSettings, SinkSettings
    from sinks.metrics import serve
    from sinks.migrations import migrate
    from sinks.runner import SinkRunner

    ch = ClickHouseSettings()
    overrides: dict[str, Any] = {}
    if args.group:
        overrides["group_id"] = args.group
    if args.metrics_port is not None:
        overrides["metrics_port"] = args.metrics_port
    sink = SinkSettings(**overrides)
    client = connect(ch)
    try:
        if sink.auto_migrate and not args.no_migrate:
            for mig in migrate(client):
                print(f"applied migration {mig.version:04d}_{mig.name}", file=sys.stderr)
        server = serve(sink.metrics_port, stage="sink") if sink.metrics_port is not None else None
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


def run_migrate(args: argparse.Namespace) -> int:
    from sinks.clickhouse import connect
    from sinks.migrations import migrate, status

    client = connect()
    try:
        if args.status:
            for st in status(client):
                print(f"{st.version:04d}  {st.name:<32} {st.state}")
            return 0
        applied = migrate(client)
        for mig in applied:
            print(f"applied {mig.version:04d}_{mig.name}")
        if not applied:
            print("schema up to date")
        return 0
    finally:
        client.close()


def run_sql(args: argparse.Namespace) -> int:
    from sinks.clickhouse import connect
    from sinks.exceptions import SinkError

    client = connect()
    try:
        statement = args.query.strip().rstrip(";")
        try:
            if statement.lstrip("( \n\t").upper().startswith(_READ_PREFIXES):
                result = client.query(statement)
                columns, rows = list(result.column_names), [list(r) for r in result.result_rows]
            else:
                client.command(statement)
                print("OK")
                return 0
        except Exception as exc:
            msg = f"query failed: {exc}"
            raise SinkError(msg) from exc
    finally:
        client.close()
    write_result(columns, rows, args.format, sys.stdout)
    return 0


# ------------------------------------------------------------------------------------------ output
def write_result(columns: Sequence[str], rows: Sequence[Sequence[Any]], fmt: str, out: TextIO) -> None:
    """Print a result as an aligned table, CSV (with header) or a JSON array of objects."""
    if fmt == "csv":
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(columns)
        writer.writerows([[_text(v, csv_null="") for v in row] for row in rows])
    elif fmt == "json":
        json.dump([dict(zip(columns, map(_json_value, row), strict=True)) for row in rows], out, indent=2)
        out.write("\n")
    else:
        out.write(format_table(columns, rows))


def format_table(columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """An aligned text table; numbers right-aligned, NULL for missing values, a row count footer."""
    cells = [[_text(v).replace("\n", "\\n") for v in row] for row in rows]
    widths = [len(c) for c in columns]
    for row in cells:
        widths = [max(w, len(c)) for w, c in zip(widths, row, strict=True)]
    numeric = [
        bool(rows) and all(_is_number(r[i]) or r[i] is None for r in rows) for i in range(len(columns))
    ]

    def line(values: Sequence[str]) -> str:
        parts = [v.rjust(w) if num else v.ljust(w) for v, w, num in zip(values, widths, numeric, strict=True)]
        return " | ".join(parts).rstrip()

    lines = [line(list(columns)), "-+-".join("-" * w for w in widths)]
    lines += [line(row) for row in cells]
    lines.append(f"({len(rows)} row{'s' if len(rows) != 1 else ''})")
    return "\n".join(lines) + "\n"


def _is_number(v: Any) -> bool:
    return isinstance(v, int | float | Decimal) and not isinstance(v, bool)


def _text(v: Any, csv_null: str = "NULL") -> str:
    if v is None:
        return csv_null
    if isinstance(v, bytes):
        return v.decode("utf-8", errors="backslashreplace")
    if isinstance(v, dt.datetime):
        return v.isoformat(sep=" ", timespec="milliseconds")
    return str(v)


def _json_value(v: Any) -> Any:
    if v is None or isinstance(v, bool | int | float | str):
        return v
    if isinstance(v, dict):
        return {str(k): _json_value(x) for k, x in v.items()}
    if isinstance(v, list | tuple):
        return [_json_value(x) for x in v]
    if isinstance(v, dt.datetime):
        return v.isoformat(timespec="milliseconds")
    return _text(v)


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
