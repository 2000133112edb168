"""Lint and type checks are part of the suite: `ruff check` over the repo and strict mypy over the
packages (configuration in pyproject.toml)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def run(*cmd: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600, check=False)


def test_ruff_finds_nothing() -> None:
    res = run(str(BIN / "ruff"), "check", ".")
    assert res.returncode == 0, res.stdout + res.stderr


def test_mypy_strict_finds_nothing() -> None:
    res = run(sys.executable, "-m", "mypy", "ingest", "schemas", "sinks", "streams", "infra")
    assert res.returncode == 0, res.stdout + res.stderr
