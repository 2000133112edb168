"""`millstream spc`: input formats, output contract, and clear errors."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

Spc = Callable[..., Any]  # the `spc` fixture: runs `millstream spc ...`, returns a CliRun

REPO = Path(__file__).resolve().parents[3]


def test_json_is_one_object_with_the_contract_keys(qcc: Path, spc: Spc) -> None:
    run = spc("xbar-r", "--input", qcc / "pistonrings.txt", "--value-column", "diameter",
              "--subgroup-column", "sample", "--phase1-column", "trial", "--json")  # fmt: skip
    out = json.loads(run.out)  # the whole of stdout is one JSON document
    assert {"chart", "center", "lcl", "ucl", "secondary", "points", "signals", "capability"} <= set(out)
    assert set(out["capability"]) == {"cp", "cpk", "pp", "ppk"}
    assert all(v is None for v in out["capability"].values())  # no spec limits given
    assert {"chart", "center", "lcl", "ucl"} <= set(out["secondary"])
    assert all({"index", "value", "center", "lcl", "ucl"} <= set(p) for p in out["points"])
    assert all(set(s) == {"index", "chart", "rule"} for s in out["signals"])


def test_console_script_entry_point(qcc: Path) -> None:
    args = [
        "spc",
        "c",
        "--input",
        str(qcc / "circuit.txt"),
        "--value-column",
        "x",
        "--phase1-column",
        "trial",
    ]
    proc = subprocess.run(
        [sys.executable, "-m", "infra.cli", *args, "--json"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["chart"] == "c"


def test_text_output_is_a_readable_table(qcc: Path, spc: Spc) -> None:
    run = spc("p", "--input", qcc / "orangejuice.txt", "--value-column", "D", "--size-column", "size",
              "--phase1-column", "trial")  # fmt: skip
    assert run.rc == 0
    assert "p chart" in run.out and "center 0.231333" in run.out
    assert "p:WE1" in run.out  # flagged rows carry their rule
    assert "beyond a control limit" in run.out  # and the signal list explains it


@pytest.mark.parametrize("sep", [",", "\t", "  ", ", "])
def test_separators_quotes_crlf_and_row_names(tmp_path: Path, spc: Spc, sep: str) -> None:
    values = [10.1, 9.8, 10.4, 10.0, 9.7, 10.2, 12.9, 10.1]
    lines = [sep.join(['"batch"', '"thickness"', '"ok"'])]
    lines += [sep.join([str(i), str(v), "true" if i <= 6 else "false"]) for i, v in enumerate(values, 1)]
    path = tmp_path / "data.txt"
    path.write_bytes(("\r\n".join(lines) + "\r\n").encode())
    out = spc("imr", "--input", path, "--value-column", "thickness", "--phase1-column", "ok", "--json").json()
    assert out["center"] == pytest.approx(sum(values[:6]) / 6)
    # R write.table style: row names in the first column, no header field for them.
    rpath = tmp_path / "r.txt"
    rpath.write_text(
        '"thickness" "ok"\n' + "".join(f'"{i}" {v} {i <= 6}\n'.upper() for i, v in enumerate(values, 1))
    )
    again = spc(
        "imr", "--input", rpath, "--value-column", "thickness", "--phase1-column", "ok", "--json"
    ).json()
    assert again["points"] == out["points"]


def test_variable_sample_sizes_give_per_point_limits(tmp_path: Path, spc: Spc) -> None:
    d = [4, 6, 3, 9, 5, 17]
    n = [50, 80, 40, 120, 60, 70]
    path = tmp_path / "p.csv"
    path.write_text("d,n\n" + "".join(f"{a},{b}\n" for a, b in zip(d, n, strict=True)))
    out = spc(
        "p", "--input", path, "--value-column", "d", "--size-column", "n", "--phase1-count", 5, "--json"
    ).json()
    p_bar = sum(d[:5]) / sum(n[:5])  # Montgomery ch. 7.2.2: p̄ = ΣD/Σn, limits p̄ ± 3√(p̄(1−p̄)/nᵢ)
    assert out["center"] == pytest.approx(p_bar) and out["lcl"] is None and out["ucl"] is None
    for point, ni in zip(out["points"], n, strict=True):
        half = 3 * math.sqrt(p_bar * (1 - p_bar) / ni)
        assert point["ucl"] == pytest.approx(p_bar + half)
        assert point["lcl"] == pytest.approx(max(0.0, p_bar - half))
    assert [s["index"] for s in out["signals"] if s["rule"] == "WE1"] == [6]
    u = spc("u", "--input", path, "--value-column", "d", "--size-column", "n", "--json").json()
    assert u["ucl"] is None and u["points"][0]["ucl"] == pytest.approx(
        sum(d) / sum(n) + 3 * math.sqrt(sum(d) / sum(n) / 50)
    )


def test_variable_subgroup_sizes(tmp_path: Path, spc: Spc) -> None:
    path = tmp_path / "x.csv"
    groups = [[5.0, 5.2, 4.9], [5.1, 5.0], [4.8, 5.3, 5.1, 5.0], [5.2, 4.9, 5.0]]
    path.write_text("g,x\n" + "".join(f"{i},{v}\n" for i, g in enumerate(groups) for v in g))
    out = spc("xbar-s", "--input", path, "--value-column", "x", "--subgroup-column", "g", "--json").json()
    assert out["lcl"] is None and out["secondary"]["ucl"] is None
    assert len({p["ucl"] for p in out["points"]}) == 3  # sizes 3, 2, 4


def _err(run: Any) -> str:
    assert run.rc == 1
    assert run.err.startswith("millstream: error: ")
    return str(run.err)


def test_clear_errors(tmp_path: Path, qcc: Path, spc: Spc) -> None:
    assert "input file not found" in _err(spc("imr", "--input", tmp_path / "nope.csv", "--value-column", "x"))
    err = _err(spc("imr", "--input", qcc / "viscosity.txt", "--value-column", "visc"))
    assert "unknown column 'visc'" in err and "batch, viscosity, trial" in err
    bad = tmp_path / "bad.csv"
    bad.write_text("x,flag\n1.0,true\n2.5,true\nabc,false\n")
    err = _err(spc("imr", "--input", bad, "--value-column", "x"))
    assert "line 4 (data row 3), column 'x'" in err and "'abc'" in err
    bad.with_name("b3.csv").write_text("x,flag\n1.0,true\n2.5,maybe\n")
    err = _err(
        spc("imr", "--input", bad.with_name("b3.csv"), "--value-column", "x", "--phase1-column", "flag")
    )
    assert "line 3" in err and "not a boolean" in err
    err = _err(spc("xbar-r", "--input", qcc / "viscosity.txt", "--value-column", "viscosity"))
    assert "needs subgroups" in err
    err = _err(
        spc("xbar-s", "--input", qcc / "viscosity.txt", "--value-column", "viscosity", "--subgroup-size", 2)
    )
    assert "subgroup '18'" in err and "got n=1" in err  # 35 rows in pairs: the 18th subgroup has one value
    err = _err(spc("p", "--input", qcc / "orangejuice.txt", "--value-column", "D"))
    assert "needs sample sizes" in err
    err = _err(
        spc("imr", "--input", qcc / "viscosity.txt", "--value-column", "viscosity", "--phase1-count", 1)
    )
    assert "phase I needs 2+ values" in err
    err = _err(spc("p", "--input", qcc / "orangejuice.txt", "--value-column", "D", "--subgroup-size", 5))
    assert "exceeds the sample size" in err
    mixed = tmp_path / "mixed.csv"
    mixed.write_text("g,x,t\n1,1.0,true\n1,2.0,false\n2,1.5,false\n2,1.7,false\n")
    err = _err(
        spc(
            "xbar-r",
            "--input",
            mixed,
            "--value-column",
            "x",
            "--subgroup-column",
            "g",
            "--phase1-column",
            "t",
        )
    )
    assert "mixes TRUE and FALSE" in err
    empty = tmp_path / "empty.csv"
    empty.write_text("x\n")
    assert "no data rows" in _err(spc("imr", "--input", empty, "--value-column", "x"))
    err = _err(
        spc("imr", "--input", qcc / "viscosity.txt", "--value-column", "viscosity", "--lsl", 35, "--usl", 33)
    )
    assert "spec limit" in err


def test_argument_errors_exit_2(qcc: Path, spc: Spc) -> None:
    with pytest.raises(SystemExit) as exc:
        spc("hist", "--input", qcc / "viscosity.txt", "--value-column", "viscosity")
    assert exc.value.code == 2
