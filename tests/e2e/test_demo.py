"""``millstream demo --json`` end to end: the CLI contract other checks rely on, and no process left."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from infra.demo import EXAMPLE_SQL
from sinks.clickhouse import ClickHouseSettings, connect

pytestmark = pytest.mark.integration


def _processes_mentioning(text: str) -> list[str]:
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmd = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            env = (proc / "environ").read_bytes().decode(errors="replace")
        except OSError:
            continue
        if text in cmd or text in env:
            found.append(f"{proc.name}: {cmd[:120]}")
    return found


def test_demo_json_contract_and_clean_shutdown(tmp_path: Path) -> None:
    env = {**os.environ, "MILLSTREAM_DATA_DIR": str(tmp_path / "demo-data")}
    res = subprocess.run(
        [sys.executable, "-m", "infra.cli", "demo", "--duration", "20", "--machines", "4", "--json"],
        capture_output=True, text=True, env=env, timeout=300, check=False,
    )  # fmt: skip
    assert res.returncode == 0, res.stderr[-3000:]
    summary = json.loads(res.stdout.strip().splitlines()[-1])
    for key in ("readings_produced", "windows_in_clickhouse", "prometheus_up", "dead_letters", "spc_signals"):
        assert key in summary
    # 4 machines x 8 sensors x 2 scans/s x 20 s
    assert summary["readings_produced"] == 4 * 8 * 2 * 20
    assert summary["windows_in_clickhouse"] > 0
    assert summary["prometheus_up"] is True
    assert summary["dead_letters"] == 0
    assert summary["machine_sensors_loaded"] == 4 * 8  # the simulated plant's metadata, with spec limits
    assert _processes_mentioning(str(tmp_path / "demo-data")) == [], "the demo left processes running"
    # Every query the demo suggests runs and finds rows (the Ppk example needs the loaded spec limits).
    client = connect(ClickHouseSettings(url=summary["clickhouse"]))
    try:
        for title, sql in EXAMPLE_SQL:
            assert client.query(sql).result_rows, title
        specs = client.query(
            "SELECT sensor, lsl, usl FROM machines FINAL WHERE machine_id = 'm001'"
        ).result_rows
    finally:
        client.close()
    assert ("pressure", 5.0, 7.0) in specs and ("energy", None, None) in specs


def _start_demo(data: Path, duration: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "infra.cli", "demo", "--duration", duration, "--machines", "2", "--json"],
        env={**os.environ, "MILLSTREAM_DATA_DIR": str(data)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _wait_for_sink_log(data: Path, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not (data / "logs" / "sink.log").exists():  # the stack is up, the components are starting
        assert time.monotonic() < deadline, "the demo did not start its components"
        time.sleep(0.5)
    time.sleep(3)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP], ids=["SIGTERM", "SIGHUP"])
def test_a_killed_demo_stops_every_process_it_started(tmp_path: Path, sig: signal.Signals) -> None:
    """`kill`, a closed terminal or a cancelled job: the components (each in a session of its own)
    are stopped too, and the data folder is free for the next run."""
    data = tmp_path / "demo-data"
    demo = _start_demo(data, "120")
    _wait_for_sink_log(data)
    demo.send_signal(sig)
    _, err = demo.communicate(timeout=120)
    assert demo.returncode == 130, err[-2000:]
    assert "millstream: interrupted" in err
    assert _processes_mentioning(str(data)) == [], "the demo left processes running"


def test_a_second_demo_on_the_same_folder_is_refused_before_it_touches_anything(tmp_path: Path) -> None:
    data = tmp_path / "demo-data"
    first = _start_demo(data, "120")
    try:
        _wait_for_sink_log(data)
        state = sorted(p.name for p in data.iterdir())
        second = subprocess.run(
            [sys.executable, "-m", "infra.cli", "demo", "--duration", "5", "--json"],
            env={**os.environ, "MILLSTREAM_DATA_DIR": str(data)},
            capture_output=True, text=True, timeout=120, check=False,
        )  # fmt: skip
        assert second.returncode == 1
        assert f"another demo or local run (pid {first.pid}) is using {data}" in second.stderr, second.stderr
        assert sorted(p.name for p in data.iterdir()) == state  # nothing deleted
        assert first.poll() is None  # the first goes on
    finally:
        first.send_signal(signal.SIGINT)
        first.communicate(timeout=120)
    assert _processes_mentioning(str(data)) == []
