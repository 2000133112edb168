"""librdkafka's own log during a broker outage: through Python logging, each line once, repeats at
DEBUG (instead of a ``%3|...|FAIL|`` line on stderr several times a second)."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from infra.procs import free_port
from ingest.producer import GatewayProducer
from schemas.config import KafkaSettings

REPO = Path(__file__).resolve().parents[2]


def test_repeated_connection_failures_are_logged_once(
    capfd: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="schemas.log_repeats")
    producer = GatewayProducer(KafkaSettings(kafka_bootstrap=f"127.0.0.1:{free_port()}"), "nowhere")

    def failures() -> list[logging.LogRecord]:
        return [
            r for r in caplog.records if r.name == "schemas.log_repeats" and "Connect to" in r.getMessage()
        ]

    deadline = time.monotonic() + 20
    try:
        while len(failures()) < 3 and time.monotonic() < deadline:  # librdkafka retries the connection
            producer.poll(0.1)
    finally:
        producer.close(timeout=0.1)
    records = failures()
    assert len(records) >= 3, "librdkafka's log reaches Python logging"
    assert [r.levelno >= logging.WARNING for r in records].count(True) == 1, "the first once, then DEBUG"
    assert "|FAIL|" not in capfd.readouterr().err, "nothing printed by librdkafka itself"


def test_the_sink_logs_an_unreachable_broker_once(tmp_path: Path) -> None:
    """A real `millstream sink` process for 8 s against a port where no broker listens."""
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("MILLSTREAM_")},
        "MILLSTREAM_KAFKA_BOOTSTRAP": f"127.0.0.1:{free_port()}",
        "MILLSTREAM_CLICKHOUSE_URL": f"chdb://{tmp_path / 'ch'}",
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "infra.cli", "sink"],
        cwd=REPO,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    time.sleep(8)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert "|FAIL|" not in err, err[-2000:]  # nothing printed by librdkafka itself
    failures = [line for line in err.splitlines() if "Connection refused" in line]
    assert 1 <= len(failures) <= 2, err[-2000:]  # once per 30 s (the bootstrap and the resolved broker)
