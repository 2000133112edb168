"""A scored copy that cannot be written whole leaves the previous one as it was, and no truncated
file that looks complete (a header and fewer rows).

Real process: the file size limit (RLIMIT_FSIZE, what a full disk or quota does to the write) stops
`millstream detect` part way through writing its output."""

from __future__ import annotations

import os
import resource
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[3]
ROWS = 3000


def _detect(
    data: Path, out: Path, events: Path, max_bytes: int | None = None
) -> subprocess.CompletedProcess[str]:
    def limit() -> None:  # in the child only; Python ignores SIGXFSZ, so the write fails with EFBIG
        if max_bytes is not None:
            resource.setrlimit(resource.RLIMIT_FSIZE, (max_bytes, max_bytes))

    return subprocess.run(
        [sys.executable, "-m", "infra.cli", "detect", "--input", str(data), "--timestamp-column", "ts",
         "--output", str(out), "--events", str(events), "--quiet"],
        cwd=REPO, env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}, preexec_fn=limit,
        capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip


def test_a_write_cut_short_keeps_the_previous_scored_copy(tmp_path: Path) -> None:
    data = tmp_path / "line3.csv"
    rows = (f"{1_700_000_000 + i},{20 + (i % 37) / 10},{5 + (i % 11) / 100}" for i in range(ROWS))
    data.write_text("ts,temp,press\n" + "\n".join(rows) + "\n", encoding="utf-8")
    out, events = tmp_path / "scored.csv", tmp_path / "events.jsonl"
    first = _detect(data, out, events)
    assert first.returncode == 0, first.stderr
    before = out.read_bytes()
    assert len(before) > 64 * 1024

    cut = _detect(data, out, events, max_bytes=64 * 1024)
    assert cut.returncode == 1, cut.stderr
    assert len(out.read_bytes()) == len(before), "the previous scored copy was cut short"
    assert out.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["events.jsonl", "line3.csv", "scored.csv"]
    err = cut.stderr.strip().splitlines()
    assert err[-1] == f"millstream: error: cannot write {out}: File too large", cut.stderr
    assert "Traceback" not in cut.stderr
