"""How the command line ends when the operating system says no: one line, no traceback.

Real processes: a closed pipe (`millstream sql … | head -1`) and a folder that cannot be created.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def _env(tmp_path: Path) -> dict[str, str]:
    return {**os.environ, "MILLSTREAM_CLICKHOUSE_URL": f"chdb://{tmp_path / 'ch'}"}


def test_a_closed_pipe_ends_the_command_quietly(tmp_path: Path) -> None:
    query = "SELECT number FROM numbers(300000)"  # far more than a pipe holds
    proc = subprocess.Popen(
        [sys.executable, "-m", "infra.cli", "sql", query, "--format", "csv"],
        cwd=REPO,
        env=_env(tmp_path),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None and proc.stderr is not None
    assert proc.stdout.readline() == "number\n"
    proc.stdout.close()  # what `| head -1` does
    err = proc.stderr.read()
    assert proc.wait(timeout=60) == 141, err  # 128 + SIGPIPE, as a shell reports it
    assert "Traceback" not in err and "BrokenPipe" not in err, err


def test_a_path_that_cannot_be_written_is_one_line(tmp_path: Path) -> None:
    (tmp_path / "a-file").write_text("x", encoding="utf-8")
    out = tmp_path / "a-file" / "results"  # a folder inside a file
    nab = REPO.parent / "shared" / "datasets" / "nab"
    proc = subprocess.run(
        [sys.executable, "-m", "infra.cli", "nab", "run", "--nab-root", str(nab), "--output", str(out)],
        cwd=REPO,
        env=_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 1
    err = proc.stderr.strip()
    assert err.startswith(f"millstream: error: Not a directory: {out}"), err  # the folder it was making
    assert "\n" not in err and "Traceback" not in err, err
