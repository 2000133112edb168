"""Alert history over real HTTP (Alertmanager webhook format 4) and the machine metadata loader."""

from __future__ import annotations

import datetime as dt
import json
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sink_data import alert_payload

from infra.cli import main
from sinks.alerts import AlertReceiver, serve
from sinks.config import ClickHouseSettings

END = 1_795_046_400_000  # 2026-11-19T00:00:00Z


def post(port: int, body: bytes, path: str = "/alertmanager") -> tuple[int, bytes]:
    req = urllib.request.Request(
        f"http://127.0.0.1:{port}{path}",
        data=body,
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return int(r.status), r.read()
    except urllib.error.HTTPError as exc:
        return int(exc.code), exc.read()


@pytest.fixture()
def http(ch: Any, ch_settings: ClickHouseSettings) -> Iterator[int]:
    server = serve(0, AlertReceiver(ch, ch_settings), host="127.0.0.1")
    try:
        yield int(server.server_address[1])
    finally:
        server.shutdown()
        server.server_close()


def alert_rows(ch: Any) -> list[tuple[Any, ...]]:
    return [
        tuple(r)
        for r in ch.query(
            "SELECT fingerprint, status, alertname, severity, labels, annotations, "
            "toUnixTimestamp64Milli(starts_at), toUnixTimestamp64Milli(ends_at), "
            "generator_url, receiver, group_key "
            "FROM alerts FINAL ORDER BY fingerprint, status"
        ).result_rows
    ]


def test_alertmanager_posts_are_written_once_per_alert_and_status(ch: Any, http: int) -> None:
    body = alert_payload(END)
    payload = json.loads(body)
    status, answer = post(http, body)
    assert (status, json.loads(answer)) == (200, {"written": 2})
    expected = []
    for a in payload["alerts"]:
        ends = (
            None
            if a["endsAt"].startswith("0001-")
            else int(dt.datetime.fromisoformat(a["endsAt"]).timestamp() * 1000)
        )
        expected.append((
            a["fingerprint"], a["status"], a["labels"]["alertname"], a["labels"]["severity"], a["labels"],
            a["annotations"], int(dt.datetime.fromisoformat(a["startsAt"]).timestamp() * 1000), ends,
            a["generatorURL"], payload["receiver"], payload["groupKey"],
        ))  # fmt: skip
    assert alert_rows(ch) == sorted(expected)
    # Alertmanager repeats a firing notification every repeat_interval: no new row.
    assert post(http, body)[0] == 200
    assert alert_rows(ch) == sorted(expected)
    # The firing alert resolves: a second row of the same alert.
    firing = payload["alerts"][0]
    resolved = {**payload, "status": "resolved",
                "alerts": [{**firing, "status": "resolved",
                            "endsAt": "2026-11-18T23:55:00.123456789Z"}]}  # fmt: skip
    assert post(http, json.dumps(resolved).encode())[0] == 200
    rows = [r for r in alert_rows(ch) if r[0] == firing["fingerprint"]]
    resolved_ms = int(dt.datetime(2026, 11, 18, 23, 55, 0, 123_000, tzinfo=dt.UTC).timestamp() * 1000)
    assert [(r[1], r[7]) for r in rows] == [("firing", None), ("resolved", resolved_ms)]
    assert ch.command("SELECT count() FROM alerts FINAL") == 3
    with urllib.request.urlopen(f"http://127.0.0.1:{http}/metrics", timeout=5) as r:
        assert b"millstream_sink_alerts_received_total" in r.read()


def test_bad_notifications_are_refused_or_dead_lettered(ch: Any, http: int) -> None:
    assert post(http, b"{not json")[0] == 400
    old = {**json.loads(alert_payload(END)), "version": "3"}
    status, answer = post(http, json.dumps(old).encode())
    assert status == 400 and b"version" in answer
    assert post(http, alert_payload(END), path="/elsewhere")[0] == 404
    payload = json.loads(alert_payload(END))
    payload["alerts"][1]["startsAt"] = "yesterday"
    status, answer = post(http, json.dumps(payload).encode())
    assert (status, json.loads(answer)) == (200, {"written": 1})
    dead = ch.query("SELECT topic, reason_code, reason FROM dead_letters").result_rows
    assert [(d[0], d[1]) for d in dead] == [("alertmanager", "invalid_record")] and "startsAt" in dead[0][2]
    assert ch.command("SELECT count() FROM alerts") == 1


def test_clickhouse_failure_is_503_so_alertmanager_retries(ch: Any, http: int) -> None:
    ch.command("DROP TABLE alerts")
    status, answer = post(http, alert_payload(END))
    assert status == 503 and b"alerts" in answer


# ------------------------------------------------------------------------------------------ metadata
CSV = """plant,line,machine_id,sensor,unit,lsl,usl,description
p1,l1,m001,temperature,Cel,20,80,"press 1, main motor"
p1,l1,m001,pressure,bar,,7.5,upper limit only
p1,l2,m002,temperature,Cel,20,80,
"""


def machines(ch: Any) -> list[tuple[Any, ...]]:
    q = (
        "SELECT plant, line, machine_id, sensor, unit, lsl, usl, description "
        "FROM machines FINAL ORDER BY machine_id, sensor"
    )
    return [tuple(r) for r in ch.query(q).result_rows]


def test_metadata_load_is_idempotent_and_replaces_rows(
    ch: Any,
    ch_settings: ClickHouseSettings,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("MILLSTREAM_DATA_DIR", str(ch_settings.data_dir))
    path = tmp_path / "machines.csv"
    path.write_text(CSV)
    expected = [
        ("p1", "l1", "m001", "pressure", "bar", None, 7.5, "upper limit only"),
        ("p1", "l1", "m001", "temperature", "Cel", 20.0, 80.0, "press 1, main motor"),
        ("p1", "l2", "m002", "temperature", "Cel", 20.0, 80.0, ""),
    ]
    for _ in range(2):
        assert main(["metadata", "load", str(path)]) == 0
        assert capsys.readouterr().out.strip() == f"loaded 3 machine/sensor row(s) from {path}"
        assert machines(ch) == expected
    ch.command("OPTIMIZE TABLE machines FINAL")
    assert ch.command("SELECT count() FROM machines") == 3
    path.write_text(
        CSV.replace("p1,l2,m002,temperature,Cel,20,80,", "p1,l2,m002,temperature,Cel,25,75,retuned")
    )
    assert main(["metadata", "load", str(path)]) == 0
    assert machines(ch)[-1] == ("p1", "l2", "m002", "temperature", "Cel", 25.0, 75.0, "retuned")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("plant,line,machine_id\np1,l1,m1\n", "missing column(s) sensor"),
        ("plant,line,machine_id,sensor,colour\np,l,m,s,red\n", "unknown column(s) colour"),
        ("plant,line,machine_id,sensor,lsl\np,l,m,s,abc\n", "line 2: lsl='abc' is not a number"),
        ("plant,line,machine_id,sensor,lsl,usl\np,l,m,s,9,1\n", "line 2: lsl 9.0 is above usl 1.0"),
        ("plant,line,machine_id,sensor\np,l,m,s\np,l,m,s\n", "line 3: m/s is already on line 2"),
        ("plant,line,machine_id,sensor\np,l,,s\n", "line 2: machine_id is empty"),
        (
            "plant,line,machine_id,sensor,lsl,lsl\np,l,m,s,1,2\n",
            "line 1: column(s) lsl appear more than once",
        ),
        ("plant,line,machine_id,sensor,\np,l,m,s,\n", "line 1: column 5 has no name (a delimiter at the end"),
        ("plant;line;machine_id;sensor;lsl\np;l;m;s;1.234,5\n", "line 2: lsl='1.234.5' is not a number"),
    ],
)
def test_metadata_errors_name_the_problem(
    ch: Any,
    ch_settings: ClickHouseSettings,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    text: str,
    message: str,
) -> None:
    monkeypatch.setenv("MILLSTREAM_DATA_DIR", str(ch_settings.data_dir))
    path = tmp_path / "bad.csv"
    path.write_text(text, encoding="utf-8")
    assert main(["metadata", "load", str(path)]) == 1
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert ch.command("SELECT count() FROM machines") == 0


def test_metadata_from_a_spreadsheet_in_another_locale(
    ch: Any,
    ch_settings: ClickHouseSettings,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Semicolons and decimal commas (as a German spreadsheet saves CSV), tabs; and the same file in
    Windows-1252 instead of UTF-8 is refused with the line and what to do."""
    monkeypatch.setenv("MILLSTREAM_DATA_DIR", str(ch_settings.data_dir))
    semi = tmp_path / "semi.csv"
    semi.write_text(
        "plant;line;machine_id;sensor;unit;lsl;usl\np1;l1;m001;temperature;°C;55,5;65\n", encoding="utf-8"
    )
    tab = tmp_path / "tab.csv"
    tab.write_text("plant\tline\tmachine_id\tsensor\tusl\np1\tl1\tm002\tpressure\t7.5\n", encoding="utf-8")
    for path in (semi, tab):
        assert main(["metadata", "load", str(path)]) == 0
    assert machines(ch) == [
        ("p1", "l1", "m001", "temperature", "°C", 55.5, 65.0, ""),
        ("p1", "l1", "m002", "pressure", "", None, 7.5, ""),
    ]
    capsys.readouterr()
    latin = tmp_path / "latin.csv"
    latin.write_bytes("plant,line,machine_id,sensor,unit\np1,l1,m003,temperature,°C\n".encode("cp1252"))
    assert main(["metadata", "load", str(latin)]) == 1
    err = capsys.readouterr().err
    assert (
        f"{latin} line 2: not UTF-8 text (byte 0xb0); save it as 'CSV UTF-8'" in err
        and "Traceback" not in err
    )
