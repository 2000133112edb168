"""The Faust job reads missed offsets back with a second, group-less consumer
(streams.faust_app.read_range). librdkafka still looks up the coordinator of the `group.id` it is
configured with, which needs Describe on that group: the job's KafkaUser must grant it, or every
catch-up read logs group-authorization errors."""

from __future__ import annotations

from typing import Any

import confluent_kafka
import pytest

from schemas.config import KafkaSettings, TopicSettings
from streams import faust_app
from tests.k8s.conftest import config_env, named, of_kind, settings_from_env
from tests.k8s.test_wiring import _acl_ops

Objs = list[dict[str, Any]]


class _RecordingConsumer:
    """Stands in for confluent_kafka.Consumer: keeps the configuration, delivers nothing."""

    seen: list[dict[str, Any]] = []

    def __init__(self, conf: dict[str, Any]) -> None:
        self.seen.append(dict(conf))

    def assign(self, partitions: Any) -> None:
        self.partitions = partitions

    def poll(self, timeout: float) -> None:
        return None

    def close(self) -> None:
        return None


def test_faust_user_may_use_the_catch_up_group(
    rendered: dict[str, Objs], monkeypatch: pytest.MonkeyPatch
) -> None:
    objs = rendered["dev"]
    assert of_kind(objs, "StatefulSet"), "dev runs the Faust job"
    env = {
        **config_env(objs),
        "MILLSTREAM_KAFKA_USERNAME": "millstream-windows",
        "MILLSTREAM_KAFKA_PASSWORD": "x",
    }
    kafka: KafkaSettings = settings_from_env(monkeypatch, env, KafkaSettings)
    topics: TopicSettings = settings_from_env(monkeypatch, env, TopicSettings)
    monkeypatch.setattr(confluent_kafka, "Consumer", _RecordingConsumer)
    _RecordingConsumer.seen.clear()
    faust_app.read_range(kafka, topics.topic_readings, 0, 10, 20, timeout_s=0.0)
    [conf] = _RecordingConsumer.seen
    user = named(objs, "KafkaUser", "millstream-windows")
    assert conf["sasl.username"] == "millstream-windows"
    assert "Describe" in _acl_ops(user, "group", conf["group.id"]), conf["group.id"]
    assert "Read" in _acl_ops(user, "topic", topics.topic_readings)
