"""``millstream sql`` / ``migrate``, the embedded-database lock, and the sink settings."""

from __future__ import annotations

import base64
import csv
import io
import json
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar

import pytest

from infra.cli import main
from infra.procs import free_port
from sinks.clickhouse import connect
from sinks.config import ClickHouseSettings, SinkSettings
from sinks.exceptions import SinkError
from sinks.tables import WINDOW_AGGREGATES, Source
from sinks.writer import BatchWriter

REPO = Path(__file__).resolve().parents[2]
NAMES = ["plain", "it's", 'say "hi"', "back\\slash", "comma, separated", "'); DROP TABLE x; --"]


@pytest.fixture()
def filled(
    ch: Any, ch_settings: ClickHouseSettings, make_window: Any, monkeypatch: pytest.MonkeyPatch
) -> Any:
    """The test's embedded database, holding one window per name; CLI commands use it via env."""
    w = BatchWriter(ch, ch_settings)
    for i, name in enumerate(NAMES):
        rec = make_window(
            machine_id=name,
            window_start=1_767_225_600_000 + i * 60_000,
            mean=i + 0.5,
            p50=None if i % 2 else 1.25,
        )
        w.add(WINDOW_AGGREGATES, rec, Source("w", 0, i, None, name.encode()))
    w.flush()
    monkeypatch.setenv("MILLSTREAM_DATA_DIR", str(ch_settings.data_dir))
    monkeypatch.delenv("MILLSTREAM_CLICKHOUSE_URL", raising=False)
    return ch


QUERY = "SELECT machine_id, mean, p50, window_start FROM window_aggregates ORDER BY window_start"


def test_sql_csv_round_trips(filled: Any, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["sql", QUERY, "--format", "csv"]) == 0
    rows = list(csv.reader(io.StringIO(capsys.readouterr().out)))
    assert rows[0] == ["machine_id", "mean", "p50", "window_start"]
    assert [r[0] for r in rows[1:]] == NAMES
    assert [float(r[1]) for r in rows[1:]] == [i + 0.5 for i in range(len(NAMES))]
    assert [r[2] for r in rows[1:]] == ["1.25" if i % 2 == 0 else "" for i in range(len(NAMES))]
    assert rows[1][3] == "2026-01-01 00:00:00.000+00:00"


def test_sql_json_round_trips(filled: Any, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["sql", QUERY, "--format", "json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert [d["machine_id"] for d in data] == NAMES
    assert [d["p50"] for d in data] == [1.25 if i % 2 == 0 else None for i in range(len(NAMES))]
    assert data[0]["window_start"] == "2026-01-01T00:00:00.000+00:00"


def test_sql_table_is_aligned_and_counted(filled: Any, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["sql", QUERY]) == 0
    lines = capsys.readouterr().out.splitlines()
    header, rule, body, footer = lines[0], lines[1], lines[2:-1], lines[-1]
    assert header.split(" | ")[0].strip() == "machine_id"
    assert set(rule) <= {"-", "+"}
    assert footer == f"({len(NAMES)} rows)"
    assert [line.split(" | ")[0].rstrip() for line in body] == NAMES
    # Columns line up: every separator sits at the same position on every line.
    positions = {tuple(i for i, ch in enumerate(line) if ch == "|") for line in [header, *body]}
    assert len(positions) == 1
    assert "NULL" in body[1]


def test_sql_statement_and_error(filled: Any, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["sql", "OPTIMIZE TABLE window_aggregates FINAL"]) == 0
    assert capsys.readouterr().out.strip() == "OK"
    assert main(["sql", "SELECT nope FROM window_aggregates"]) == 1
    err = capsys.readouterr().err
    # ClickHouse's own text (code 47 = UNKNOWN_IDENTIFIER), no traceback, no driver noise.
    assert err.startswith(
        "millstream: error: query failed: ClickHouse error 47: Unknown expression identifier"
    )
    assert "`nope`" in err and "(UNKNOWN_IDENTIFIER)" in err
    assert "Traceback" not in err and "(version" not in err and "FORMAT Native" not in err
    assert main(["sql", "SELEC 1"]) == 1
    assert "ClickHouse error 62: Syntax error" in capsys.readouterr().err
    assert main(["sql", "  ;  "]) == 1
    assert "no SQL statement given" in capsys.readouterr().err


def test_sql_prints_maps_and_non_finite_numbers(filled: Any, capsys: pytest.CaptureFixture[str]) -> None:
    query = (
        "SELECT machine_id, map('mean', mean) AS m, nan AS x "
        "FROM window_aggregates ORDER BY window_start LIMIT 2"
    )
    assert main(["sql", query, "--format", "json"]) == 0
    data = json.loads(capsys.readouterr().out)  # NaN is not JSON: printed as null, as ClickHouse does
    assert [d["machine_id"] for d in data] == NAMES[:2]
    assert [d["m"] for d in data] == [{"mean": 0.5}, {"mean": 1.5}] and all(d["x"] is None for d in data)
    assert main(["sql", query, "--format", "csv"]) == 0
    rows = list(csv.reader(io.StringIO(capsys.readouterr().out)))
    assert rows[0] == ["machine_id", "m", "x"] and rows[1][2] == "nan"
    assert main(["sql", query]) == 0
    assert capsys.readouterr().out.splitlines()[-1] == "(2 rows)"


def test_error_text_keeps_clickhouse_s_message_only() -> None:
    from sinks.clickhouse import error_text

    class HTTPStyle(Exception):
        pass

    http = HTTPStyle(
        "HTTPDriver for http://ch:8123 received ClickHouse error code 60\n Code: 60. DB::Exception: "
        "Unknown table expression identifier 'x' in scope SELECT * FROM x. (UNKNOWN_TABLE) "
        "(version 24.8.4.13 (official build))\n"
    )
    assert error_text(http) == (
        "ClickHouse error 60: Unknown table expression identifier 'x' in scope SELECT * FROM x. "
        "(UNKNOWN_TABLE)"
    )
    assert error_text(ConnectionError("refused")) == "ConnectionError: refused"


def test_migrate_command_is_idempotent(
    ch_settings: ClickHouseSettings, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("MILLSTREAM_DATA_DIR", str(ch_settings.data_dir))
    monkeypatch.setenv("MILLSTREAM_CLICKHOUSE_TTL_WINDOWS_DAYS", "45")
    assert main(["migrate"]) == 0
    out = capsys.readouterr().out
    assert "applied 0001_window_aggregates" in out and "applied view file 20_v_machine_latest" in out
    assert "TTL of window_aggregates: none -> 45 days" in out
    assert main(["migrate"]) == 0
    assert capsys.readouterr().out.strip() == "schema up to date"
    assert main(["migrate", "--status"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert all(line.endswith("applied") for line in lines if not line.startswith("ttl"))
    assert "ttl   window_aggregates                45 days" in lines
    monkeypatch.setenv("MILLSTREAM_CLICKHOUSE_TTL_WINDOWS_DAYS", "0")
    assert main(["migrate"]) == 0
    assert capsys.readouterr().out.strip() == "TTL of window_aggregates: 45 days -> none"


HOLD = """
import sys, time
from sinks.clickhouse import connect
from sinks.config import ClickHouseSettings
client = connect(ClickHouseSettings(data_dir=sys.argv[1]))
print("open", flush=True)
sys.stdin.readline()
"""


def test_locked_embedded_database_gives_a_clear_error(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    settings = ClickHouseSettings(data_dir=tmp_path)
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(tmp_path)],
        cwd=REPO,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "open"
        with pytest.raises(SinkError) as info:
            connect(settings)
        path = settings.embedded_path()
        assert str(info.value) == (
            f"embedded ClickHouse at {path} is in use by another process (a running sink?); "
            "stop it or set MILLSTREAM_CLICKHOUSE_URL to a ClickHouse server"
        )
        assert "Code: 76" not in capfd.readouterr().err  # the engine's own print is not shown as well
    finally:
        assert holder.stdin is not None
        holder.stdin.close()
        holder.wait(30)
    connect(settings).close()  # released with the process


def test_unreachable_server_is_a_sink_error_without_the_password() -> None:
    port = free_port()
    s = ClickHouseSettings(url=f"http://writer:s3cret@127.0.0.1:{port}/plantdb", connect_timeout_s=2)
    assert not s.embedded and s.resolved_database() == "plantdb"
    with pytest.raises(SinkError) as info:
        connect(s)
    text = str(info.value)
    target = f"http://writer:***@127.0.0.1:{port}/plantdb"
    assert f"cannot connect to ClickHouse at {target}: OperationalError" in text
    assert "s3cret" not in text


class _RefusingClickHouse(BaseHTTPRequestHandler):
    """Answers like a ClickHouse server that refuses the login; remembers what it was sent."""

    seen: ClassVar[list[dict[str, str]]] = []

    def _answer(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length).decode(errors="replace") if length else ""
        self.seen.append({"path": self.path, "body": body, **{k.lower(): v for k, v in self.headers.items()}})
        msg = b"Code: 516. DB::Exception: writer: Authentication failed. (AUTHENTICATION_FAILED)"
        self.send_response(403)
        self.send_header("X-ClickHouse-Exception-Code", "516")
        self.send_header("Content-Length", str(len(msg)))
        self.end_headers()
        self.wfile.write(msg)

    do_GET = do_POST = _answer  # noqa: N815 - http.server API

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        return


def test_server_url_sends_the_configured_credentials() -> None:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _RefusingClickHouse)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    _RefusingClickHouse.seen.clear()
    try:
        port = server.server_address[1]
        s = ClickHouseSettings(
            url=f"http://url-user:url-pass@127.0.0.1:{port}/plantdb",
            user="writer",
            password="s3cret",
            connect_timeout_s=2,
        )
        with pytest.raises(SinkError) as info:
            connect(s)
    finally:
        server.shutdown()
    assert "Authentication failed" in str(info.value) and "s3cret" not in str(info.value)
    assert _RefusingClickHouse.seen, "the client never called the server"
    first = _RefusingClickHouse.seen[0]
    # Settings override the URL's credentials (HTTP basic auth or ClickHouse's own headers).
    auth = first.get("authorization", "")
    if auth:
        assert base64.b64decode(auth.split()[1]).decode() == "writer:s3cret"
    else:
        assert (first.get("x-clickhouse-user"), first.get("x-clickhouse-key")) == ("writer", "s3cret")


def test_settings_resolve_targets(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MILLSTREAM_DATA_DIR", str(tmp_path / "dd"))
    default = ClickHouseSettings()
    assert default.embedded and default.embedded_path() == (tmp_path / "dd" / "clickhouse").resolve()
    assert default.resolved_database() == "millstream"
    explicit = ClickHouseSettings(url="chdb:///var/lib/ms", database="other")
    assert explicit.embedded_path() == Path("/var/lib/ms") and explicit.resolved_database() == "other"
    assert ClickHouseSettings(url="chdb://memory").embedded_path() is None
    server = ClickHouseSettings(url="https://u:p%40ss@ch.example:8443/db?verify=false")
    assert server.server_dsn() == "https://u:p%40ss@ch.example:8443?verify=false"
    assert server.display_url() == "https://u:***@ch.example:8443/db"
    monkeypatch.setenv("MILLSTREAM_CLICKHOUSE_URL", "ftp://nope")
    with pytest.raises(ValueError, match="chdb://"):
        ClickHouseSettings()


@pytest.mark.parametrize("cls", [ClickHouseSettings, SinkSettings])
def test_every_setting_names_its_environment_variable(cls: Any) -> None:
    prefix = cls.model_config["env_prefix"]
    for name, field in cls.model_fields.items():
        env = "MILLSTREAM_DATA_DIR" if name == "data_dir" else f"{prefix}{name}".upper()
        assert (field.description or "").startswith(f"{env}:"), name


def test_sql_runs_one_statement_however_it_is_written(
    filled: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    count = "SELECT count() AS n FROM window_aggregates"
    for text in (
        f"-- how many windows\n{count}",  # pasted from a .sql file
        f"/* a; b */ {count} ; -- done",
        "FROM window_aggregates SELECT count() AS n",  # ClickHouse's FROM-first form
        f"{count} WHERE machine_id != 'a;b' OR machine_id = 'it''s;'",  # ';' inside strings
    ):
        assert main(["sql", text, "--format", "csv"]) == 0, text
        assert capsys.readouterr().out == f"n\n{len(NAMES)}\n", text


def test_sql_refuses_several_statements_and_a_format_clause(
    filled: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["sql", "SELECT 1; DROP TABLE alerts"]) == 1
    err = capsys.readouterr().err
    assert "one statement at a time: the text holds 2 statements" in err and "'DROP TABLE alerts'" in err
    assert filled.command("EXISTS TABLE alerts") == 1  # nothing ran
    assert main(["sql", "SELECT 1 FORMAT JSON"]) == 1
    assert "leave out the FORMAT clause" in capsys.readouterr().err
    assert main(["sql", "SELECT 'unterminated"]) == 1
    assert "unterminated '…' starting at character 8" in capsys.readouterr().err


def test_sql_names_the_columns_of_an_empty_result(filled: Any, capsys: pytest.CaptureFixture[str]) -> None:
    query = "SELECT machine_id, mean FROM window_aggregates WHERE machine_id = 'nobody'"
    assert main(["sql", query, "--format", "csv"]) == 0
    assert capsys.readouterr().out == "machine_id,mean\n"
    assert main(["sql", query]) == 0
    assert capsys.readouterr().out.splitlines()[0].split() == ["machine_id", "|", "mean"]


def test_an_unknown_table_in_an_empty_database_says_where_the_database_is(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("MILLSTREAM_CLICKHOUSE_URL", f"chdb://{tmp_path / 'elsewhere'}")  # a wrong folder
    assert main(["sql", "SELECT count() FROM window_aggregates"]) == 1
    err = capsys.readouterr().err
    assert f"The database at chdb://{tmp_path / 'elsewhere'} has no tables" in err
    assert "set MILLSTREAM_DATA_DIR or MILLSTREAM_CLICKHOUSE_URL" in err


def test_sink_without_migrations_does_not_create_the_database(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """`sink --no-migrate` leaves the database to `millstream migrate`: in a Replicated ClickHouse it
    must be created Replicated there, and a sink that created it plain first would split the
    replicas (k8s/overlays/prod). It stops with the hint instead."""
    monkeypatch.setenv("MILLSTREAM_DATA_DIR", str(tmp_path))
    monkeypatch.delenv("MILLSTREAM_CLICKHOUSE_URL", raising=False)
    assert main(["sink", "--no-migrate"]) == 1
    err = capsys.readouterr().err
    assert "run `millstream migrate` first" in err, err
    client = connect(ClickHouseSettings(data_dir=tmp_path, database="default"), create_database=False)
    try:
        assert client.command("SELECT count() FROM system.databases WHERE name = 'millstream'") == 0
    finally:
        client.close()


def test_metadata_load_without_migrations_waits_for_millstream_migrate(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """`metadata load --no-migrate` (the Kubernetes Job beside the migrate Job) neither creates the
    database (a Replicated one must come from `millstream migrate`) nor the tables: it fails with the
    hint until they exist, then loads."""
    monkeypatch.setenv("MILLSTREAM_DATA_DIR", str(tmp_path))
    monkeypatch.delenv("MILLSTREAM_CLICKHOUSE_URL", raising=False)
    csv = tmp_path / "machines.csv"
    csv.write_text("plant,line,machine_id,sensor,unit,lsl,usl\np1,l1,m1,pressure,bar,5.0,7.0\n")
    assert main(["metadata", "load", "--no-migrate", str(csv)]) == 1
    assert "run `millstream migrate` first" in capsys.readouterr().err
    client = connect(ClickHouseSettings(data_dir=tmp_path, database="default"), create_database=False)
    try:
        assert client.command("SELECT count() FROM system.databases WHERE name = 'millstream'") == 0
        client.command("CREATE DATABASE millstream")  # the database without its tables
    finally:
        client.close()
    assert main(["metadata", "load", "--no-migrate", str(csv)]) == 1
    assert "has no machines table yet" in capsys.readouterr().err
    assert main(["migrate"]) == 0
    capsys.readouterr()
    assert main(["metadata", "load", "--no-migrate", str(csv)]) == 0
    assert "loaded 1 machine/sensor row(s)" in capsys.readouterr().out
