"""Read control-chart input files: comma-, tab- or whitespace-separated text with a header row.

The delimiter is taken from the header line (comma, else tab, else runs of whitespace); quotes around
fields are removed, CRLF line ends and blank lines are accepted, and an R-style file whose header has
one field fewer than its rows (row names in the first column) is read with the row names dropped.
Errors name the file, the 1-based line and the column.
"""

from __future__ import annotations

import csv
import io
import math
from dataclasses import dataclass
from pathlib import Path

from streams.spc.exceptions import SpcInputError

_TRUE = {"true", "t", "1", "yes", "y"}
_FALSE = {"false", "f", "0", "no", "n"}


@dataclass(frozen=True)
class Table:
    """Columns of a text table as strings, with the file line number of every row."""

    path: str
    columns: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]
    lines: tuple[int, ...]

    def __len__(self) -> int:
        return len(self.rows)

    def index(self, column: str) -> int:
        if column in self.columns:
            return self.columns.index(column)
        folded = [c.lower() for c in self.columns]
        if folded.count(column.lower()) == 1:
            return folded.index(column.lower())
        msg = f"{self.path}: unknown column {column!r}; available columns: {', '.join(self.columns)}"
        raise SpcInputError(msg)

    def text(self, column: str) -> list[str]:
        i = self.index(column)
        return [row[i] for row in self.rows]

    def numbers(self, column: str) -> list[float]:
        i = self.index(column)
        out: list[float] = []
        for number, (row, line) in enumerate(zip(self.rows, self.lines, strict=True), start=1):
            raw = row[i]
            try:
                value = float(raw)
            except ValueError:
                value = math.nan
            if not math.isfinite(value):
                msg = (
                    f"{self.path}: line {line} (data row {number}), column {self.columns[i]!r}: "
                    f"{raw!r} is not a finite number"
                )
                raise SpcInputError(msg)
            out.append(value)
        return out

    def flags(self, column: str) -> list[bool]:
        i = self.index(column)
        out: list[bool] = []
        for number, (row, line) in enumerate(zip(self.rows, self.lines, strict=True), start=1):
            raw = row[i].strip().lower()
            if raw in _TRUE:
                out.append(True)
            elif raw in _FALSE:
                out.append(False)
            else:
                msg = (
                    f"{self.path}: line {line} (data row {number}), column {self.columns[i]!r}: {row[i]!r} "
                    "is not a boolean "
                    "(use TRUE/FALSE, true/false or 1/0)"
                )
                raise SpcInputError(msg)
        return out


def _split(line: str, delimiter: str | None) -> list[str]:
    if delimiter is None:
        return [field.strip('"').strip("'") for field in line.split()]
    fields = next(csv.reader(io.StringIO(line), delimiter=delimiter, skipinitialspace=True))
    return [field.strip() for field in fields]


def parse_table(text: str, path: str = "<input>") -> Table:
    lines = [(number, line) for number, line in enumerate(text.splitlines(), start=1) if line.strip()]
    if not lines:
        msg = f"{path}: the file is empty"
        raise SpcInputError(msg)
    header_line = lines[0][1].lstrip("\ufeff")
    delimiter: str | None = "," if "," in header_line else "\t" if "\t" in header_line else None
    header = _split(header_line, delimiter)
    if not all(header) or len(set(header)) != len(header):
        msg = f"{path}: line {lines[0][0]}: the header needs unique, non-empty column names, got {header}"
        raise SpcInputError(msg)
    rows: list[tuple[str, ...]] = []
    numbers: list[int] = []
    row_names: bool | None = None  # decided by the first data row
    for number, line in lines[1:]:
        fields = _split(line, delimiter)
        if row_names is None:
            row_names = len(fields) == len(header) + 1  # R write.table: row names without a header field
        if row_names and fields:
            fields = fields[1:]
        if len(fields) != len(header):
            names = ", ".join(header)
            msg = f"{path}: line {number}: expected {len(header)} fields ({names}), got {len(fields)}"
            raise SpcInputError(msg)
        rows.append(tuple(fields))
        numbers.append(number)
    if not rows:
        msg = f"{path}: no data rows after the header"
        raise SpcInputError(msg)
    return Table(path, tuple(header), tuple(rows), tuple(numbers))


def read_table(path: str | Path) -> Table:
    p = Path(path)
    if not p.exists():
        msg = f"input file not found: {p}"
        raise SpcInputError(msg)
    if not p.is_file():
        msg = f"input is not a file: {p}"
        raise SpcInputError(msg)
    try:
        text = p.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        msg = f"cannot read {p}: {exc}"
        raise SpcInputError(msg) from exc
    return parse_table(text, str(p))
