"""`make k8s-validate` checks the MILLSTREAM_* settings each container gets from the overlay: names
no setting reads (a typo would silently keep the default) and values the settings classes refuse."""

from __future__ import annotations

import copy
import os
from pathlib import Path
from typing import Any

import pytest

from infra import k8s_validate
from infra.k8s_validate import check_settings, validate_overlay
from tests.k8s.conftest import OVERLAY_NAMES, REPO, named, of_kind

Objs = list[dict[str, Any]]
SCHEMAS = k8s_validate.schemas_dir(REPO)
VERSION = k8s_validate.DEFAULT_KUBERNETES_VERSION


@pytest.mark.parametrize("overlay", OVERLAY_NAMES)
def test_every_container_gets_known_and_valid_settings(rendered: dict[str, Objs], overlay: str) -> None:
    assert check_settings(rendered[overlay]) == []


def test_a_mistyped_name_in_the_config_map_is_an_error(rendered: dict[str, Objs]) -> None:
    objs = copy.deepcopy(rendered["dev"])
    named(objs, "ConfigMap", "millstream-config")["data"]["MILLSTREAM_STREAM_APPID"] = "other"
    errors = check_settings(objs)
    # every container reading the ConfigMap is told, with the name meant
    assert any(e.startswith("StatefulSet/millstream/windows/windows: ") for e in errors), errors
    assert any(e.startswith("Deployment/millstream/sink/sink: ") for e in errors), errors
    assert all("MILLSTREAM_STREAM_APPID is not a Millstream setting" in e for e in errors), errors
    assert "did you mean MILLSTREAM_STREAM_APP_ID?" in errors[0]


def test_bad_values_are_errors_naming_the_variable(rendered: dict[str, Objs]) -> None:
    objs = copy.deepcopy(rendered["prod"])
    named(objs, "ConfigMap", "millstream-config")["data"]["MILLSTREAM_TOPIC_PARTITIONS"] = "twelve"
    errors = check_settings(objs)
    assert errors and all("MILLSTREAM_TOPIC_PARTITIONS='twelve'" in e for e in errors), errors

    objs = copy.deepcopy(rendered["prod"])
    [fd] = of_kind(objs, "FlinkDeployment")
    container = fd["spec"]["podTemplate"]["spec"]["containers"][0]
    container["env"].append({"name": "MILLSTREAM_FLINK_DELIVERY", "value": "twice"})
    errors = check_settings(objs)
    assert len(errors) == 1 and errors[0].startswith(
        "FlinkDeployment/millstream/windows/flink-main-container: "
    )
    assert "MILLSTREAM_FLINK_DELIVERY='twice'" in errors[0]


def test_secret_values_stand_in_and_the_environment_is_left_alone(rendered: dict[str, Objs]) -> None:
    sink = named(rendered["dev"], "Deployment", "sink")["spec"]["template"]["spec"]["containers"][0]
    env = k8s_validate.container_env(sink, {})
    assert env["MILLSTREAM_KAFKA_PASSWORD"] == k8s_validate.UNKNOWN_VALUE  # from the KafkaUser Secret
    assert env["MILLSTREAM_SINK_METRICS_PORT"] == "9102"
    before = dict(os.environ)
    k8s_validate.settings_errors({"MILLSTREAM_TOPIC_PARTITIONS": "7"})
    assert dict(os.environ) == before


def test_validate_overlay_reports_settings_errors(tmp_path: Path) -> None:
    (tmp_path / "app.yaml").write_text(
        """apiVersion: apps/v1
kind: Deployment
metadata: {name: app}
spec:
  selector: {matchLabels: {app: app}}
  template:
    metadata: {labels: {app: app}}
    spec:
      containers:
        - name: app
          image: ghcr.io/millstream/millstream:0.1.0
          args: [sink]
          envFrom: [{configMapRef: {name: cfg}}]
          env: [{name: MILLSTREAM_SINK_METRICS_PORT, value: "99999"}]
""",
        encoding="utf-8",
    )
    (tmp_path / "kustomization.yaml").write_text(
        "resources: [app.yaml]\n"
        "configMapGenerator:\n"
        "  - name: cfg\n"
        "    options: {disableNameSuffixHash: true}\n"
        "    literals: [MILLSTREAM_KAFKA_BOOTSTRAPS=kafka:9092]\n",
        encoding="utf-8",
    )
    errors = validate_overlay(tmp_path, VERSION, SCHEMAS).errors
    assert any("MILLSTREAM_KAFKA_BOOTSTRAPS is not a Millstream setting" in e for e in errors), errors
    assert any("MILLSTREAM_SINK_METRICS_PORT='99999'" in e for e in errors), errors
