"""``millstream dead-letters replay``: chosen dead letters go back to their topics, byte for byte.

Real broker. The scenario is the runbook's: ClickHouse refused windows (``sink_rejected``), the
schema was fixed, the windows are replayed to the windows topic; other reasons, a payload the stage
cut short and a gateway's MQTT message stay where they are.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from schemas.config import KafkaSettings, TopicSettings
from schemas.exceptions import ConfigError
from schemas.serde import Serde
from sinks.redrive import Selection, parse_time_ms, replay_dead_letters

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
T0 = 1_767_225_600_000  # 2026-01-01T00:00:00Z


def _dead_letter(topics: TopicSettings, **overrides: Any) -> dict[str, Any]:
    return {
        "stage": "sink", "topic": topics.topic_windows, "partition": 0, "offset": 0, "key": b"m1",
        "payload": b"", "reason_code": "sink_rejected", "reason": "window_aggregates: value out of range",
        "failed_at": T0, **overrides,
    }  # fmt: skip


def _read(kafka: KafkaSettings, topic: str, settle_s: float = 3.0) -> list[tuple[bytes | None, bytes]]:
    """Every (key, value) of ``topic``: read until nothing came for ``settle_s`` (no group)."""
    from confluent_kafka import Consumer, TopicPartition

    c = Consumer({**kafka.librdkafka(), "group.id": "test-read", "enable.auto.commit": False})
    out: list[tuple[bytes | None, bytes]] = []
    try:
        parts = c.list_topics(topic, timeout=10).topics[topic].partitions
        c.assign([TopicPartition(topic, p, 0) for p in parts])
        while (msg := c.poll(settle_s)) is not None:
            if not msg.error():
                out.append((msg.key(), msg.value() or b""))
    finally:
        c.close()
    return out


def test_chosen_dead_letters_go_back_byte_for_byte(
    kafka: KafkaSettings, topics: TopicSettings, produce_to: Any, make_grid: Any
) -> None:
    serde = Serde()
    enc = serde.encoder("millstream.WindowAggregate", topics.topic_windows)
    windows = make_grid(machines=2, sensors=1, windows=2)  # 4 windows ClickHouse refused
    refused = [
        _dead_letter(topics, offset=i, key=w["machine_id"].encode(), payload=enc(w), failed_at=T0 + i * 1000)
        for i, w in enumerate(windows)
    ]
    others = [
        _dead_letter(topics, offset=10, reason_code="decode_error", payload=b"\x07garbage"),
        _dead_letter(
            topics,
            offset=11,
            payload=b"\x00" * 16,  # cut short by the stage
            reason="too big [payload truncated to its first 524288 of 900000 bytes]",
        ),  # fmt: skip
        _dead_letter(topics, stage="gateway", topic="plant/line1/press-7", reason_code="sink_rejected"),
    ]
    dl_enc = serde.encoder("millstream.DeadLetter", topics.topic_dead_letters)
    produce_to(kafka, topics.topic_dead_letters, [(None, dl_enc(d)) for d in refused + others])

    # A dry run counts and produces nothing.
    dry = replay_dead_letters(Selection(("sink_rejected",)), dry_run=True, kafka=kafka, topics=topics)
    assert (dry.read, dry.selected, dry.replayed, dry.cut_short, dry.not_kafka) == (7, 6, 4, 1, 1)
    assert _read(kafka, topics.topic_windows) == []

    # From the third refused window on (by when they were dead-lettered).
    later = Selection(("sink_rejected",), stage="sink", since_ms=T0 + 2000)
    summary = replay_dead_letters(later, kafka=kafka, topics=topics)
    assert summary.to_dict()["replayed_by_topic"] == {topics.topic_windows: 2}
    got = sorted(_read(kafka, topics.topic_windows))
    assert got == sorted((d["key"], d["payload"]) for d in refused[2:])
    assert sorted(serde.decode(v).record["window_start"] for _, v in got) == sorted(
        w["window_start"] for w in windows[2:]
    )


def test_the_command_prints_its_summary_and_refuses_bad_times(
    kafka: KafkaSettings, topics: TopicSettings
) -> None:
    env = {
        "PATH": "/usr/bin:/bin",
        "MILLSTREAM_KAFKA_BOOTSTRAP": kafka.kafka_bootstrap,
        "MILLSTREAM_TOPIC_DEAD_LETTERS": topics.topic_dead_letters,
        "MILLSTREAM_TOPIC_WINDOWS": topics.topic_windows,
    }
    run = [sys.executable, "-m", "infra.cli", "dead-letters", "replay", "--reason", "sink_rejected"]
    ok = subprocess.run([*run, "--dry-run"], cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert ok.returncode == 0, ok.stderr
    assert json.loads(ok.stdout) == {
        "dry_run": True, "read": 0, "selected": 0, "replayed": 0, "skipped_cut_short": 0,
        "skipped_not_from_kafka": 0, "undecodable_dead_letters": 0, "replayed_by_topic": {},
    }  # fmt: skip
    bad = subprocess.run(
        [*run, "--since", "yesterday"], cwd=REPO, env=env, capture_output=True, text=True, timeout=60
    )
    assert bad.returncode == 1 and "Traceback" not in bad.stderr
    assert "--since: 'yesterday' is not an ISO 8601 time" in bad.stderr
    with pytest.raises(ConfigError):
        parse_time_ms("23/11/2026", "--until")
    assert (
        parse_time_ms("2026-01-01T01:00:00+01:00", "--since") == T0 == parse_time_ms("2026-01-01T00:00", "x")
    )
