"""A dashboard that declares datasource `__inputs` is mapped (GrafanaDashboard `spec.datasources`)
to the datasource names the deployment creates: the GrafanaDatasource resources of k8s/base."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from infra import k8s_sync
from tests.k8s.conftest import OVERLAY_NAMES, of_kind

Objs = list[dict[str, Any]]


@pytest.mark.parametrize("overlay", OVERLAY_NAMES)
def test_mapped_datasource_names_exist(rendered: dict[str, Objs], overlay: str) -> None:
    created = {
        ds["spec"]["datasource"]["type"]: ds["spec"]["datasource"]["name"]
        for ds in of_kind(rendered[overlay], "GrafanaDatasource")
    }
    assert created, "the deployment creates no Grafana datasource"
    for plugin, name in created.items():
        assert k8s_sync.DATASOURCE_NAMES.get(plugin) == name, (plugin, k8s_sync.DATASOURCE_NAMES)


def test_a_dashboard_with_inputs_gets_the_deployed_names(tmp_path: Path) -> None:
    dashboard = {
        "title": "t",
        "__inputs": [
            {"name": "DS_CH", "type": "datasource", "pluginId": "grafana-clickhouse-datasource", "label": "x"}
        ],
    }
    path = tmp_path / "t.json"
    path.write_text(json.dumps(dashboard), encoding="utf-8")
    [doc] = [d for d in yaml.safe_load_all(k8s_sync.render_dashboards([path])) if d]
    [mapping] = doc["spec"]["datasources"]
    deployed = yaml.safe_load(
        (k8s_sync.REPO / "k8s" / "base" / "monitoring" / "grafanadatasource.yaml").read_text(encoding="utf-8")
    )
    assert mapping == {"inputName": "DS_CH", "datasourceName": deployed["spec"]["datasource"]["name"]}
