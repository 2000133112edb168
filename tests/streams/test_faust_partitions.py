"""The Faust worker refuses to start when the readings topic and its state topic are not co-partitioned.

Real broker, real ``millstream run faust`` processes. The local broker cannot add partitions to a
topic (it refuses CreatePartitions), so the readings topic is created with 4 partitions and the
state's changelog with 3: the layout after ``kafka-topics --alter --partitions 4`` on the readings
topic alone. Without the check the worker starts, and dies at the first record of partition 3 with
aiokafka's ``AssertionError: Unrecognized partition``; with several workers, a readings partition and
its state could go to different workers.
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path

from confluent_kafka.admin import AdminClient
from confluent_kafka.cimpl import NewTopic

from infra.procs import free_port
from infra.stack import create_topics
from schemas.config import KafkaSettings, TopicSettings
from streams.partitions import check_copartitioned

REPO = Path(__file__).resolve().parents[2]


def _topics(kafka: KafkaSettings, partitions: int) -> TopicSettings:
    suffix = uuid.uuid4().hex[:8]
    t = TopicSettings(
        topic_readings=f"readings-{suffix}",
        topic_windows=f"windows-{suffix}",
        topic_dead_letters=f"dlq-{suffix}",
        topic_late=f"late-{suffix}",
        topic_spc_signals=f"spc-{suffix}",
        topic_anomalies=f"anomalies-{suffix}",
        topic_partitions=partitions,
    )
    create_topics(kafka, t)
    return t


def _changelog(kafka: KafkaSettings, app_id: str, partitions: int) -> str:
    name = f"{app_id}-window-state-changelog"
    admin = AdminClient({**kafka.librdkafka()})
    futures = admin.create_topics([NewTopic(name, num_partitions=partitions, replication_factor=1)])
    for fut in futures.values():
        fut.result(30)
    return name


def _run_faust(
    kafka: KafkaSettings, topics: TopicSettings, app_id: str, partitions_setting: int, tmp: Path
) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "MILLSTREAM_KAFKA_BOOTSTRAP": kafka.kafka_bootstrap,
        "MILLSTREAM_STREAM_APP_ID": app_id,
        "MILLSTREAM_STREAM_STATE_DIR": str(tmp / "faust"),
        "MILLSTREAM_STREAM_METRICS_PORT": str(free_port()),
        **{f"MILLSTREAM_{k.upper()}": str(v) for k, v in topics},
        "MILLSTREAM_TOPIC_PARTITIONS": str(partitions_setting),
    }
    # Started correctly the worker would run until stopped: the timeout fails the test.
    return subprocess.run(  # noqa: S603 - this interpreter, fixed arguments
        [sys.executable, "-m", "infra.cli", "run", "faust"],
        env=env, cwd=REPO, capture_output=True, text=True, timeout=45, check=False,
    )  # fmt: skip


def test_worker_refuses_more_readings_partitions_than_state_partitions(
    kafka: KafkaSettings, tmp_path: Path
) -> None:
    app_id = f"grow-{uuid.uuid4().hex[:8]}"
    topics = _topics(kafka, 4)  # readings grown from 3 to 4
    changelog = _changelog(kafka, app_id, 3)  # the state topic still has 3
    done = _run_faust(kafka, topics, app_id, 4, tmp_path)
    assert done.returncode == 1, done.stderr[-2000:]
    err = done.stderr
    assert f"the readings topic {topics.topic_readings} has 4 partitions" in err, err[-2000:]
    assert f"state topic {changelog} has 3" in err
    assert 'docs/scaling-out.md, "Adding partitions"' in err
    assert "Traceback" not in err


def test_worker_refuses_a_state_topic_it_would_create_too_small(kafka: KafkaSettings, tmp_path: Path) -> None:
    app_id = f"grow-{uuid.uuid4().hex[:8]}"
    topics = _topics(kafka, 4)  # no state topic yet; the setting says 3
    done = _run_faust(kafka, topics, app_id, 3, tmp_path)
    assert done.returncode == 1, done.stderr[-2000:]
    assert "MILLSTREAM_TOPIC_PARTITIONS is 3" in done.stderr
    assert "Set MILLSTREAM_TOPIC_PARTITIONS=4" in done.stderr


def test_copartitioned_topics_pass(kafka: KafkaSettings) -> None:
    app_id = f"grow-{uuid.uuid4().hex[:8]}"
    topics = _topics(kafka, 3)
    check_copartitioned(kafka, topics, f"{app_id}-window-state-changelog")  # not created yet, count matches
    changelog = _changelog(kafka, app_id, 3)
    check_copartitioned(kafka, topics, changelog)
