"""KafkaTopic resources declare exactly the topics the code uses, laid out as the code's settings
say (schemas.config.TopicSettings, read from the overlay's own MILLSTREAM_* environment)."""

from __future__ import annotations

from typing import Any

import pytest

from schemas.config import TopicSettings
from streams.config import StreamSettings
from tests.k8s.conftest import OVERLAY_NAMES, config_env, of_kind, settings_from_env


def _topics(objs: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    out = {}
    for t in of_kind(objs, "KafkaTopic"):
        name = t["spec"].get("topicName", t["metadata"]["name"])
        assert name not in out, f"topic {name} declared twice"
        out[name] = t
    return out


@pytest.mark.parametrize("overlay", OVERLAY_NAMES)
def test_pipeline_topics_match_topic_settings(
    rendered: dict[str, list[dict[str, Any]]], overlay: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    objs = rendered[overlay]
    settings: TopicSettings = settings_from_env(monkeypatch, config_env(objs), TopicSettings)
    topics = _topics(objs)
    kafka = of_kind(objs, "Kafka")[0]["metadata"]["name"]
    for name in settings.all_topics():
        assert name in topics, f"{overlay}: no KafkaTopic for {name}"
        spec = topics[name]["spec"]
        assert spec["partitions"] == settings.topic_partitions, name
        assert spec["replicas"] == settings.topic_replication, name
        assert int(spec["config"]["retention.ms"]) == settings.topic_retention_ms, name
        assert spec["config"].get("cleanup.policy", "delete") == "delete", name
        assert topics[name]["metadata"]["labels"]["strimzi.io/cluster"] == kafka
    internal = set(topics) - set(settings.all_topics())
    app_id = settings_from_env(monkeypatch, config_env(objs), StreamSettings).app_id
    assert all(t.startswith(f"{app_id}-") for t in internal), f"{overlay}: unexpected topics {internal}"


@pytest.mark.parametrize("overlay", OVERLAY_NAMES)
def test_faust_changelog_topic_is_compacted(
    rendered: dict[str, list[dict[str, Any]]], overlay: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Faust keeps the window state in `<app_id>-window-state-changelog` (table "window-state"),
    one partition per readings partition; compaction keeps the latest snapshot per key."""
    objs = rendered[overlay]
    env = config_env(objs)
    faust = [
        s
        for s in of_kind(objs, "StatefulSet")
        if s["spec"]["template"]["spec"]["containers"][0].get("args", [])[:2] == ["run", "faust"]
    ]
    topics = _topics(objs)
    app_id = settings_from_env(monkeypatch, env, StreamSettings).app_id
    settings: TopicSettings = settings_from_env(monkeypatch, env, TopicSettings)
    changelog = f"{app_id}-window-state-changelog"
    if not faust:
        assert changelog not in topics, f"{overlay} runs no Faust job but declares {changelog}"
        return
    assert changelog in topics, f"{overlay}: Faust's changelog topic {changelog} is missing"
    spec = topics[changelog]["spec"]
    assert spec["config"]["cleanup.policy"] == "compact"
    assert "retention.ms" not in spec["config"], "a retention would delete live window state"
    assert spec["partitions"] == settings.topic_partitions
    assert spec["replicas"] == settings.topic_replication


def test_prod_has_more_partitions_and_replicas_than_dev(
    rendered: dict[str, list[dict[str, Any]]], monkeypatch: pytest.MonkeyPatch
) -> None:
    dev: TopicSettings = settings_from_env(monkeypatch, config_env(rendered["dev"]), TopicSettings)
    prod: TopicSettings = settings_from_env(monkeypatch, config_env(rendered["prod"]), TopicSettings)
    assert prod.topic_partitions > dev.topic_partitions
    assert prod.topic_replication == 3
    kafka = of_kind(rendered["prod"], "Kafka")[0]["spec"]["kafka"]["config"]
    assert kafka["min.insync.replicas"] == 2
    brokers = sum(
        p["spec"]["replicas"]
        for p in of_kind(rendered["prod"], "KafkaNodePool")
        if "broker" in p["spec"]["roles"]
    )
    assert brokers == 3
