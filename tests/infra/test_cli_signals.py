"""`kill PID` (or `timeout`, or a closed terminal) stops a command like Ctrl-C does: one line, exit 130,
and the child processes it started (a broker, a Faust worker, a pool of detector processes) are
stopped too, not left running without a parent.

Real processes: the command under test starts its own broker and workers; the signal goes to the
command's process only, as `kill` and `timeout` send it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
NAB = REPO.parent / "shared" / "datasets" / "nab"

pytestmark = pytest.mark.integration


def _processes_mentioning(text: str, command: str = "") -> list[int]:
    """Processes whose command line or environment holds ``text`` (the test's own folder) and whose
    command line holds ``command``."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit() or int(proc.name) == os.getpid():
            continue
        try:
            cmd = (proc / "cmdline").read_bytes().decode(errors="replace")
            env = (proc / "environ").read_bytes().decode(errors="replace")
        except OSError:
            continue
        if (text in cmd or text in env) and command in cmd.replace("\0", " "):
            found.append(int(proc.name))
    return found


def _wait_gone(text: str, timeout: float) -> list[int]:
    deadline = time.monotonic() + timeout
    while (left := _processes_mentioning(text)) and time.monotonic() < deadline:
        time.sleep(0.5)
    return left


@pytest.fixture
def marked(tmp_path: Path) -> Iterator[dict[str, str]]:
    """An environment whose TMPDIR is the test's folder: every process the command starts carries
    it, so the ones left over can be found (and are killed after the test whatever happened)."""
    env = {k: v for k, v in os.environ.items() if not k.upper().startswith("MILLSTREAM_")}
    env["TMPDIR"] = str(tmp_path)
    env["MILLSTREAM_CLICKHOUSE_URL"] = f"chdb://{tmp_path / 'ch'}"
    yield env
    for pid in _processes_mentioning(str(tmp_path)):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def _start(env: dict[str, str], *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "infra.cli", *args],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        # Ctrl-C's default action even when the tests run where SIGINT is ignored (a background job)
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )


def _until(check: Callable[[], bool], what: str, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.2)
    pytest.fail(f"timed out waiting for {what}")


def test_a_killed_replay_stops_its_broker_and_faust_worker(tmp_path: Path, marked: dict[str, str]) -> None:
    readings = tmp_path / "readings.csv"
    rows = [
        f"m{m},temp,{1_700_000_000_000 + i * 1000},{20 + (i % 7) / 10}" for i in range(3000) for m in (1, 2)
    ]
    readings.write_text("machine_id,sensor,ts,value\n" + "\n".join(rows) + "\n", encoding="utf-8")
    proc = _start(
        marked, "replay", "--engine", "faust", "--input", str(readings), "--output", str(tmp_path / "o")
    )
    _until(lambda: bool(_processes_mentioning(str(tmp_path), "run faust")), "the Faust worker to start")
    proc.send_signal(signal.SIGTERM)  # to the command only, as `kill` and `timeout` do
    _, err = proc.communicate(timeout=120)
    assert _wait_gone(str(tmp_path), 30) == [], "replay left its broker or Faust worker running"
    assert proc.returncode == 130, err[-2000:]
    assert "millstream: interrupted" in err and "Traceback" not in err, err[-2000:]


def test_ctrl_c_stops_nab_run_at_once_and_kill_leaves_no_workers(
    tmp_path: Path, marked: dict[str, str]
) -> None:
    out = tmp_path / "results"
    for sig in (signal.SIGINT, signal.SIGTERM):
        proc = _start(marked, "nab", "run", "--nab-root", str(NAB), "--output", str(out), "--workers", "2")
        _until(lambda: any(out.rglob("*.csv")), "the first NAB result")  # noqa: B023
        written = len(list(out.rglob("*.csv")))
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=60)
        assert proc.returncode == 130, err[-2000:]
        assert "millstream: interrupted" in err and "Traceback" not in err, err[-2000:]
        total = len(list((NAB / "data").glob("*/*.csv")))
        assert len(list(out.rglob("*.csv"))) <= written + 3 < total  # the files being written, one queued
        assert _wait_gone(str(tmp_path), 30) == [], f"nab run left worker processes after {sig.name}"
        for f in out.rglob("*.csv"):
            f.unlink()
