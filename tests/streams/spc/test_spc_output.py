"""`millstream spc` output: the CUSUM table, sample labels, pictures by extension, closed pipes, notices.

Sources
- [M] D. C. Montgomery, *Introduction to Statistical Quality Control*, 6th ed., Wiley 2009: Ex. 7.1
  (orange juice cans, p chart: samples 15 and 23 beyond the trial limits), Ex. 9.1 / Tables 9.1-9.2
  (tabular CUSUM, μ0 = 10, σ = 1, k = 0.5, h = 5: C+ first exceeds H = 5 at period 29).
"""

from __future__ import annotations

import logging
import math
import os
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.streams.spc.test_spc_known_answers import TABLE_9_1, TABLE_9_2_UPPER

Spc = Callable[..., Any]  # the `spc` fixture: runs `millstream spc ...`, returns a CliRun

REPO = Path(__file__).resolve().parents[3]


def _table_rows(text: str) -> tuple[list[str], list[list[str]]]:
    """The header and the data rows of the text table (rows start with the sample number)."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.split()[:2] == ["#", "label"])
    rows = []
    for line in lines[start + 1 :]:
        if not line.strip():
            break
        rows.append(line.split())
    return lines[start].split(), rows


# -- CUSUM: the table shows C+ and C- against H ------------------------------------------------------
@pytest.fixture()
def table_9_1(tmp_path: Path) -> Path:
    path = tmp_path / "table_9_1.csv"
    path.write_text("period,x\n" + "".join(f"{i},{v}\n" for i, v in enumerate(TABLE_9_1, start=1)))
    return path


def _cusum_args(path: Path) -> list[object]:
    return [
        "cusum",
        "--input",
        path,
        "--value-column",
        "x",
        "--target",
        10,
        "--sigma",
        1,
        "--k",
        0.5,
        "--h",
        5,
    ]


def test_cusum_text_table_shows_c_plus_and_c_minus(table_9_1: Path, spc: Spc) -> None:
    run = spc(*_cusum_args(table_9_1))
    assert run.rc == 0, run.err
    assert "rules: we" not in run.out  # run rules do not apply to CUSUM
    header, rows = _table_rows(run.out)
    assert header[:7] == ["#", "label", "ph", "value", "C+", "C-", "H"]
    assert len(rows) == len(TABLE_9_1)
    # C- recomputed here from its definition ([M] eq. 9.3): C-_i = max(0, (μ0 - K) - x_i + C-_{i-1}).
    lower, c_minus = 0.0, []
    for x in TABLE_9_1:
        lower = max(0.0, (10 - 0.5) - x + lower)
        c_minus.append(lower)
    for row, x, up, down in zip(rows, TABLE_9_1, TABLE_9_2_UPPER, c_minus, strict=True):
        assert float(row[3]) == pytest.approx(x)
        assert float(row[4]) == pytest.approx(up, abs=0.005)  # [M] Table 9.2
        assert float(row[5]) == pytest.approx(down, abs=1e-9)
        assert float(row[6]) == 5.0  # H = hσ
    flagged = [int(row[0]) for row in rows if row[-1] == "cusum:LIMIT"]
    assert flagged == [29, 30]  # [M] Ex. 9.1


def test_cusum_json_has_no_negative_zero(table_9_1: Path, spc: Spc) -> None:
    points = spc(*_cusum_args(table_9_1), "--json").json()["points"]
    zeros = [v for p in points for v in p.values() if isinstance(v, float) and v == 0.0]
    assert zeros and all(math.copysign(1.0, v) == 1.0 for v in zeros)  # json.loads keeps -0.0's sign


def test_ewma_header_says_limits_only(qcc: Path, spc: Spc) -> None:
    run = spc(
        "ewma", "--input", qcc / "viscosity.txt", "--value-column", "viscosity", "--phase1-column", "trial"
    )
    assert run.rc == 0 and "rules: none (limits only)" in run.out


# -- labels: the file's sample ids -------------------------------------------------------------------
def _column(path: Path, name: str) -> list[str]:
    header, *rows = [line.split() for line in path.read_text().splitlines() if line.strip()]
    return [row[header.index(name)] for row in rows]


def test_attribute_chart_labels_come_from_the_label_column(qcc: Path, spc: Spc) -> None:
    path = qcc / "orangejuice2.txt"  # samples numbered 31..94 in the file
    args = ["p", "--input", path, "--value-column", "D", "--size-column", "size", "--phase1-column", "trial"]
    ids = _column(path, "sample")
    assert ids[0] == "31"
    out = spc(*args, "--label-column", "sample", "--json").json()
    assert [p["label"] for p in out["points"]] == ids
    assert [p["index"] for p in out["points"]] == list(range(1, len(ids) + 1))
    _, rows = _table_rows(spc(*args, "--label-column", "sample").out)
    assert [row[1] for row in rows] == ids
    # Without --label-column the label is the sample number, as before.
    assert [p["label"] for p in spc(*args, "--json").json()["points"]] == [str(i) for i in range(1, 65)]


def test_signal_list_names_the_sample_label(qcc: Path, tmp_path: Path, spc: Spc) -> None:
    src = (qcc / "orangejuice.txt").read_text().splitlines()
    path = tmp_path / "oj.tsv"
    path.write_text(
        "lot\t" + src[0] + "\n" + "".join(f"L{i:03d}\t{line}\n" for i, line in enumerate(src[1:], start=1))
    )
    run = spc("p", "--input", path, "--value-column", "D", "--size-column", "size",
              "--phase1-column", "trial", "--rules", "none", "--label-column", "lot")  # fmt: skip
    assert run.rc == 0, run.err
    # [M] Ex. 7.1: samples 15 and 23 are beyond the trial limits.
    assert "sample L015 (#15)  p     LIMIT" in run.out
    assert "sample L023 (#23)  p     LIMIT" in run.out


def test_individuals_and_subgroups_take_the_label_column(qcc: Path, spc: Spc) -> None:
    visc = qcc / "viscosity.txt"
    out = spc(
        "imr", "--input", visc, "--value-column", "viscosity", "--label-column", "batch", "--json"
    ).json()
    assert [p["label"] for p in out["points"]] == _column(visc, "batch")
    rings = qcc / "pistonrings.txt"
    out = spc("xbar-r", "--input", rings, "--value-column", "diameter", "--subgroup-size", 5,
              "--label-column", "sample", "--json").json()  # fmt: skip
    assert [p["label"] for p in out["points"]] == _column(rings, "sample")[::5]


def test_unknown_label_column(qcc: Path, spc: Spc) -> None:
    run = spc("c", "--input", qcc / "circuit.txt", "--value-column", "x", "--label-column", "lot")
    assert run.rc == 1 and "unknown column 'lot'" in run.err


# -- --plot: the extension chooses the format --------------------------------------------------------
@pytest.mark.parametrize(("name", "magic"), [("x.pdf", b"%PDF"), ("x.svg", b"<svg"), ("x.PNG", b"\x89PNG")])
def test_plot_format_follows_the_extension(
    qcc: Path, tmp_path: Path, spc: Spc, name: str, magic: bytes
) -> None:
    out = tmp_path / name
    run = spc(
        "c", "--input", qcc / "circuit.txt", "--value-column", "x", "--phase1-column", "trial", "--plot", out
    )
    assert run.rc == 0, run.err
    assert magic in out.read_bytes()[:400]


@pytest.mark.parametrize("name", ["x.jpg", "x"])
def test_plot_refuses_other_extensions(qcc: Path, tmp_path: Path, spc: Spc, name: str) -> None:
    out = tmp_path / name
    run = spc("c", "--input", qcc / "circuit.txt", "--value-column", "x", "--plot", out)
    assert run.rc == 1 and run.out == ""
    assert "must end in .png, .pdf or .svg" in run.err
    assert not out.exists()


# -- a closed pipe (`millstream spc ... | head`) ends quietly ----------------------------------------
@pytest.mark.parametrize("extra", [[], ["--json"]])
def test_closed_pipe_exits_quietly(qcc: Path, extra: list[str]) -> None:
    read_end, write_end = os.pipe()
    os.close(read_end)  # the reader is gone before the first write: every write fails with EPIPE
    env = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}  # stdout buffered, as usual
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "infra.cli", "spc", "c", "--input", str(qcc / "circuit.txt"),
             "--value-column", "x", "--phase1-column", "trial", *extra],
            stdout=write_end, stderr=subprocess.PIPE, cwd=REPO, env=env, timeout=120, check=False,
        )  # fmt: skip
    finally:
        os.close(write_end)
    assert proc.stderr == b""  # no traceback, no "Exception ignored"
    assert proc.returncode == 141  # 128 + SIGPIPE, as a shell reports it


# -- notices: zero sigma on EWMA/CUSUM, spec limits on attribute charts -------------------------------
@pytest.mark.parametrize("kind", ["cusum", "ewma"])
def test_constant_baseline_warns(
    tmp_path: Path, spc: Spc, caplog: pytest.LogCaptureFixture, kind: str
) -> None:
    path = tmp_path / "const.csv"
    path.write_text("x\n5\n5\n5\n5\n6\n")
    with caplog.at_level(logging.WARNING):
        run = spc(kind, "--input", path, "--value-column", "x", "--phase1-count", 4, "--json")
    assert run.json()["sigma"] == 0.0  # MR-bar = 0 over the baseline
    assert any(f"{kind} chart: estimated sigma is 0" in r.getMessage() for r in caplog.records)
    text = spc(kind, "--input", path, "--value-column", "x", "--phase1-count", 4).out
    assert not re.search(r"(?<![\w.])-0(?![\w.])", text)  # limits of ±0 print as 0, not -0


@pytest.mark.parametrize("kind", ["c", "p", "np", "u"])
def test_spec_limits_on_attribute_charts_are_refused(qcc: Path, spc: Spc, kind: str) -> None:
    run = spc(kind, "--input", qcc / "circuit.txt", "--value-column", "x", "--size-column", "size",
              "--lsl", 1, "--usl", 10)  # fmt: skip
    assert run.rc == 1 and run.out == ""
    assert "--lsl/--usl" in run.err and f"the {kind} chart" in run.err
    assert spc(kind, "--input", qcc / "circuit.txt", "--value-column", "x", "--size-column", "size").rc == 0
