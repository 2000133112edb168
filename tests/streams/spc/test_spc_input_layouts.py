"""`millstream spc` input layouts: trailing delimiters, R row names, semicolon files with decimal commas."""

from __future__ import annotations

import statistics
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from streams.spc.exceptions import SpcInputError
from streams.spc.io import parse_table

Spc = Callable[..., Any]  # the `spc` fixture: runs `millstream spc ...`, returns a CliRun

X = [10.0, 11.0, 12.0, 13.0, 11.5, 10.5]
Y = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]


def _imr_center(spc: Spc, path: Path, column: str = "x") -> float:
    center: float = spc("imr", "--input", path, "--value-column", column, "--json").json()["center"]
    return center


@pytest.mark.parametrize("sep", [",", "\t"])
def test_trailing_delimiter_on_data_rows_is_dropped(tmp_path: Path, spc: Spc, sep: str) -> None:
    # Spreadsheet and historian exports often end every data row with the delimiter: "10,1,".
    path = tmp_path / "trailing.csv"
    rows = "".join(f"{x}{sep}{y}{sep}\r\n" for x, y in zip(X, Y, strict=True))
    path.write_bytes(f"x{sep}y\r\n{rows}".encode())
    # I-MR center = mean of the individual values (Montgomery ch. 6.4); column x, not y.
    assert _imr_center(spc, path, "x") == pytest.approx(statistics.fmean(X))
    assert _imr_center(spc, path, "y") == pytest.approx(statistics.fmean(Y))


def test_trailing_delimiter_on_header_and_rows(tmp_path: Path, spc: Spc) -> None:
    path = tmp_path / "both.csv"
    path.write_text("x,y,\n" + "".join(f"{x},{y},\n" for x, y in zip(X, Y, strict=True)))
    assert _imr_center(spc, path) == pytest.approx(statistics.fmean(X))


def test_trailing_delimiter_on_some_rows_only(tmp_path: Path, spc: Spc) -> None:
    path = tmp_path / "some.csv"
    path.write_text(
        "x,y\n" + "".join(f"{x},{y}{',' if i % 2 else ''}\n" for i, (x, y) in enumerate(zip(X, Y)))
    )
    assert _imr_center(spc, path) == pytest.approx(statistics.fmean(X))


def test_r_row_names_are_still_dropped(tmp_path: Path, spc: Spc) -> None:
    # R write.csv(row.names = TRUE) with an unnamed first column is not the same as a trailing comma.
    path = tmp_path / "r.csv"
    path.write_text('"x","y"\n' + "".join(f'"{i}",{x},{y}\n' for i, (x, y) in enumerate(zip(X, Y), 1)))
    assert _imr_center(spc, path) == pytest.approx(statistics.fmean(X))


def test_extra_field_that_is_neither_row_names_nor_trailing_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(SpcInputError) as exc:
        parse_table("x,y\n10,1\n11,2,7\n12,3\n", "f.csv")
    assert "f.csv: line 3: 3 fields, the header has 2 (x, y)" in str(exc.value)
    with pytest.raises(SpcInputError) as exc:
        parse_table("x,y,\n10,1,5\n11,2,6\n", "g.csv")  # a third column without a name
    assert "line 2: 3 fields, the header has 2" in str(exc.value) and "no name" in str(exc.value)
    with pytest.raises(SpcInputError) as exc:
        parse_table("x,y\n10,1,,\n", "h.csv")
    assert "line 2: 4 fields, the header has 2" in str(exc.value)


def test_semicolon_file_with_decimal_commas(tmp_path: Path, spc: Spc) -> None:
    # Excel in DE/FR/IT locales saves "CSV" with ';' between fields and ',' as the decimal separator.
    path = tmp_path / "excel_de.csv"
    body = "".join(f"{str(x).replace('.', ',')};{str(y).replace('.', ',')};WAHR\r\n" for x, y in zip(X, Y))
    path.write_bytes(("\ufeffx;y;ok\r\n" + body).encode())
    assert _imr_center(spc, path, "x") == pytest.approx(statistics.fmean(X))
    assert _imr_center(spc, path, "y") == pytest.approx(statistics.fmean(Y))
    table = parse_table("a;b\n1,5;2\n3.25;4\n")
    assert table.columns == ("a", "b") and table.numbers("a") == [1.5, 3.25]


def test_decimal_commas_only_in_semicolon_files(tmp_path: Path) -> None:
    with pytest.raises(SpcInputError) as exc:
        parse_table('x\ty\n"1,5"\t2\n', "t.tsv").numbers("x")
    assert "'1,5' is not a finite number" in str(exc.value)
    with pytest.raises(SpcInputError) as exc:  # a thousands separator is not guessed at
        parse_table("x;y\n1.234,5;2\n", "s.csv").numbers("x")
    assert "'1.234,5' is not a finite number" in str(exc.value)


def test_unknown_column_hints_at_a_separator_in_the_header(tmp_path: Path) -> None:
    table = parse_table("a;b,c\n1;2,3\n", "m.csv")  # split on ',' (a tie with ';'): names hold a ';'
    with pytest.raises(SpcInputError) as exc:
        table.index("a")
    assert "a column name holds a separator" in str(exc.value)
