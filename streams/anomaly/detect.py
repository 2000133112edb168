"""``millstream detect``: replay a historical CSV through the streaming detector.

The file is one machine; the selected columns are its sensors. Rows are fed in time order (a
stable sort on the timestamp; one pass, every score computed before the row is learnt), and the
output has one row per input row, in input order, with the original columns plus
``anomaly_score`` (0-1), ``is_anomaly`` (0/1) and ``anomaly_source`` (the sensor whose detector
scored highest, or ``machine``; empty while the score is 0, as in the warm-up). The file is read as
UTF-8, as UTF-16 when it starts with that byte-order mark, else as Windows-1252 with a warning.

Without an explicit column list, every column whose cells are all numbers is a sensor, except the
timestamp, a row-number column (0, 1, 2, ... as data frames write their index) and a column of
0/1 labels named like one (``anomaly``, ``label``, ``changepoint``, ...: a labelled history's
answers, which a detector must not read).
"""

from __future__ import annotations

import codecs
import csv
import json
import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from streams.anomaly.backtest import Backtest, judge
from streams.anomaly.config import AnomalySettings
from streams.anomaly.exceptions import InputFileError
from streams.anomaly.monitor import MachineMonitor

logger = logging.getLogger(__name__)

DELIMITERS = ",;\t"
OUTPUT_COLUMNS = ("anomaly_score", "is_anomaly", "anomaly_source")
PROGRESS_EVERY = 1000  # rows between progress callbacks


@dataclass(frozen=True)
class Table:
    header: list[str]
    rows: list[list[str]]
    delimiter: str


def sniff_delimiter(sample: str) -> str:
    """Comma, semicolon or tab: csv.Sniffer first, else the most frequent one in the header line."""
    try:
        return csv.Sniffer().sniff(sample, delimiters=DELIMITERS).delimiter
    except csv.Error:
        first = sample.splitlines()[0] if sample else ""
        return max(DELIMITERS, key=first.count)


def decode(data: bytes, path: Path) -> str:
    """The file's text: UTF-16 when it starts with its byte-order mark (spreadsheets' "Unicode text"),
    else UTF-8 (with or without a BOM), else Windows-1252 (what many loggers on Windows write: a
    header such as ``Temperatur °C``), with a warning, since that is a guess."""
    if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return data.decode("utf-16")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        encoding = "cp1252"
        try:
            text = data.decode(encoding)
        except UnicodeDecodeError:  # bytes cp1252 leaves undefined: Latin-1 maps every byte
            encoding = "latin-1"
            text = data.decode(encoding)
        logger.warning(
            "%s is not UTF-8 (byte %d): read as %s; save it as UTF-8 if its text looks wrong",
            path, exc.start, "Windows-1252" if encoding == "cp1252" else "Latin-1",
        )  # fmt: skip
        return text


def read_table(path: Path) -> Table:
    try:
        text = decode(path.read_bytes(), path)
    except OSError as exc:
        msg = f"cannot read {path}: {exc}"
        raise InputFileError(msg) from exc
    if not text.strip():
        msg = f"{path} is empty"
        raise InputFileError(msg)
    delimiter = sniff_delimiter(text[:65536])
    rows = [r for r in csv.reader(text.splitlines(), delimiter=delimiter) if any(c.strip() for c in r)]
    header = [h.strip() for h in rows[0]]
    if len(rows) < 2:
        msg = f"{path} has a header but no data rows"
        raise InputFileError(msg)
    return Table(header, rows[1:], delimiter)


def parse_timestamp(text: str, fmt: str | None = None) -> int:
    """Epoch milliseconds from ISO 8601 (naive = UTC) or a number (epoch s, or ms if > 1e11); with
    ``fmt``, from that ``strptime`` format instead (naive = UTC)."""
    t = text.strip()
    if fmt is not None:
        parsed = datetime.strptime(t, fmt)  # noqa: DTZ007 - made aware on the next line
        return int((parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)).timestamp() * 1000)
    try:
        x = float(t)
    except ValueError:
        pass
    else:
        if not math.isfinite(x):
            msg = f"not a finite number: {t!r}"
            raise ValueError(msg)
        return int(x) if abs(x) > 1e11 else int(round(x * 1000))
    dt = datetime.fromisoformat(t.replace("Z", "+00:00"))
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return int(dt.timestamp() * 1000)


MISSING = frozenset({"", "na", "n/a", "nan", "null", "none", "-", "--", "?", "#n/a", "#na", "#value!"})


def is_missing(text: str) -> bool:
    """An empty cell or a usual marker of a missing value (NA, N/A, NaN, null, -, #N/A, ...)."""
    return text.strip().lower() in MISSING


def parse_number(text: str, decimal_comma: bool) -> float | None:
    """The cell's number; None for a missing value or text."""
    t = text.strip()
    if t.lower() in MISSING:
        return None
    try:
        return float(t)
    except ValueError:
        if decimal_comma:
            try:
                return float(t.replace(",", "."))
            except ValueError:
                return None
        return None


def is_row_number(values: Sequence[float | None]) -> bool:
    """A column that counts the rows (0, 1, 2, ... or 1, 2, 3, ..., as data frames write their index):
    it numbers the rows and measures nothing, so it is not a sensor."""
    if len(values) < 3 or values[0] not in (0.0, 1.0):
        return False
    return all(v == values[0] + i for i, v in enumerate(values))


LABEL_VALUES = {"true": 1, "false": 0, "yes": 1, "no": 0}
LABEL_NAMES = frozenset(
    {"anomaly", "anomalies", "isanomaly", "anomalylabel", "label", "labels", "changepoint",
     "changepoints", "target", "outlier", "isoutlier", "fault", "faults", "attack", "groundtruth"}
)  # fmt: skip


def is_label(name: str, values: Sequence[float | None]) -> bool:
    """A column of 0/1 values named like a label (``anomaly``, ``is_anomaly``, ``changepoint``, ...):
    the answers of a labelled history, not a measurement."""
    key = "".join(ch for ch in name.lower() if ch.isalnum())
    return key in LABEL_NAMES and all(v in (0.0, 1.0) for v in values)


def choose_columns(
    table: Table, timestamp_column: str, columns: Sequence[str] | None, labels: str | None = None
) -> list[str]:
    available = ", ".join(table.header)
    if timestamp_column not in table.header:
        msg = f"timestamp column {timestamp_column!r} not found; available columns: {available}"
        raise InputFileError(msg)
    if columns:
        missing = [c for c in columns if c not in table.header]
        if missing:
            msg = f"column(s) {', '.join(map(repr, missing))} not found; available columns: {available}"
            raise InputFileError(msg)
        if timestamp_column in columns:
            msg = f"{timestamp_column!r} is the timestamp column; it cannot also be a sensor column"
            raise InputFileError(msg)
        decimal_comma = table.delimiter == ";"
        for c in columns:
            i = table.header.index(c)
            if not any(parse_number(r[i], decimal_comma) is not None for r in table.rows if i < len(r)):
                msg = f"column {c!r} has no numeric values"
                raise InputFileError(msg)
        return list(columns)
    decimal_comma = table.delimiter == ";"
    chosen = []
    for i, name in enumerate(table.header):
        if name in (timestamp_column, labels):
            continue
        cells = [r[i] for r in table.rows if i < len(r) and not is_missing(r[i])]
        numbers = [parse_number(c, decimal_comma) for c in cells]
        if not cells:
            continue
        bad = [k for k, x in enumerate(numbers) if x is None]
        if bad:
            if len(bad) < len(cells) / 2:  # a sensor with a few bad cells, not a text column: say why
                logger.warning(
                    "column %r has cells that are not numbers (e.g. %r): not a sensor (name it in "
                    "--columns to model it; such cells are then missing readings)", name, cells[bad[0]],
                )  # fmt: skip
            continue
        if is_row_number(numbers):
            hint = " (name it in --columns to model it)" if name.strip() else ""
            logger.warning("column %r numbers the rows (0, 1, 2, ...): not a sensor%s", name, hint)
            continue
        if is_label(name, numbers):
            logger.warning(
                "column %r holds 0/1 labels (by its name and values): not a sensor, the detector does "
                "not read labels (name it in --columns to model it)", name,
            )  # fmt: skip
            continue
        chosen.append(name)
    if not chosen:
        besides = repr(timestamp_column) + (f" and the labels {labels!r}" if labels else "")
        msg = f"no numeric column besides {besides}; available columns: {available}"
        raise InputFileError(msg)
    return chosen


def detect_file(
    input_path: Path,
    output_path: Path,
    timestamp_column: str,
    columns: Sequence[str] | None = None,
    settings: AnomalySettings | None = None,
    machine_id: str | None = None,
    events_path: Path | None = None,
    progress: Callable[[int, int], None] | None = None,
    timestamp_format: str | None = None,
    labels: str | None = None,
    fault_free: bool = False,
) -> dict[str, Any]:
    """Replay ``input_path``; write scores to ``output_path``. Returns row, sensor and event counts,
    and with ``labels`` (a 0/1 column of known anomalies, never shown to the detector) the backtest's
    judgement under ``"backtest"`` (:class:`~streams.anomaly.backtest.Backtest`). ``fault_free``
    judges a run without labels (no ``labels`` given, or the file lacks that column: a warning says
    so) as one known to have no anomaly (every label 0).

    ``progress(done, total)`` is called every :data:`PROGRESS_EVERY` rows and at the end."""
    table = read_table(input_path)
    if labels and fault_free and labels not in table.header:
        logger.warning("%s has no %r column: judged as a fault-free run", input_path, labels)
        labels = None
    truth = read_labels(table, labels, timestamp_column, columns, input_path) if labels else None
    if truth is None and fault_free:
        truth = [0] * len(table.rows)
    sensors = choose_columns(table, timestamp_column, columns, labels)
    ts_idx = table.header.index(timestamp_column)
    idx = {c: table.header.index(c) for c in sensors}
    decimal_comma = table.delimiter == ";"
    stamps = []
    for n, row in enumerate(table.rows, start=2):  # line 1 is the header
        cell = row[ts_idx] if ts_idx < len(row) else ""
        try:
            stamps.append(parse_timestamp(cell, timestamp_format))
        except ValueError as exc:
            expected = (
                f"format {timestamp_format!r}"
                if timestamp_format
                else "ISO 8601 or epoch seconds/milliseconds; other layouts need --timestamp-format"
            )
            msg = (
                f"{input_path}: row {n}: cannot parse timestamp {cell!r} in column {timestamp_column!r} "
                f"(expected {expected})"
            )
            raise InputFileError(msg) from exc
    clash = set(OUTPUT_COLUMNS) & set(table.header)
    if clash:
        msg = f"{input_path} already has output column(s) {', '.join(sorted(clash))}"
        raise InputFileError(msg)
    monitor = MachineMonitor(machine_id or input_path.stem, settings)
    results: list[tuple[float, bool, str] | None] = [None] * len(table.rows)
    events = []
    total = len(stamps)
    for done, i in enumerate(sorted(range(total), key=stamps.__getitem__), start=1):
        row = table.rows[i]
        values = {c: parse_number(row[j], decimal_comma) if j < len(row) else None for c, j in idx.items()}
        r = monitor.update(stamps[i], values)
        results[i] = (r.score, r.is_anomaly, r.source)
        if r.event is not None:
            events.append(r.event)
        if progress is not None and (done % PROGRESS_EVERY == 0 or done == total):
            progress(done, total)
    output_path.parent.mkdir(parents=True, exist_ok=True)
    with output_path.open("w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow([*table.header, *OUTPUT_COLUMNS])
        for row, res in zip(table.rows, results, strict=True):
            assert res is not None
            padded = row + [""] * (len(table.header) - len(row))
            w.writerow([*padded[: len(table.header)], f"{res[0]:.6f}", int(res[1]), res[2]])
    if events_path is not None:
        with events_path.open("w", encoding="utf-8") as fh:
            for e in events:
                fh.write(json.dumps(e.to_dict()) + "\n")
    n_events = sum(1 for e in events if e.is_open)
    logger.info("%s: %d rows, %d sensors, %d events", input_path, len(table.rows), len(sensors), n_events)
    counts: dict[str, Any] = {"rows": len(table.rows), "sensors": len(sensors), "events": n_events}
    if truth is not None:
        order = sorted(range(total), key=stamps.__getitem__)  # judged in time order, as detected
        flagged = [int(res[1]) if res is not None else 0 for res in results]
        counts["backtest"] = judge(
            [flagged[i] for i in order], [truth[i] for i in order], [stamps[i] for i in order]
        )
    return counts


def read_labels(
    table: Table, column: str, timestamp_column: str, columns: Sequence[str] | None, path: Path
) -> list[int]:
    """The 0/1 label of every row from ``column`` (0/1, 0.0/1.0, true/false); an error names the
    first bad cell. The column is never a sensor: naming it in ``columns`` too is an error."""
    if column not in table.header:
        msg = f"labels column {column!r} not found; available columns: {', '.join(table.header)}"
        raise InputFileError(msg)
    if column == timestamp_column or (columns and column in columns):
        msg = f"labels column {column!r} cannot also be the timestamp or a sensor column"
        raise InputFileError(msg)
    i = table.header.index(column)
    out = []
    for n, row in enumerate(table.rows, start=2):
        cell = row[i].strip().lower() if i < len(row) else ""
        value = LABEL_VALUES.get(cell)
        if value is None:
            try:
                number = float(cell)
            except ValueError:
                number = math.nan
            value = int(number) if number in (0.0, 1.0) else None
        if value is None:
            msg = f"{path}: row {n}: label {cell!r} in column {column!r} is not 0 or 1"
            raise InputFileError(msg)
        out.append(value)
    return out


CSV_SUFFIXES = (".csv", ".tsv")


def backtest_folder(
    input_dir: Path,
    output_dir: Path,
    timestamp_column: str,
    labels: str,
    columns: Sequence[str] | None = None,
    settings: AnomalySettings | None = None,
    timestamp_format: str | None = None,
    progress: Callable[[int, int, str], None] | None = None,
) -> dict[str, Backtest]:
    """Replay every CSV file under ``input_dir`` (sorted by path; each file one run of its own
    machine, with fresh models) like :func:`detect_file`, writing ``output_dir/<same relative
    path>`` (``.csv`` appended to a ``.tsv`` name), and judge each against its ``labels`` column.
    A file without that column is judged as fault-free (a warning says so): a rig's fault-free
    reference run often carries no labels. An error in a file names it and stops the run.

    Returns the judgement per file (relative path) in order; add them up with
    :meth:`Backtest.merge`. ``progress(done, total, file)`` is called after each file."""
    if not input_dir.is_dir():
        msg = f"{input_dir} is not a folder"
        raise InputFileError(msg)
    files = sorted(p for p in input_dir.rglob("*") if p.is_file() and p.suffix.lower() in CSV_SUFFIXES)
    if not files:
        msg = f"no CSV files ({', '.join(CSV_SUFFIXES)}) under {input_dir}"
        raise InputFileError(msg)
    if output_dir.resolve().is_relative_to(input_dir.resolve()):
        msg = f"the output folder {output_dir} must not be inside the input folder {input_dir}"
        raise InputFileError(msg)
    results: dict[str, Backtest] = {}
    for done, path in enumerate(files, start=1):
        rel = path.relative_to(input_dir)
        out = output_dir / (rel if rel.suffix.lower() == ".csv" else rel.with_name(rel.name + ".csv"))
        try:
            counts = detect_file(
                path,
                out,
                timestamp_column,
                columns,
                settings,
                machine_id=rel.with_suffix("").as_posix(),
                timestamp_format=timestamp_format,
                labels=labels,
                fault_free=True,  # a file without the labels column is a fault-free run
            )
        except InputFileError as exc:
            text = str(exc)
            msg = text if str(path) in text else f"{path}: {text}"
            raise InputFileError(msg) from exc
        results[rel.as_posix()] = counts["backtest"]
        if progress is not None:
            progress(done, len(files), rel.as_posix())
    return results
