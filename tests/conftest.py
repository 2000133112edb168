"""Shared fixtures: real services, started here, failing loudly when they cannot start."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from infra.stack import LocalBroker, create_topics
from schemas.config import KafkaSettings, TopicSettings

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    """../shared beside the repo (datasets). Missing is an error, not a skip."""
    if not (SHARED / "datasets").is_dir():
        pytest.fail(f"{SHARED}/datasets not found: the shared data folder must sit beside the repo")
    return SHARED


@pytest.fixture(scope="session")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalBroker]:
    """One real Kafka-protocol broker for the whole session."""
    b = LocalBroker(tmp_path_factory.mktemp("broker")).start()
    try:
        yield b
    finally:
        b.stop()


@pytest.fixture()
def kafka(broker: LocalBroker) -> KafkaSettings:
    return KafkaSettings(kafka_bootstrap=broker.bootstrap)


@pytest.fixture()
def topics(kafka: KafkaSettings) -> TopicSettings:
    """A fresh, isolated set of pipeline topics (unique names) on the session broker."""
    suffix = uuid.uuid4().hex[:8]
    t = TopicSettings(
        topic_readings=f"readings-{suffix}",
        topic_windows=f"windows-{suffix}",
        topic_dead_letters=f"dlq-{suffix}",
        topic_late=f"late-{suffix}",
        topic_spc_signals=f"spc-{suffix}",
        topic_anomalies=f"anomalies-{suffix}",
        topic_partitions=3,
    )
    create_topics(kafka, t)
    return t
