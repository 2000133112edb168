"""Fixtures of the SPC tests: the qcc data sets and a CLI runner."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from infra.cli import main


@dataclass
class CliRun:
    rc: int
    out: str
    err: str

    def json(self) -> Any:
        assert self.rc == 0, self.err
        return json.loads(self.out)


@pytest.fixture(scope="session")
def qcc(shared_dir: Path) -> Path:
    path = shared_dir / "datasets" / "qcc"
    if not path.is_dir():
        pytest.fail(f"{path} is missing: the qcc data sets must be in ../shared/datasets/qcc")
    return path


@pytest.fixture()
def spc(capsys: pytest.CaptureFixture[str]) -> Callable[..., CliRun]:
    """Run ``millstream spc ARGS`` in-process and capture what it prints."""

    def run(*args: object) -> CliRun:
        capsys.readouterr()
        rc = main(["spc", *[str(a) for a in args]])
        captured = capsys.readouterr()
        return CliRun(rc, captured.out, captured.err)

    return run
