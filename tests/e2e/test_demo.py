"""``millstream demo --json`` end to end: the CLI contract other checks rely on, and no process left."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

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
    assert _processes_mentioning(str(tmp_path / "demo-data")) == [], "the demo left processes running"
