"""Read control-chart input files: comma-, tab-, semicolon- or whitespace-separated text with a header row.

The delimiter is the one of comma, tab and semicolon that splits the header line into the most fields
(else runs of whitespace). A semicolon-separated file is what Excel writes in locales with a decimal
comma, so its numbers may use one (``55,5``). Quotes around fields are removed, CRLF line ends and blank
lines are accepted, a trailing delimiter (an empty last field on the header or the data rows) is
dropped, and an R-style file whose header has one field fewer than every row (row names in the first
column) is read with the row names dropped. Missing values (an empty field, NA, N/A, NaN, NULL) are
read as None where the caller allows them. Errors name the file, the 1-based line and the column.
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
MISSING = frozenset({"", "na", "n/a", "nan", "null"})  # how R, Excel and databases write a missing value


@dataclass(frozen=True)
class Table:
    """Columns of a text table as strings, with the file line number of every row."""

    path: str
    columns: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]
    lines: tuple[int, ...]
    decimal_comma: bool = False  # numbers may be written 55,5 (semicolon-separated files)

    def __len__(self) -> int:
        return len(self.rows)

    def index(self, column: str) -> int:
        if column in self.columns:
            return self.columns.index(column)
        folded = [c.lower() for c in self.columns]
        if folded.count(column.lower()) == 1:
            return folded.index(column.lower())
        msg = f"{self.path}: unknown column {column!r}; available columns: {', '.join(self.columns)}"
        if any(sep in name for name in self.columns for sep in ";\t"):
            msg += (
                " (a column name holds a separator: is the header split with a different one than the rows?)"
            )
        raise SpcInputError(msg)

    def text(self, column: str) -> list[str]:
        i = self.index(column)
        return [row[i] for row in self.rows]

    def numbers(self, column: str) -> list[float]:
        values = self.numbers_or_missing(column, missing_ok=False)
        return [v for v in values if v is not None]

    def numbers_or_missing(self, column: str, *, missing_ok: bool = True) -> list[float | None]:
        """The column as numbers; an empty field or NA / N/A / NaN / NULL is None (a missing value)."""
        i = self.index(column)
        out: list[float | None] = []
        for number, (row, line) in enumerate(zip(self.rows, self.lines, strict=True), start=1):
            raw = row[i]
            if missing_ok and raw.strip().lower() in MISSING:
                out.append(None)
                continue
            text = raw.replace(",", ".", 1) if self.decimal_comma and "." not in raw else raw
            try:
                value = float(text)
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


def _delimiter(header_line: str) -> str | None:
    """The separator that splits the header into the most fields (comma first on a tie); None: whitespace."""
    best: str | None = None
    most = 1
    for candidate in (",", "\t", ";"):
        if candidate in header_line and (n := len(_split(header_line, candidate))) > most:
            best, most = candidate, n
    return best


def _fit_rows(
    path: str, header: list[str], rows: list[list[str]], numbers: list[int], trailing_header: bool
) -> list[list[str]]:
    """Rows with exactly one field per header column.

    One field more than the header is a trailing delimiter when that last field is empty on every such
    row (``10,1,`` under ``x,y``): it is dropped. When every row has one more field and the last one is
    not always empty, the first field is an unnamed leading column (R ``write.table`` row names) and is
    dropped. Anything else is an error naming the line.
    """
    width = len(header)
    extra = [i for i, fields in enumerate(rows) if len(fields) == width + 1]
    if extra and all(rows[i][-1] == "" for i in extra):
        for i in extra:
            rows[i] = rows[i][:-1]
    elif extra and len(extra) == len(rows) and not trailing_header:
        rows = [fields[1:] for fields in rows]
    for fields, number in zip(rows, numbers, strict=True):
        if len(fields) != width:
            names = ", ".join(header)
            msg = f"{path}: line {number}: {len(fields)} fields, the header has {width} ({names})"
            if len(fields) == width + 1:
                msg += (
                    "; an extra field is read as a trailing delimiter only when it is empty, and as R row "
                    "names only when every row has one"
                    if not trailing_header
                    else "; the header's last column has no name"
                )
            raise SpcInputError(msg)
    return rows


def parse_table(text: str, path: str = "<input>") -> Table:
    lines = [(number, line) for number, line in enumerate(text.splitlines(), start=1) if line.strip()]
    if not lines:
        msg = f"{path}: the file is empty"
        raise SpcInputError(msg)
    header_line = lines[0][1].lstrip("\ufeff")
    delimiter = _delimiter(header_line)
    header = _split(header_line, delimiter)
    trailing_header = len(header) > 1 and header[-1] == "" and all(header[:-1])
    if trailing_header:  # "x,y," : a trailing delimiter, as spreadsheet exports write
        header = header[:-1]
    if not all(header) or len(set(header)) != len(header):
        msg = f"{path}: line {lines[0][0]}: the header needs unique, non-empty column names, got {header}"
        raise SpcInputError(msg)
    if len(lines) == 1:
        msg = f"{path}: no data rows after the header"
        raise SpcInputError(msg)
    numbers = [number for number, _ in lines[1:]]
    rows = _fit_rows(
        path, header, [_split(line, delimiter) for _, line in lines[1:]], numbers, trailing_header
    )
    return Table(
        path, tuple(header), tuple(tuple(r) for r in rows), tuple(numbers), decimal_comma=delimiter == ";"
    )


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
