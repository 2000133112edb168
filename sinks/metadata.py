"""Machine and sensor metadata: ``millstream metadata load FILE.csv`` into the ``machines`` table.

The CSV (comma-, semicolon- or tab-separated; UTF-8) has a header row. Required columns:
``plant, line, machine_id, sensor``; optional: ``unit, lsl, usl, description`` (lsl/usl empty = no
limit). Other columns are refused (a typo in a header would otherwise load nothing into that
column). The whole file is checked before anything is written; an error names the line. Loading is
idempotent: ``machines`` is a ReplacingMergeTree keyed on (machine_id, sensor) with ``loaded_at``
as version, so loading a file again replaces its rows (the latest load wins); rows of machines
absent from the file are kept.
"""

from __future__ import annotations

import csv
import logging
import math
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sinks.exceptions import SinkError
from sinks.tables import TableSpec

if TYPE_CHECKING:
    from clickhouse_connect.driver.client import Client

logger = logging.getLogger(__name__)

REQUIRED = ("plant", "line", "machine_id", "sensor")
OPTIONAL = ("unit", "lsl", "usl", "description")


def _limit(value: str, name: str) -> float | None:
    text = value.strip()
    if not text:
        return None
    try:
        limit = float(text)
    except ValueError as exc:
        msg = f"{name}={value!r} is not a number"
        raise ValueError(msg) from exc
    if not math.isfinite(limit):
        msg = f"{name}={value!r} is not finite"
        raise ValueError(msg)
    return limit


def machine_row(r: dict[str, Any]) -> list[Any]:
    """A CSV record (strings) as a ``machines`` row; raises ValueError naming the bad field."""
    for name in REQUIRED:
        if not (r.get(name) or "").strip():
            msg = f"{name} is empty"
            raise ValueError(msg)
    lsl, usl = _limit(r.get("lsl") or "", "lsl"), _limit(r.get("usl") or "", "usl")
    if lsl is not None and usl is not None and lsl > usl:
        msg = f"lsl {lsl} is above usl {usl}"
        raise ValueError(msg)
    return [
        r["plant"].strip(),
        r["line"].strip(),
        r["machine_id"].strip(),
        r["sensor"].strip(),
        (r.get("unit") or "").strip(),
        lsl,
        usl,
        (r.get("description") or "").strip(),
        int(r["_loaded_at"]),
    ]


MACHINES = TableSpec(
    "machines",
    ("plant", "line", "machine_id", "sensor", "unit", "lsl", "usl", "description", "loaded_at"),
    machine_row,
)


def read_csv(path: Path, loaded_at_ms: int) -> list[list[Any]]:
    """Rows of ``machines`` from a CSV file; SinkError naming the file and line on any problem.

    Comma-separated, or semicolon- / tab-separated as spreadsheets in many locales save it (told by
    the header line); in a semicolon-separated file the limits may have decimal commas (``55,5``)."""
    try:
        text = path.read_bytes().decode("utf-8-sig")
    except OSError as exc:
        msg = f"cannot read {path}: {exc.strerror or exc}"
        raise SinkError(msg) from exc
    except UnicodeDecodeError as exc:
        line = exc.object[: exc.start].count(b"\n") + 1
        byte = exc.object[exc.start]
        msg = f"{path} line {line}: not UTF-8 text (byte 0x{byte:02x}); save it as 'CSV UTF-8'"
        raise SinkError(msg) from exc
    first = text.split("\n", 1)[0]
    delimiter = max((",", ";", "\t"), key=first.count)
    rows: list[list[Any]] = []
    seen: dict[tuple[str, str], int] = {}
    reader = csv.DictReader(text.splitlines(keepends=True), delimiter=delimiter)
    try:
        header = [h.strip() for h in (reader.fieldnames or [])]
    except csv.Error as exc:
        msg = f"{path} line 1: {exc}"
        raise SinkError(msg) from exc
    _check_header(path, header)
    reader.fieldnames = header
    try:
        for record in reader:
            line = reader.line_num
            if None in record:
                msg = f"{path} line {line}: more fields than columns"
                raise SinkError(msg)
            if delimiter == ";":  # decimal commas, as such a spreadsheet writes numbers
                record.update({k: (record.get(k) or "").replace(",", ".") for k in ("lsl", "usl")})
            try:
                row = machine_row({**record, "_loaded_at": loaded_at_ms})
            except ValueError as exc:
                msg = f"{path} line {line}: {exc}"
                raise SinkError(msg) from exc
            key = (row[2], row[3])
            if key in seen:
                msg = f"{path} line {line}: {key[0]}/{key[1]} is already on line {seen[key]}"
                raise SinkError(msg)
            seen[key] = line
            rows.append(row)
    except csv.Error as exc:
        msg = f"{path} line {reader.line_num}: {exc}"
        raise SinkError(msg) from exc
    return rows


def _check_header(path: Path, header: list[str]) -> None:
    """Refuse empty, repeated, missing and unknown column names, naming them."""
    if "" in header:
        column = header.index("") + 1
        msg = f"{path} line 1: column {column} has no name (a delimiter at the end of the header?)"
        raise SinkError(msg)
    repeated = sorted({h for h in header if header.count(h) > 1})
    if repeated:
        msg = f"{path} line 1: column(s) {', '.join(repeated)} appear more than once"
        raise SinkError(msg)
    missing = [c for c in REQUIRED if c not in header]
    unknown = [c for c in header if c not in REQUIRED + OPTIONAL]
    if missing or unknown:
        parts = [f"missing column(s) {', '.join(missing)}"] if missing else []
        parts += [f"unknown column(s) {', '.join(unknown)}"] if unknown else []
        msg = f"{path}: {'; '.join(parts)} (columns: {', '.join(REQUIRED + OPTIONAL)})"
        raise SinkError(msg)


def load(client: Client, path: Path) -> int:
    """Load a metadata CSV into ``machines``; returns the number of rows."""
    rows = read_csv(path, int(time.time() * 1000))
    if not rows:
        return 0
    try:
        client.insert(MACHINES.name, rows, column_names=list(MACHINES.columns))
    except Exception as exc:
        msg = f"cannot write machines: {exc}"
        raise SinkError(msg) from exc
    logger.info("loaded %d machine/sensor rows from %s", len(rows), path)
    return len(rows)
