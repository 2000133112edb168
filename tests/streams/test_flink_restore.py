"""MILLSTREAM_FLINK_RESTORE=latest resumes this job's newest completed checkpoint, not another app's
(the local job id, and with it the checkpoint folder, is derived from MILLSTREAM_STREAM_APP_ID)."""

from __future__ import annotations

import os
from pathlib import Path

from streams.flink.config import FlinkSettings
from streams.flink.job import fixed_job_id, resolve_restore


def checkpoint(root: Path, job: str, n: int, mtime: int) -> Path:
    path = root / job / f"chk-{n}"
    path.mkdir(parents=True)
    (path / "_metadata").write_bytes(b"x")
    os.utime(path / "_metadata", ns=(mtime, mtime))
    return path


def test_latest_is_the_newest_checkpoint_of_this_job_only(tmp_path: Path) -> None:
    mine, other = fixed_job_id("millstream-windows"), fixed_job_id("another-app")
    assert mine != other
    older = checkpoint(tmp_path, mine, 4, 1_000)
    newest = checkpoint(tmp_path, mine, 5, 2_000)
    checkpoint(tmp_path, other, 9, 3_000)  # newer, but another app's
    (tmp_path / mine / "chk-6").mkdir()  # in progress: no _metadata yet
    assert resolve_restore(FlinkSettings(restore="latest"), tmp_path, mine) == newest != older
    assert resolve_restore(FlinkSettings(restore="latest"), tmp_path, fixed_job_id("fresh-app")) is None
    assert resolve_restore(FlinkSettings(restore="none"), tmp_path, mine) is None
