"""A sink killed between write and commit, replayed with other batch cuts, rolls each window up once.

Real broker, real sink processes, real embedded ClickHouse. The first sink writes one batch of windows
and is killed (SIGKILL) before it commits the offsets. The second reads the same records again with a
smaller poll size, so its blocks differ from the first one's and carry other deduplication tokens:
``window_aggregates`` absorbs that (ReplacingMergeTree), the rollups (materialized views that add
every inserted version-0 tumbling window to its buckets) did not, and counted every replayed window
twice (sinks.replays now keeps windows already stored out of the insert).
"""

from __future__ import annotations

import sys
import uuid
from pathlib import Path
from typing import Any

import pytest

from infra.procs import ManagedProcess, wait_until
from schemas.config import KafkaSettings, TopicSettings
from schemas.serde import Serde
from sinks.clickhouse import connect
from sinks.config import ClickHouseSettings

REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.integration

CRASHING_SINK = """
import pathlib, sys, time
from sinks.clickhouse import connect
from sinks.migrations import migrate
from sinks.runner import SinkRunner

marker = pathlib.Path(sys.argv[1])

def written_not_committed(result):
    marker.write_text(str(result.written))
    time.sleep(600)  # killed here: rows written, offsets not committed

client = connect()
migrate(client)
SinkRunner(client, after_write=written_not_committed).run()
"""
TTLS = ("READINGS", "WINDOWS", "ROLLUP_1M", "ROLLUP_1H", "ROLLUP_1D", "EVENTS", "DEAD_LETTERS")


def test_replay_after_a_crash_with_other_batch_cuts_rolls_each_window_up_once(
    kafka: KafkaSettings,
    topics: TopicSettings,
    ch_settings: ClickHouseSettings,
    tmp_path: Path,
    make_grid: Any,
    produce_to: Any,
) -> None:
    windows = make_grid(machines=2, sensors=2, windows=50)
    enc = Serde().encoder("millstream.WindowAggregate", topics.topic_windows)
    produce_to(kafka, topics.topic_windows, [(w["machine_id"].encode(), enc(w)) for w in windows])
    env = {
        "MILLSTREAM_KAFKA_BOOTSTRAP": kafka.kafka_bootstrap,
        "MILLSTREAM_DATA_DIR": str(ch_settings.data_dir),
        "MILLSTREAM_SINK_GROUP_ID": f"crash-{uuid.uuid4().hex[:6]}",
        "MILLSTREAM_KAFKA_SESSION_TIMEOUT_MS": "2000",
        "MILLSTREAM_CLICKHOUSE_BATCH_AGE_MS": "60000",
        "PYTHONPATH": str(REPO),
        **{f"MILLSTREAM_CLICKHOUSE_TTL_{t}_DAYS": "0" for t in TTLS},  # the data is from 2026-01-01
        **{f"MILLSTREAM_{name.upper()}": str(value) for name, value in topics},
    }
    marker = tmp_path / "written"
    crashing = ManagedProcess(
        "crashing-sink",
        [sys.executable, "-c", CRASHING_SINK, str(marker)],
        tmp_path / "crash.log",
        env={**env, "MILLSTREAM_CLICKHOUSE_BATCH_ROWS": "150"},
        cwd=REPO,
    ).start()
    try:

        def wrote() -> bool:
            crashing.check_alive()
            return marker.exists() and marker.read_text() != ""

        wait_until(wrote, 90, "the crashing sink to write a batch")
        crashing.kill()  # SIGKILL: no commit
    finally:
        crashing.stop()
    assert int(marker.read_text()) > 0

    replay_env = {**env, "MILLSTREAM_CLICKHOUSE_BATCH_ROWS": "70", "MILLSTREAM_SINK_MAX_POLL_RECORDS": "30"}
    replay = ManagedProcess(
        "sink",
        [sys.executable, "-m", "infra.cli", "sink", "--exit-when-idle", "4"],
        tmp_path / "sink.log",
        env=replay_env,
        cwd=REPO,
    ).start()
    try:
        wait_until(lambda: not replay.alive(), 180, "the replay to end")
        assert replay.proc is not None and replay.proc.returncode == 0, replay.log_tail()
    finally:
        replay.stop()

    client = connect(ch_settings)
    try:
        assert client.command("SELECT count() FROM window_aggregates FINAL") == len(windows)
        windows_rolled, readings_rolled = client.query(
            "SELECT countMerge(windows), sumMerge(n) FROM rollup_1m"
        ).result_rows[0]
        assert windows_rolled == len(windows)
        assert readings_rolled == sum(w["count"] for w in windows)
    finally:
        client.close()
