"""``millstream detect``: replay a historical CSV through the streaming detector.

The file is one machine; the selected columns are its sensors. Rows are fed in time order (a
stable sort on the timestamp; one pass, every score computed before the row is learnt), and the
output has one row per input row, in input order, with the original columns plus
``anomaly_score`` (0-1), ``is_anomaly`` (0/1) and ``anomaly_source`` (the sensor whose detector
scored highest, or ``machine``; empty while the score is 0, as in the warm-up). The file is read as
UTF-8, as UTF-16 when it starts with that byte-order mark, else as Windows-1252 with a warning. The
scored copy is UTF-8 and comma-separated, whatever the input's delimiter: the input's cells are
copied as they were (quoted where they hold a comma) and the added columns have decimal points.

Without an explicit column list, every column whose cells are all numbers is a sensor, except the
timestamp, a row-number column (0, 1, 2, ... as data frames write their index) and a column named
like a label (``anomaly``, ``label``, ``changepoint``, ...: a labelled history's answers, which a
detector must not read). A warning names each column left out. Errors name the file's line.
"""

from __future__ import annotations

import csv
import json
import logging
import math
import os
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TextIO

from streams.anomaly.backtest import judge
from streams.anomaly.config import AnomalySettings
from streams.anomaly.exceptions import InputFileError
from streams.anomaly.monitor import MachineMonitor
from streams.anomaly.table import (
    THOUSANDS,
    Table,
    decimal_comma,
    is_missing,
    parse_number,
    parse_timestamp,
    read_table,
)

logger = logging.getLogger(__name__)

OUTPUT_COLUMNS = ("anomaly_score", "is_anomaly", "anomaly_source")
PROGRESS_EVERY = 1000  # rows between progress callbacks
LARGEST = 1e100  # a reading beyond +-LARGEST is read as +-LARGEST: the detectors' squares stay finite
# (the warning that says so names 1e100)


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


def named_like_label(name: str) -> bool:
    """``anomaly``, ``is_anomaly``, ``Changepoint``, ``ground truth``, ...: a labelled history's answers."""
    return "".join(ch for ch in name.lower() if ch.isalnum()) in LABEL_NAMES


def choose_columns(
    table: Table, timestamp_column: str, columns: Sequence[str] | None, labels: str | None = None
) -> list[str]:
    available = ", ".join(table.header)
    if timestamp_column not in table.header:
        msg = f"timestamp column {timestamp_column!r} not found; available columns: {available}"
        raise InputFileError(msg)
    table.index(timestamp_column)  # not a name two columns have
    if columns:
        missing = [c for c in columns if c not in table.header]
        if missing:
            msg = f"column(s) {', '.join(map(repr, missing))} not found; available columns: {available}"
            raise InputFileError(msg)
        if timestamp_column in columns:
            msg = f"{timestamp_column!r} is the timestamp column; it cannot also be a sensor column"
            raise InputFileError(msg)
        for c in columns:
            cells = table.cells(table.index(c))
            comma = decimal_comma(cells, table.delimiter)
            if not any(parse_number(x, comma) is not None for x in cells):
                msg = f"column {c!r} has no numeric values"
                raise InputFileError(msg)
        return list(dict.fromkeys(columns))
    chosen = [name for i, name in enumerate(table.header) if name not in (timestamp_column, labels)
              and is_sensor(table, i, name)]  # fmt: skip
    for name in chosen:
        table.index(name)  # a sensor has a name of its own
    if not chosen:
        besides = repr(timestamp_column) + (f" and the labels {labels!r}" if labels else "")
        msg = f"no numeric column besides {besides}; available columns: {available}"
        raise InputFileError(msg)
    return chosen


def is_sensor(table: Table, i: int, name: str) -> bool:
    """Whether column ``i`` is a sensor by default; a warning says why a named one is not."""
    present = [(n, c) for n, c in zip(table.lines, table.cells(i), strict=True) if not is_missing(c)]
    if not present:
        if name.strip():
            logger.warning("column %r is empty: not a sensor", name)
        return False
    cells = [c for _, c in present]
    comma = decimal_comma(cells, table.delimiter)  # once per column: it reads the whole column
    numbers = [parse_number(c, comma) for c in cells]
    if named_like_label(name):
        other = next((k for k, x in enumerate(numbers) if x not in (0.0, 1.0)), None)
        if other is None:
            logger.warning(
                "column %r holds 0/1 labels (by its name and values): not a sensor, the detector does "
                "not read labels (name it in --columns to model it)", name,
            )  # fmt: skip
        else:
            logger.warning(
                "column %r is named like a label but holds values other than 0/1 (line %d: %r): not used "
                "as a sensor; name it in --columns to use it", name, *present[other],
            )  # fmt: skip
        return False
    bad = [k for k, x in enumerate(numbers) if x is None]
    if bad:
        example = cells[bad[0]]
        if len(bad) < len(cells) / 2:  # a sensor with a few bad cells, not a text column: say why
            logger.warning(
                "column %r has cells that are not numbers (e.g. %r): not a sensor (name it in "
                "--columns to model it; such cells are then missing readings)", name, example,
            )  # fmt: skip
        elif all(THOUSANDS.fullmatch(cells[k].strip()) for k in bad):
            logger.warning(
                "column %r has numbers such as %r, with a decimal comma or a thousands separator: not "
                "read (in a file separated by ';' a comma is a decimal comma)", name, example,
            )  # fmt: skip
        elif name.strip():
            logger.warning("column %r holds text (e.g. %r), not numbers: not a sensor", name, example)
        return False
    if is_row_number(numbers):
        hint = " (name it in --columns to model it)" if name.strip() else ""
        logger.warning("column %r numbers the rows (0, 1, 2, ...): not a sensor%s", name, hint)
        return False
    return True


def check_output(path: Path, input_path: Path, scored: Path | None = None) -> None:
    """Refuse to write ``path`` over the input file (or, for the events, over the ``scored`` copy),
    where it cannot be a file, or over an existing file that is not a scored copy: a history of
    its own (an empty file may go)."""
    for other, what in ((input_path, "input file"), (scored, "scored copy")):
        if other is not None and same_file(path, other):
            msg = f"cannot write {path}: it is the {what} {other}"
            raise InputFileError(msg)
    if path.is_dir():
        msg = f"cannot write {path}: it is a folder"
        raise InputFileError(msg)
    folder = next((p for p in path.parents if p.exists()), None)
    if folder is not None and not folder.is_dir():
        msg = f"cannot write {path}: {folder} is a file, not a folder"
        raise InputFileError(msg)
    if scored is None and path.is_file() and not is_scored_copy(path):
        msg = (
            f"{path} exists and is not a scored copy (it has no {', '.join(OUTPUT_COLUMNS)} columns): "
            "not overwritten; delete it or write elsewhere"
        )
        raise InputFileError(msg)


def same_file(a: Path, b: Path) -> bool:
    try:
        return a.resolve() == b.resolve() or (a.exists() and b.exists() and a.samefile(b))
    except OSError:
        return False


def is_scored_copy(path: Path) -> bool:
    """An empty file, or one whose header has the columns :func:`detect_file` adds."""
    try:
        with path.open("rb") as fh:
            head = fh.read(65536).decode("utf-8", errors="replace")
    except OSError:
        return False
    header = next(csv.reader(head.splitlines()[:1]), [])
    return not head.strip() or set(OUTPUT_COLUMNS) <= {h.strip() for h in header}


@contextmanager
def open_for_writing(path: Path) -> Iterator[TextIO]:
    """``path`` opened for text (its folders created), written through a hidden file beside it that
    replaces ``path`` only once complete: an interrupted or failed write (Ctrl-C, a full disk) leaves
    no truncated copy that looks whole, and the previous one as it was. An error names ``path``."""
    partial = path.with_name(f".{path.name}.partial")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fh = partial.open("w", newline="", encoding="utf-8")
    except OSError as exc:
        msg = f"cannot write {path}: {exc.strerror or exc}"
        raise InputFileError(msg) from exc
    try:
        with fh:
            yield fh
        os.replace(partial, path)
    except BaseException as exc:
        partial.unlink(missing_ok=True)
        if isinstance(exc, OSError):
            msg = f"cannot write {path}: {exc.strerror or exc}"
            raise InputFileError(msg) from exc
        raise


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
    check_output(output_path, input_path)
    if events_path is not None:
        check_output(events_path, input_path, scored=output_path)
    table = read_table(input_path)
    if labels and fault_free and labels not in table.header:
        logger.warning("%s has no %r column: judged as a fault-free run", input_path, labels)
        labels = None
    truth = read_labels(table, labels, timestamp_column, columns, input_path) if labels else None
    if truth is None and fault_free:
        truth = [0] * len(table.rows)
    sensors = choose_columns(table, timestamp_column, columns, labels)
    idx = {c: table.index(c) for c in sensors}
    comma = {c: decimal_comma(table.cells(j), table.delimiter) for c, j in idx.items()}
    stamps = read_stamps(table, timestamp_column, timestamp_format, input_path)
    clash = set(OUTPUT_COLUMNS) & set(table.header)
    if clash:
        msg = f"{input_path} already has output column(s) {', '.join(sorted(clash))}"
        raise InputFileError(msg)
    monitor = MachineMonitor(machine_id or input_path.stem, settings)
    results: list[tuple[float, bool, str] | None] = [None] * len(table.rows)
    events = []
    beyond: dict[str, tuple[int, int, str]] = {}  # column: (cells beyond LARGEST, first line, first cell)
    total = len(stamps)
    order = sorted(range(total), key=stamps.__getitem__)
    for done, i in enumerate(order, start=1):
        row = table.rows[i]
        values: dict[str, float | None] = {}
        for c, j in idx.items():
            v = parse_number(row[j], comma[c]) if j < len(row) else None
            if v is not None and LARGEST < abs(v) < math.inf:  # a logger's over-range marker, a bad cell
                count, line, cell = beyond.get(c, (0, table.lines[i], row[j]))
                line, cell = min((line, cell), (table.lines[i], row[j]))  # the first in the file
                beyond[c] = (count + 1, line, cell)
                v = math.copysign(LARGEST, v)
            values[c] = v
        r = monitor.update(stamps[i], values)
        results[i] = (r.score, r.is_anomaly, r.source)
        if r.event is not None:
            events.append(r.event)
        if progress is not None and (done % PROGRESS_EVERY == 0 or done == total):
            progress(done, total)
    for c, (count, line, cell) in beyond.items():
        logger.warning(
            "%s: column %r has %d reading(s) beyond ±1e100 (line %d: %r), past any measurement (an "
            "over-range marker or a corrupt cell?): read as ±1e100", input_path, c, count, line, cell.strip(),
        )  # fmt: skip
    s = monitor.settings
    if (
        monitor.first_ms is None
        or monitor.count <= s.warmup
        or (stamps[order[-1]] - monitor.first_ms < s.warmup_hours * 3_600_000)
    ):
        logger.warning(
            "%s: all %d readings are in the warm-up (the first %d readings and %g minutes of event time): "
            "none was scored", input_path, total, s.warmup, s.warmup_hours * 60,
        )  # fmt: skip
    if events_path is not None:  # first: a complete scored copy comes with its own events
        with open_for_writing(events_path) as fh:
            for e in events:
                fh.write(json.dumps(e.to_dict()) + "\n")
    with open_for_writing(output_path) as fh:
        w = csv.writer(fh, lineterminator="\n")  # plain LF, as the tools that read it expect
        w.writerow([*table.header, *OUTPUT_COLUMNS])
        for row, res in zip(table.rows, results, strict=True):
            assert res is not None
            padded = row + [""] * (len(table.header) - len(row))
            w.writerow([*padded[: len(table.header)], f"{res[0]:.6f}", int(res[1]), res[2]])
    n_events = sum(1 for e in events if e.is_open)
    logger.info("%s: %d rows, %d sensors, %d events", input_path, len(table.rows), len(sensors), n_events)
    counts: dict[str, Any] = {"rows": len(table.rows), "sensors": len(sensors), "events": n_events}
    if truth is not None:
        flagged = [int(res[1]) if res is not None else 0 for res in results]  # judged in time order
        counts["backtest"] = judge(
            [flagged[i] for i in order], [truth[i] for i in order], [stamps[i] for i in order]
        )
    return counts


def read_stamps(table: Table, column: str, fmt: str | None, path: Path) -> list[int]:
    """Every row's time in epoch ms; an error names the line of the first that cannot be read."""
    stamps = []
    for line, cell in zip(table.lines, table.cells(table.index(column)), strict=True):
        try:
            stamps.append(parse_timestamp(cell, fmt))
        except ValueError as exc:
            expected = (
                f"format {fmt!r}"
                if fmt
                else "ISO 8601 or epoch seconds, ms, µs or ns; other layouts need --timestamp-format"
            )
            msg = (
                f"{path}: line {line}: cannot parse timestamp {cell!r} in column {column!r} "
                f"(expected {expected})"
            )
            raise InputFileError(msg) from exc
    return stamps


def read_labels(
    table: Table, column: str, timestamp_column: str, columns: Sequence[str] | None, path: Path
) -> list[int]:
    """The 0/1 label of every row from ``column`` (0/1, 0.0/1.0, 0,0/1,0 where commas are decimal
    ones, true/false); an error names the first bad cell. The column is never a sensor: naming it in
    ``columns`` too is an error."""
    if column not in table.header:
        msg = f"labels column {column!r} not found; available columns: {', '.join(table.header)}"
        raise InputFileError(msg)
    if column == timestamp_column or (columns and column in columns):
        msg = f"labels column {column!r} cannot also be the timestamp or a sensor column"
        raise InputFileError(msg)
    cells = table.cells(table.index(column))
    comma = decimal_comma(cells, table.delimiter)
    out = []
    for line, raw in zip(table.lines, cells, strict=True):
        cell = raw.strip().lower()
        value = LABEL_VALUES.get(cell)
        if value is None:
            number = parse_number(cell, comma)
            value = int(number) if number is not None and number in (0.0, 1.0) else None
        if value is None:
            msg = f"{path}: line {line}: label {cell!r} in column {column!r} is not 0 or 1"
            raise InputFileError(msg)
        out.append(value)
    return out
