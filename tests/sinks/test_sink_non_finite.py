"""A window with a NaN or infinite statistic is a dead letter, not a row that spoils the rollups.

Real broker, real sink runner, real embedded ClickHouse. The rollups sum every version-0 tumbling window
into its minute, hour and day buckets (AggregatingMergeTree): one NaN there makes the bucket NaN for
good (until a rebuild), and an infinite sum makes the bucket's mean and std meaningless. The window
operator never emits such a window from valid readings, but a reading of 1e308 sums to infinity and
the windows topic may carry anything; the sink must stop it at the door with the reason.
"""

from __future__ import annotations

import math
import uuid
from typing import Any

import pytest
from sink_data import T0

from schemas.config import KafkaSettings, TopicSettings
from schemas.serde import Serde
from sinks.config import ClickHouseSettings, SinkSettings
from sinks.runner import SinkRunner

pytestmark = pytest.mark.integration


def test_non_finite_window_statistics_are_dead_letters_and_rollups_stay_finite(
    kafka: KafkaSettings,
    topics: TopicSettings,
    ch: Any,
    ch_settings: ClickHouseSettings,
    make_window: Any,
    produce_to: Any,
) -> None:
    good = [make_window(window_start=T0 + i * 10_000, window_end=T0 + (i + 1) * 10_000) for i in range(3)]
    bad = [
        make_window(window_start=T0 + 30_000, window_end=T0 + 40_000, sum=math.inf, mean=math.inf),
        make_window(window_start=T0 + 40_000, window_end=T0 + 50_000, mean=math.nan, std=math.nan),
        make_window(window_start=T0 + 50_000, window_end=T0 + 60_000, max=-math.inf),
        make_window(window_start=T0 + 60_000, window_end=T0 + 70_000, p95=math.nan),
    ]
    enc = Serde().encoder("millstream.WindowAggregate", topics.topic_windows)
    positions = produce_to(kafka, topics.topic_windows, [(b"m1", enc(w)) for w in good + bad])
    runner = SinkRunner(
        ch,
        clickhouse=ch_settings,
        sink=SinkSettings(group_id=f"nf-{uuid.uuid4().hex[:6]}"),
        kafka=kafka,
        topics=topics,
        exit_when_idle=3.0,
    )
    runner.run()

    assert ch.command("SELECT count() FROM window_aggregates FINAL") == len(good)
    dead = ch.query(
        "SELECT partition, offset, reason_code, reason FROM dead_letters FINAL ORDER BY partition, offset"
    ).result_rows
    assert sorted((p, o) for p, o, _, _ in dead) == sorted(positions[len(good) :])
    assert {code for _, _, code, _ in dead} == {"invalid_record"}
    assert all("is not finite" in reason for *_, reason in dead)
    # The rollups hold the good windows only: 3 windows x 3 readings, sums 6.0 each (make_window).
    windows, n, total, mean = ch.query(
        "SELECT windows, count, sum, mean FROM v_rollup_1h WHERE machine_id = 'm1'"
    ).result_rows[0]
    assert (windows, n, total) == (3, 9, 18.0)
    assert math.isfinite(mean)
