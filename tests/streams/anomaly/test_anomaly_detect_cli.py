"""``millstream detect``: file formats, column choice, row order, errors, and faults in pump telemetry."""

from __future__ import annotations

import csv
import math
import random
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest

from infra.cli import main

REPO = Path(__file__).resolve().parents[3]
SENSORS = ["pressure", "current", "temperature", "vibration"]
STEP = (2000, 2300)  # pressure steps up by 0.5 bar (noise 0.03)
DRIFT = (3000, 3600)  # temperature drifts 0.01 K per reading
QUIET = (300, 1990)  # after the warm-up, before the first fault


def pump_rows(n: int = 4320, seed: int = 3) -> list[dict[str, str]]:
    """Three days of one pump at one reading per minute, with a daily rhythm and two injected faults."""
    rng = random.Random(seed)
    t0 = 1_700_000_000
    rows = []
    for i in range(n):
        day = math.sin(2 * math.pi * i / 1440)
        pressure = 4.0 + 0.2 * day + rng.gauss(0, 0.03) + (0.5 if STEP[0] <= i < STEP[1] else 0.0)
        drift = (i - DRIFT[0]) * 0.01 if DRIFT[0] <= i < DRIFT[1] else 0.0
        rows.append(
            {
                "time": datetime.fromtimestamp(t0 + 60 * i, UTC).isoformat().replace("+00:00", "Z"),
                "pressure": f"{pressure:.4f}",
                "current": f"{12 + day + rng.gauss(0, 0.1):.4f}",
                "temperature": f"{60 + 2 * day + rng.gauss(0, 0.2) + drift:.4f}",
                "vibration": f"{abs(rng.gauss(1, 0.2)):.4f}",
                "status": "RUN",
            }
        )
    return rows


def write(path: Path, rows: list[dict[str, str]], delimiter: str = ",", decimal_comma: bool = False) -> Path:
    with path.open("w", newline="") as fh:
        w = csv.writer(fh, delimiter=delimiter)
        w.writerow(list(rows[0]))
        for r in rows:
            w.writerow([v.replace(".", ",") if decimal_comma and k != "time" else v for k, v in r.items()])
    return path


def read(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as fh:
        return list(csv.DictReader(fh))


def detect(tmp_path: Path, src: Path, *extra: str, name: str = "out.csv") -> list[dict[str, str]]:
    out = tmp_path / name
    rc = main(["detect", "--input", str(src), "--timestamp-column", "time", "--output", str(out), *extra])
    assert rc == 0
    return read(out)


@pytest.fixture(scope="module")
def pump_output(tmp_path_factory: pytest.TempPathFactory) -> list[dict[str, str]]:
    tmp = tmp_path_factory.mktemp("pump")
    return detect(tmp, write(tmp / "pump.csv", pump_rows()))


def flagged(out: list[dict[str, str]], lo: int, hi: int) -> list[int]:
    return [i for i in range(lo, hi) if out[i]["is_anomaly"] == "1"]


def test_step_and_drift_are_flagged_and_the_quiet_stretch_is_not(pump_output: list[dict[str, str]]) -> None:
    out = pump_output
    step = flagged(out, *STEP)
    assert step and step[0] < STEP[0] + 30  # within half an hour of the step
    assert out[step[0]]["anomaly_source"] == "pressure"
    drift = flagged(out, *DRIFT)
    assert drift  # the drift is caught before it ends
    assert out[drift[0]]["anomaly_source"] == "temperature"
    assert flagged(out, *QUIET) == []


def test_output_keeps_the_input_and_adds_scores(pump_output: list[dict[str, str]]) -> None:
    rows = pump_rows()
    assert len(pump_output) == len(rows)
    assert list(pump_output[0])[: len(rows[0])] == list(rows[0])  # original columns first, in order
    assert all(
        o["time"] == r["time"] and o["status"] == "RUN" for o, r in zip(pump_output, rows, strict=True)
    )
    scores = [float(o["anomaly_score"]) for o in pump_output]
    assert all(0.0 <= s <= 1.0 for s in scores)
    assert {o["is_anomaly"] for o in pump_output} <= {"0", "1"}


def small_rows() -> list[dict[str, str]]:
    return pump_rows(900)


@pytest.mark.parametrize(("delimiter", "decimal_comma"), [(";", False), ("\t", False), (";", True)])
def test_delimiters_are_sniffed(tmp_path: Path, delimiter: str, decimal_comma: bool) -> None:
    rows = small_rows()
    ref = detect(tmp_path, write(tmp_path / "a.csv", rows), name="ref.csv")
    got = detect(tmp_path, write(tmp_path / "b.csv", rows, delimiter, decimal_comma), name="got.csv")
    assert [g["anomaly_score"] for g in got] == [r["anomaly_score"] for r in ref]
    assert [g["time"] for g in got] == [r["time"] for r in ref]


def test_column_selection(tmp_path: Path) -> None:
    rows = small_rows()
    only = [{"time": r["time"], "pressure": r["pressure"]} for r in rows]
    selected = detect(tmp_path, write(tmp_path / "all.csv", rows), "--columns", "pressure", name="sel.csv")
    alone = detect(tmp_path, write(tmp_path / "one.csv", only), name="one_out.csv")
    assert [s["anomaly_score"] for s in selected] == [a["anomaly_score"] for a in alone]
    assert [s["vibration"] for s in selected] == [
        r["vibration"] for r in rows
    ]  # unselected columns pass through
    everything = detect(tmp_path, tmp_path / "all.csv", name="every.csv")  # default: all numeric, not status
    explicit = detect(tmp_path, tmp_path / "all.csv", "--columns", ",".join(SENSORS), name="explicit.csv")
    assert [e["anomaly_score"] for e in everything] == [x["anomaly_score"] for x in explicit]


def test_a_row_number_column_is_not_a_sensor_unless_named(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Data frames write their index as a first, unnamed column (0, 1, 2, ...): it is not modelled by
    default (a warning says so), and it is when --columns names it."""
    rows = small_rows()
    indexed = [{"": str(i), **r} for i, r in enumerate(rows)]
    src = write(tmp_path / "indexed.csv", indexed)
    plain = detect(tmp_path, write(tmp_path / "plain.csv", rows), name="plain_out.csv")
    with caplog.at_level("WARNING", logger="streams.anomaly.detect"):
        got = detect(tmp_path, src, name="indexed_out.csv")
    assert [g["anomaly_score"] for g in got] == [p["anomaly_score"] for p in plain]
    assert "column '' numbers the rows" in caplog.text
    numbered = write(tmp_path / "numbered.csv", [{"row": str(i + 1), **r} for i, r in enumerate(rows)])
    assert [g["anomaly_score"] for g in detect(tmp_path, numbered, name="numbered_out.csv")] == [
        p["anomaly_score"] for p in plain
    ]  # 1, 2, 3, ... under a name: the same
    named = detect(tmp_path, numbered, "--columns", ",".join(["row", *SENSORS]), name="named_out.csv")
    assert [n["anomaly_score"] for n in named] != [p["anomaly_score"] for p in plain]
    # a counter that does not start at 0 or 1, or skips, is a measurement
    counted = [{**r, "parts": str(100 + 2 * i)} for i, r in enumerate(rows)]
    with_parts = detect(tmp_path, write(tmp_path / "parts.csv", counted), name="parts_out.csv")
    assert [w["anomaly_score"] for w in with_parts] != [p["anomaly_score"] for p in plain]


def test_label_columns_are_not_sensors_unless_named(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """A labelled history (rig data often carries ``anomaly`` and ``changepoint`` columns of 0/1) is
    replayed without reading its labels: the scores are those of the file without them, a warning
    names them, and --columns can still model them. A 0/1 column with another name is a sensor; a
    column named like a label that holds other values is not (a warning says so), unless named."""
    rows = small_rows()
    n = len(rows)
    labelled = [
        {**r, "anomaly": str(int(n // 2 <= i < n // 2 + 50)), "changepoint": str(int(i == n // 2))}
        for i, r in enumerate(rows)
    ]
    plain = detect(tmp_path, write(tmp_path / "plain.csv", rows), name="plain_out.csv")
    src = write(tmp_path / "labelled.csv", labelled)
    with caplog.at_level("WARNING", logger="streams.anomaly.detect"):
        got = detect(tmp_path, src, name="labelled_out.csv")
    assert [g["anomaly_score"] for g in got] == [p["anomaly_score"] for p in plain]
    assert "column 'anomaly' holds 0/1 labels" in caplog.text
    assert "column 'changepoint' holds 0/1 labels" in caplog.text
    named = detect(tmp_path, src, "--columns", ",".join([*SENSORS, "anomaly"]), name="named_out.csv")
    assert [x["anomaly_score"] for x in named] != [p["anomaly_score"] for p in plain]  # the check can fail
    valve = [{**r, "valve_open": lab["anomaly"]} for r, lab in zip(rows, labelled, strict=True)]
    as_sensor = detect(tmp_path, write(tmp_path / "valve.csv", valve), name="valve_out.csv")
    assert [x["anomaly_score"] for x in as_sensor] != [p["anomaly_score"] for p in plain]
    scored = [{**r, "target": f"{5 + 0.01 * i:.2f}"} for i, r in enumerate(rows)]  # a set point, not 0/1
    target = write(tmp_path / "target.csv", scored)
    with caplog.at_level("WARNING", logger="streams.anomaly.detect"):
        as_target = detect(tmp_path, target, name="target_out.csv")
    assert [x["anomaly_score"] for x in as_target] == [p["anomaly_score"] for p in plain]
    assert "column 'target' is named like a label but holds values other than 0/1 (line 2: '5.00')" in (
        caplog.text
    )
    named_target = detect(tmp_path, target, "--columns", ",".join([*SENSORS, "target"]), name="t2_out.csv")
    assert [x["anomaly_score"] for x in named_target] != [p["anomaly_score"] for p in plain]


def test_progress_is_reported_while_replaying(tmp_path: Path) -> None:
    from streams.anomaly.detect import PROGRESS_EVERY, detect_file

    rows = pump_rows(2500)
    calls: list[tuple[int, int]] = []
    counts = detect_file(
        write(tmp_path / "p.csv", rows),
        tmp_path / "p_out.csv",
        "time",
        progress=lambda d, t: calls.append((d, t)),
    )
    assert counts["rows"] == 2500
    assert calls == [(PROGRESS_EVERY, 2500), (2 * PROGRESS_EVERY, 2500), (2500, 2500)]


def test_rows_are_replayed_in_time_order_and_written_in_input_order(tmp_path: Path) -> None:
    rows = small_rows()
    shuffled = rows[:]
    random.Random(1).shuffle(shuffled)
    ordered = detect(tmp_path, write(tmp_path / "ordered.csv", rows), name="o.csv")
    mixed = detect(tmp_path, write(tmp_path / "mixed.csv", shuffled), name="m.csv")
    assert [m["time"] for m in mixed] == [s["time"] for s in shuffled]
    by_time = {o["time"]: o["anomaly_score"] for o in ordered}
    assert all(m["anomaly_score"] == by_time[m["time"]] for m in mixed)


def run_cli_error(tmp_path: Path, capsys: pytest.CaptureFixture[str], src: Path, *extra: str) -> str:
    out = str(tmp_path / "x.csv")
    rc = main(["detect", "--input", str(src), "--timestamp-column", "time", "--output", out, *extra])
    assert rc == 1
    return capsys.readouterr().err


def test_missing_columns_are_named_with_the_available_ones(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    src = write(tmp_path / "a.csv", small_rows())
    err = run_cli_error(tmp_path, capsys, src, "--columns", "pressure,flow")
    assert "'flow' not found" in err
    assert "available columns: time, pressure, current, temperature, vibration, status" in err
    err = run_cli_error(tmp_path, capsys, src, "--columns", "status")
    assert "'status' has no numeric values" in err
    rc = main(
        ["detect", "--input", str(src), "--timestamp-column", "ts", "--output", str(tmp_path / "x.csv")]
    )
    assert rc == 1
    assert "timestamp column 'ts' not found; available columns: time, pressure" in capsys.readouterr().err


def test_unparsable_timestamp_names_the_row(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rows = small_rows()
    rows[41]["time"] = "yesterday"
    err = run_cli_error(tmp_path, capsys, write(tmp_path / "a.csv", rows))
    assert "line 43" in err  # header is line 1, rows[0] is line 2
    assert "'yesterday'" in err


def test_other_timestamp_layouts_need_and_take_a_format(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rows = small_rows()
    ref = detect(tmp_path, write(tmp_path / "iso.csv", rows), name="iso_out.csv")
    european = [{**r, "time": datetime.fromisoformat(r["time"]).strftime("%d/%m/%Y %H:%M:%S")} for r in rows]
    src = write(tmp_path / "eu.csv", european)
    err = run_cli_error(tmp_path, capsys, src)
    assert "line 2" in err and "--timestamp-format" in err
    got = detect(tmp_path, src, "--timestamp-format", "%d/%m/%Y %H:%M:%S", name="eu_out.csv")
    assert [g["anomaly_score"] for g in got] == [r["anomaly_score"] for r in ref]
    err = run_cli_error(tmp_path, capsys, src, "--timestamp-format", "%Y-%m-%d")
    assert "expected format '%Y-%m-%d'" in err


def test_empty_files(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    assert "is empty" in run_cli_error(tmp_path, capsys, empty)
    header = tmp_path / "header.csv"
    header.write_text("time,pressure\n")
    assert "no data rows" in run_cli_error(tmp_path, capsys, header)


def test_console_entry_point(tmp_path: Path) -> None:
    src = write(tmp_path / "a.csv", small_rows()[:300])
    out = tmp_path / "o.csv"
    proc = subprocess.run(
        [sys.executable, "-m", "infra.cli", "detect", "--input", str(src), "--timestamp-column", "time",
         "--output", str(out), "--events", str(tmp_path / "events.jsonl")],
        cwd=REPO, capture_output=True, text=True,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert len(read(out)) == 300
    assert (tmp_path / "events.jsonl").exists()


def test_labels_judge_the_backtest_without_being_read(
    tmp_path: Path, pump_output: list[dict[str, str]], capsys: pytest.CaptureFixture[str]
) -> None:
    """--labels names a 0/1 column of known anomalies (here under a name the detector would otherwise
    model as a sensor): the scores are those of the file without it, and the JSON on stdout is the
    judgement of the written ``is_anomaly`` against it."""
    import json

    labels = [int(STEP[0] <= i < STEP[1] or DRIFT[0] <= i < DRIFT[1]) for i in range(len(pump_output))]
    rows = [{**r, "fault_flag": str(lab)} for r, lab in zip(pump_rows(), labels, strict=True)]
    capsys.readouterr()
    got = detect(tmp_path, write(tmp_path / "labelled.csv", rows), "--labels", "fault_flag")
    report = json.loads(capsys.readouterr().out)
    assert [g["anomaly_score"] for g in got] == [p["anomaly_score"] for p in pump_output]
    flags = [int(g["is_anomaly"]) for g in got]
    assert report["tp"] == sum(f & lab for f, lab in zip(flags, labels, strict=True)) > 0
    assert report["fp"] == sum(f & (1 - lab) for f, lab in zip(flags, labels, strict=True))
    assert report["anomalous_readings"] == sum(labels) == report["tp"] + report["fn"]
    assert report["readings"] == len(rows)
    assert report["faults"] == 2
    assert report["faults_found"] == 2  # the step and the drift (test_step_and_drift_are_flagged_...)
    assert report["median_delay_s"] > 0
    p, r = report["precision"], report["recall"]
    assert report["f1"] == pytest.approx(2 * p * r / (p + r), abs=1e-3)


def test_bad_labels_are_named(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rows = small_rows()
    bad = [{**r, "anomaly": "0" if i != 7 else "2"} for i, r in enumerate(rows)]
    err = run_cli_error(tmp_path, capsys, write(tmp_path / "bad.csv", bad), "--labels", "anomaly")
    assert "line 9: label '2' in column 'anomaly' is not 0 or 1" in err
    good = [{**r, "anomaly": "1.0" if i == 7 else "false"} for i, r in enumerate(rows)]
    src = write(tmp_path / "good.csv", good)
    err = run_cli_error(tmp_path, capsys, src, "--labels", "anomaly", "--columns", "pressure,anomaly")
    assert "labels column 'anomaly' cannot also be the timestamp or a sensor column" in err
    err = run_cli_error(tmp_path, capsys, src, "--labels", "is_fault")
    assert "labels column 'is_fault' not found; available columns: time, pressure" in err
    assert detect(tmp_path, src, "--labels", "anomaly", name="good_out.csv")[7]["anomaly"] == "1.0"


def test_backtest_judges_a_folder_of_runs_file_by_file_and_in_total(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    """``millstream backtest``: every CSV under the folder (also in subfolders) is its own run, judged
    as ``detect --labels`` judges it; a file without the labels column is a fault-free run; the total
    is the sum of the files' counts."""
    import json

    runs = tmp_path / "runs"
    (runs / "valve").mkdir(parents=True)
    rows = pump_rows(2600, seed=5)
    labels = [int(STEP[0] <= i < STEP[1]) for i in range(len(rows))]
    write(runs / "valve" / "step.csv", [{**r, "anomaly": str(a)} for r, a in zip(rows, labels, strict=True)])
    write(runs / "quiet.csv", [{**r, "anomaly": "0"} for r in pump_rows(900, seed=8)], delimiter=";")
    write(runs / "reference.csv", pump_rows(900, seed=9))  # a fault-free run without labels
    (runs / "notes.md").write_text("not a run\n")
    out = tmp_path / "scored"
    capsys.readouterr()
    with caplog.at_level("WARNING", logger="streams.anomaly.detect"):
        rc = main(["backtest", "--input-dir", str(runs), "--timestamp-column", "time", "--labels", "anomaly",
                   "--output-dir", str(out), "--json"])  # fmt: skip
    assert rc == 0
    report = json.loads(capsys.readouterr().out)
    assert list(report["files"]) == ["quiet.csv", "reference.csv", "valve/step.csv"]
    assert "reference.csv has no 'anomaly' column: judged as a fault-free run" in caplog.text
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*.csv")) == list(report["files"])
    single = detect(tmp_path, runs / "valve" / "step.csv", "--labels", "anomaly", name="step_out.csv")
    assert json.loads(capsys.readouterr().out) == report["files"]["valve/step.csv"]
    assert read(out / "valve" / "step.csv") == single
    step = report["files"]["valve/step.csv"]
    assert (step["faults"], step["faults_found"]) == (1, 1)
    reference = report["files"]["reference.csv"]
    assert (reference["faults"], reference["tp"], reference["fn"], reference["readings"]) == (0, 0, 0, 900)
    flagged_ref = sum(int(r["is_anomaly"]) for r in read(out / "reference.csv"))
    assert reference["fp"] == flagged_ref
    for key in ("readings", "tp", "fp", "fn", "tn", "faults", "faults_found", "false_events"):
        assert report["total"][key] == sum(f[key] for f in report["files"].values()), key
    rc = main(["backtest", "--input-dir", str(runs), "--timestamp-column", "time", "--labels", "anomaly",
               "--output-dir", str(out), "--quiet"])  # fmt: skip
    table = capsys.readouterr().out
    assert rc == 0
    assert "valve/step.csv" in table
    assert "total" in table


def test_backtest_errors_name_the_folder_or_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    def backtest(input_dir: Path, output_dir: Path) -> str:
        args = ["--input-dir", str(input_dir), "--timestamp-column", "time", "--labels", "anomaly"]
        rc = main(["backtest", *args, "--output-dir", str(output_dir)])
        assert rc == 1
        return capsys.readouterr().err

    runs = tmp_path / "runs"
    assert f"{runs} is not a folder" in backtest(runs, tmp_path / "out")
    runs.mkdir()
    assert "no CSV files (.csv, .tsv) under" in backtest(runs, tmp_path / "out")
    write(runs / "a.csv", small_rows())
    assert "must not be inside the input folder" in backtest(runs, runs / "out")
    write(runs / "b.csv", [{**r, "anomaly": "maybe"} for r in small_rows()])
    err = backtest(runs, tmp_path / "out")
    assert f"{runs / 'b.csv'}: line 2: label 'maybe' in column 'anomaly' is not 0 or 1" in err
    (runs / "b.csv").unlink()
    write(runs / "c.csv", [{k: v for k, v in r.items() if k != "time"} for r in small_rows()])
    assert f"{runs / 'c.csv'}: timestamp column 'time' not found" in backtest(runs, tmp_path / "out")


@pytest.mark.parametrize("encoding", ["cp1252", "utf-16", "utf-8-sig"])
def test_files_from_windows_loggers_are_read(
    tmp_path: Path, encoding: str, caplog: pytest.LogCaptureFixture
) -> None:
    """A header such as ``Temperatur °C`` in Windows-1252 (not UTF-8) or in UTF-16 with its byte-order
    mark is read, and written back as UTF-8; only the guess (Windows-1252) is warned about."""
    rows = [
        {"time": r["time"], "Temperatur °C": r["temperature"], "Druck": r["pressure"]} for r in small_rows()
    ]
    plain = write(tmp_path / "plain.csv", rows)
    src = tmp_path / f"{encoding}.csv"
    src.write_bytes(plain.read_text(encoding="utf-8").encode(encoding))
    with caplog.at_level("WARNING", logger="streams.anomaly.detect"):
        got = detect(tmp_path, src, name=f"{encoding}_out.csv")
    want = detect(tmp_path, plain, name="plain_out.csv")
    assert got == want
    assert got[0]["Temperatur °C"] == rows[0]["Temperatur °C"]
    assert got[0]["anomaly_source"] == ""  # warming up: nothing scored, no detector named
    assert ("is not UTF-8 (byte" in caplog.text) == (encoding == "cp1252")


def test_missing_value_markers_and_stray_text(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """NA, N/A, NaN, null, -, #N/A are missing readings, like an empty cell: the scores are those of
    the file with those cells empty. A sensor with a few cells of other text ('err') is not modelled
    unless --columns names it, and a warning says why; named, its text cells are missing readings. A
    text column (RUN, ...) is not a sensor either, and a warning names it too."""
    rows = small_rows()
    markers = ["NA", "N/A", "NaN", "null", "-", "#N/A"]
    blank = [{**r, "pressure": ""} if i % 97 == 5 else r for i, r in enumerate(rows)]
    marked = [{**r, "pressure": markers[i % 6]} if i % 97 == 5 else r for i, r in enumerate(rows)]
    want = detect(tmp_path, write(tmp_path / "blank.csv", blank), name="blank_out.csv")
    got = detect(tmp_path, write(tmp_path / "marked.csv", marked), name="marked_out.csv")
    assert [g["anomaly_score"] for g in got] == [w["anomaly_score"] for w in want]
    stray = [{**r, "current": "err"} if i % 97 == 5 else r for i, r in enumerate(rows)]
    src = write(tmp_path / "stray.csv", stray)
    with caplog.at_level("WARNING", logger="streams.anomaly.detect"):
        dropped = detect(tmp_path, src, name="stray_out.csv")
    assert "column 'current' has cells that are not numbers (e.g. 'err'): not a sensor" in caplog.text
    no_current = detect(
        tmp_path, write(tmp_path / "nc.csv", [{k: v for k, v in r.items() if k != "current"} for r in rows])
    )
    assert [d["anomaly_score"] for d in dropped] == [n["anomaly_score"] for n in no_current]
    named = detect(tmp_path, src, "--columns", ",".join(SENSORS), name="named_out.csv")
    holes = [{**r, "current": ""} if i % 97 == 5 else r for i, r in enumerate(rows)]
    with_holes = detect(tmp_path, write(tmp_path / "holes.csv", holes), name="holes_out.csv")
    assert [x["anomaly_score"] for x in named] == [h["anomaly_score"] for h in with_holes]
    assert "column 'status' holds text (e.g. 'RUN'), not numbers: not a sensor" in caplog.text
