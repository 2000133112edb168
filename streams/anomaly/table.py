"""Reading a historical CSV as ``millstream detect`` does: encoding, delimiter, timestamps and numbers.

UTF-8, UTF-16 with a byte-order mark, else Windows-1252 (with a warning); comma, semicolon or tab
separated (sniffed); ISO 8601 timestamps or epoch seconds / ms / µs / ns; numbers with a decimal
point, or a decimal comma where the file shows it (see :func:`decimal_comma`); the usual markers of a
missing reading. Errors name the file's line.
"""

from __future__ import annotations

import codecs
import csv
import logging
import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from streams.anomaly.exceptions import InputFileError

logger = logging.getLogger(__name__)

DELIMITERS = ",;\t"


@dataclass(frozen=True)
class Table:
    header: list[str]
    rows: list[list[str]]
    delimiter: str
    lines: list[int]  # each row's line in the file, as an editor numbers them (the header is on 1)

    def cells(self, i: int) -> list[str]:
        """Column ``i`` of every row ("" where a row is short)."""
        return [r[i] if i < len(r) else "" for r in self.rows]

    def index(self, name: str) -> int:
        """The position of the column ``name`` (which is in the header); an error if two have it."""
        at = [k for k, h in enumerate(self.header) if h == name]
        if len(at) > 1:
            where = ", ".join(str(k + 1) for k in at[:-1]) + f" and {at[-1] + 1}"
            msg = (
                f"column name {name!r} appears {len(at)} times (columns {where}): rename them so that "
                "each column has its own name"
            )
            raise InputFileError(msg)
        return at[0]


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
    """The file's header and non-blank rows, with each row's line number."""
    try:
        text = decode(path.read_bytes(), path)
    except OSError as exc:
        msg = f"cannot read {path}: {exc.strerror or exc}"
        raise InputFileError(msg) from exc
    if not text.strip():
        msg = f"{path} is empty"
        raise InputFileError(msg)
    delimiter = sniff_delimiter(text[:65536])
    reader = csv.reader(text.splitlines(), delimiter=delimiter)
    rows, lines, line = [], [], 1
    for r in reader:
        if any(c.strip() for c in r):
            rows.append(r)
            lines.append(line)
        line = reader.line_num + 1  # a quoted cell may span lines
    header = [h.strip() for h in rows[0]]
    if len(rows) < 2:
        msg = f"{path} has a header but no data rows"
        raise InputFileError(msg)
    return Table(header, rows[1:], delimiter, lines[1:])


def parse_timestamp(text: str, fmt: str | None = None) -> int:
    """Epoch milliseconds from ISO 8601 (naive = UTC) or a number (epoch s, ms, µs or ns by its size:
    :func:`epoch_ms`); with ``fmt``, from that ``strptime`` format instead (naive = UTC)."""
    t = text.strip()
    if fmt is not None:
        parsed = datetime.strptime(t, fmt)  # noqa: DTZ007 - made aware on the next line
        return int((parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)).timestamp() * 1000)
    try:
        x = float(t)
    except ValueError:
        pass
    else:
        return epoch_ms(t, x)
    dt = datetime.fromisoformat(t.replace("Z", "+00:00"))
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return int(dt.timestamp() * 1000)


def epoch_ms(text: str, x: float) -> int:
    """An epoch number in milliseconds, its unit told by its size: seconds up to 1e11 (the year
    5138 in seconds), milliseconds up to 1e14, microseconds up to 1e17, nanoseconds up to 1e20;
    beyond that (or not finite) it is no time. Integers are divided exactly."""
    a = abs(x)
    if not a <= 1e20:
        msg = f"not an epoch time in s, ms, µs or ns: {text!r}"
        raise ValueError(msg)
    if a <= 1e11:
        return int(round(x * 1000))
    if a <= 1e14:
        return int(x)
    per_ms = 1000 if a <= 1e17 else 1_000_000
    if re.fullmatch(r"[+-]?\d+", text):
        n = int(text)
        return abs(n) // per_ms * (1 if n >= 0 else -1)
    return int(x / per_ms)


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


COMMA_NUMBER = re.compile(r"[+-]?\d*,\d+(?:[eE][+-]?\d+)?")  # 0,21  -1,5  2,5E-3
THOUSANDS = re.compile(r"[+-]?[1-9]\d{0,2},\d{3}")  # 1,234: a decimal comma or a thousands separator?


def decimal_comma(cells: Iterable[str], delimiter: str) -> bool:
    """Whether a column's commas are decimal commas. In a semicolon-separated file (the list
    separator where the comma is the decimal one) they are. In a tab- or comma-separated file (where
    such a cell is quoted) they are when every cell with a comma looks like a decimal-comma number
    and at least one cannot be a number with a thousands separator (``0,21``, ``12,5``; ``1,234``
    can): a column of thousands separators is not read as decimal commas."""
    if delimiter == ";":
        return True
    commas = [c.strip() for c in cells if "," in c]
    return (
        bool(commas)
        and all(COMMA_NUMBER.fullmatch(c) for c in commas)
        and not all(THOUSANDS.fullmatch(c) for c in commas)
    )
