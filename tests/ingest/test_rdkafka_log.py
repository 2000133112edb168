"""librdkafka's own log during a broker outage: through Python logging, each line once, repeats at
DEBUG (instead of a ``%3|...|FAIL|`` line on stderr several times a second)."""

from __future__ import annotations

import logging
import time

import pytest

from infra.procs import free_port
from ingest.producer import GatewayProducer
from schemas.config import KafkaSettings


def test_repeated_connection_failures_are_logged_once(
    capfd: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="ingest.rdkafka_log")
    producer = GatewayProducer(KafkaSettings(kafka_bootstrap=f"127.0.0.1:{free_port()}"), "nowhere")

    def failures() -> list[logging.LogRecord]:
        return [
            r for r in caplog.records if r.name == "ingest.rdkafka_log" and "Connect to" in r.getMessage()
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
