"""``millstream run flink`` refuses a parallelism above the readings partitions without a source idle timeout.

A source subtask without a partition has no watermark, and Flink's watermark is the minimum over
subtasks: measured at parallelism 4 on 3 partitions, the first windows closed only once the source
idle timeout (30 s) had marked that subtask idle, and with the timeout at 0 never (the windows
operator's input watermark stayed at Long.MIN_VALUE). Real broker; the refusal comes before the
MiniCluster starts.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest

from infra.procs import free_port
from schemas.config import KafkaSettings, TopicSettings
from streams.partitions import check_source_parallelism

REPO = Path(__file__).resolve().parents[2]


def test_run_flink_refuses_idle_subtasks_that_would_never_close_a_window(
    kafka: KafkaSettings, topics: TopicSettings, tmp_path: Path
) -> None:
    env = {
        **os.environ,
        "MILLSTREAM_KAFKA_BOOTSTRAP": kafka.kafka_bootstrap,
        "MILLSTREAM_DATA_DIR": str(tmp_path),
        "MILLSTREAM_STREAM_METRICS_PORT": str(free_port()),
        "MILLSTREAM_FLINK_SOURCE_IDLE_TIMEOUT_MS": "0",
        **{f"MILLSTREAM_{k.upper()}": str(v) for k, v in topics},
    }
    # Started, the job would run until stopped: the timeout fails the test.
    done = subprocess.run(  # noqa: S603 - this interpreter, fixed arguments
        [sys.executable, "-m", "infra.cli", "run", "flink", "--parallelism", "4"],
        env=env, cwd=REPO, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 1, done.stderr[-2000:]
    assert f"parallelism 4 is more than the 3 partitions of the readings topic {topics.topic_readings}" in (
        done.stderr
    )
    assert "Use a parallelism of at most 3" in done.stderr
    assert not (tmp_path / "flink" / "checkpoints").exists()  # refused before the job started


def test_parallelism_within_the_partitions_passes_and_above_them_warns(
    kafka: KafkaSettings, topics: TopicSettings, caplog: pytest.LogCaptureFixture
) -> None:
    check_source_parallelism(kafka, topics, 3, 0)
    with caplog.at_level(logging.WARNING, logger="streams.partitions"):
        check_source_parallelism(kafka, topics, 4, 30_000)
    assert "no window closes until MILLSTREAM_FLINK_SOURCE_IDLE_TIMEOUT_MS (30000 ms)" in caplog.text
