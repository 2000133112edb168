"""``--max-values-per-s`` on the store-and-forward path (every opcua/mqtt gateway): it used to do
nothing there, since the forwarder's tracked sends bypass the producer's token bucket."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from infra.procs import wait_until
from ingest.config import ProducerSettings, SpoolSettings
from ingest.forwarder import DEAD_LETTERS, READINGS, Forwarder
from ingest.spool import Spool
from schemas.config import KafkaSettings, TopicSettings
from schemas.serde import Serde

RATE, BURST, N = 500.0, 100, 2000


def _readings(topic: str, n: int) -> list[bytes]:
    encode = Serde().encoder("Reading", topic)
    now = time.time_ns() // 1_000_000
    return [
        encode(
            {
                "plant": "p1",
                "line": "l1",
                "machine_id": "m1",
                "sensor": "pressure",
                "unit": "bar",
                "event_time": now + i,
                "value": float(i),
                "quality": "GOOD",
                "gateway_id": "g",
                "seq": i,
                "lot_id": None,
            }
        )
        for i in range(n)
    ]


@pytest.mark.integration
@pytest.mark.parametrize("path", ["live", "replay"])
def test_the_rate_limit_holds_for_live_and_replayed_messages(
    path: str,
    kafka: KafkaSettings,
    topics: TopicSettings,
    tmp_path: Path,
    read_topic: Callable[..., list[dict[str, Any]]],
) -> None:
    spool = SpoolSettings(dir=tmp_path / "spool")
    messages = _readings(topics.topic_readings, N)
    if path == "replay":  # left by an earlier run: replayed at start
        held = Spool(spool).open()
        for value in messages:
            held.append(READINGS, b"m1", value)
        held.close()
    kinds = {READINGS: topics.topic_readings, DEAD_LETTERS: topics.topic_dead_letters}
    limit = ProducerSettings(max_values_per_s=RATE, burst_values=BURST)
    t0 = time.monotonic()
    forwarder = Forwarder(kafka, kinds, spool, limit).start()
    try:
        if path == "live":
            for value in messages:
                assert forwarder.submit(READINGS, b"m1", value)
        wait_until(lambda: forwarder.link.totals()[1] >= N, 30, f"{N} acknowledgements")
        elapsed = time.monotonic() - t0
    finally:
        report = forwarder.close()
    records = read_topic(kafka, topics.topic_readings, N, timeout_s=30)
    assert [r["seq"] for r in records] == list(range(N))
    assert report.acknowledged == N and report.pending == 0
    # A token bucket admits at most BURST + RATE * t values in t seconds: N values need
    # (N - BURST) / RATE seconds at least. A lower bound the limit guarantees, not a speed goal.
    assert elapsed >= (N - BURST) / RATE
    assert forwarder.throttled_s > 0
