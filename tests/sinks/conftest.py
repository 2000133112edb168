"""Fixtures of the sink tests: an embedded ClickHouse per test and record factories.

chdb opens one data folder per process at a time; every client a test opens is closed by the
fixture before the next test opens its own folder. The migrated database is built once per session
and copied into each test's folder (the engine's folder is self-contained, links are relative).
"""

from __future__ import annotations

import itertools
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from clickhouse_connect.driver.client import Client

from schemas.config import KafkaSettings
from sinks.clickhouse import connect
from sinks.config import ClickHouseSettings
from sinks.migrations import migrate

T0 = 1_767_225_600_000  # 2026-01-01T00:00:00Z


@pytest.fixture()
def ch_settings(tmp_path: Any) -> ClickHouseSettings:
    """Embedded ClickHouse in this test's temporary folder; fast retries."""
    return ClickHouseSettings(
        data_dir=tmp_path / "stack",
        batch_rows=500,
        batch_age_ms=200,
        retry_backoff_ms=1,
        retry_backoff_max_ms=5,
    )


@pytest.fixture(scope="session")
def migrated_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The folder of an embedded ClickHouse with every migration and view applied (closed)."""
    data_dir = tmp_path_factory.mktemp("template")
    client = connect(ClickHouseSettings(data_dir=data_dir))
    try:
        migrate(client)
    finally:
        client.close()
    return data_dir / "clickhouse"


@pytest.fixture()
def ch(ch_settings: ClickHouseSettings, migrated_template: Path) -> Iterator[Client]:
    """A migrated database (a copy of the session's template); closed after the test."""
    target = ch_settings.embedded_path()
    assert target is not None
    if not target.exists():
        shutil.copytree(migrated_template, target, symlinks=True)
    client = connect(ch_settings)
    try:
        assert migrate(client) == [], "the template is up to date"
        yield client
    finally:
        client.close()


def window(**overrides: Any) -> dict[str, Any]:
    """A valid WindowAggregate record (schema millstream.WindowAggregate v1)."""
    start = overrides.pop("window_start", T0)
    rec: dict[str, Any] = {
        "plant": "p1",
        "line": "l1",
        "machine_id": "m1",
        "sensor": "temperature",
        "unit": "Cel",
        "window_kind": "tumbling",
        "window_start": start,
        "window_end": start + 60_000,
        "count": 3,
        "sum": 6.0,
        "mean": 2.0,
        "min": 1.0,
        "max": 3.0,
        "std": 1.0,
        "first_ts": start + 1_000,
        "last_ts": start + 59_000,
        "first": 1.0,
        "last": 3.0,
        "p50": 2.0,
        "p95": None,
        "p99": None,
        "slope": 0.05,
        "version": 0,
        "emitted_at": start + 61_000,
    }
    rec.update(overrides)
    return rec


@pytest.fixture()
def make_window() -> Callable[..., dict[str, Any]]:
    return window


def window_grid(machines: int, sensors: int, windows: int, start: int = T0) -> list[dict[str, Any]]:
    """Distinct windows: every machine x sensor x minute, values derived from the position."""
    out = []
    for m, s, w in itertools.product(range(machines), range(sensors), range(windows)):
        ws = start + w * 60_000
        mean = m * 10.0 + s + w / 10
        out.append(
            window(
                machine_id=f"m{m}",
                sensor=f"s{s}",
                window_start=ws,
                window_end=ws + 60_000,
                mean=mean,
                sum=mean * 3,
                first_ts=ws,
                last_ts=ws + 59_999,
                emitted_at=ws + 60_500,
            )
        )
    return out


@pytest.fixture()
def make_grid() -> Callable[..., list[dict[str, Any]]]:
    return window_grid


def produce(
    kafka: KafkaSettings, topic: str, items: list[tuple[bytes | None, bytes]]
) -> list[tuple[int, int]]:
    """Produce (key, value) pairs; returns (partition, offset) of each, in order."""
    from confluent_kafka import Producer

    producer = Producer({**kafka.librdkafka(), "linger.ms": 5})
    positions: list[tuple[int, int] | None] = [None] * len(items)
    errors: list[str] = []

    def report(i: int) -> Callable[[Any, Any], None]:
        def cb(err: Any, msg: Any) -> None:
            if err is not None:
                errors.append(str(err))
            else:
                positions[i] = (msg.partition(), msg.offset())

        return cb

    for i, (key, value) in enumerate(items):
        producer.produce(topic, key=key, value=value, on_delivery=report(i))
        producer.poll(0)
    left = producer.flush(30)
    assert left == 0 and not errors, f"produce failed: {left} undelivered, errors {errors[:3]}"
    return [p for p in positions if p is not None]


@pytest.fixture()
def produce_to() -> Callable[..., list[tuple[int, int]]]:
    return produce


def committed(kafka: KafkaSettings, group: str, topic: str, partitions: int) -> dict[int, int]:
    """The group's committed offset per partition (-1001 = none)."""
    from confluent_kafka import Consumer, TopicPartition

    c = Consumer({**kafka.librdkafka(), "group.id": group, "enable.auto.commit": False})
    try:
        tps = c.committed([TopicPartition(topic, p) for p in range(partitions)], timeout=15)
        return {tp.partition: tp.offset for tp in tps}
    finally:
        c.close()


@pytest.fixture()
def committed_offsets() -> Callable[..., dict[int, int]]:
    return committed
