"""The PrometheusRule is infra/prometheus/rules.yml and the GrafanaDashboards are
infra/grafana/dashboards/*.json, in every overlay; the generator keeps them so."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml

from infra import k8s_sync
from infra.k8s_sync import ManifestError
from tests.k8s.conftest import OVERLAY_NAMES, REPO, named, of_kind

MINIMAL_RULES = """\
groups:
  - name: example.rules
    rules:
      - record: job:up:sum
        expr: sum by (job) (up)
      - alert: Down
        expr: |
          up == 0
        for: 1m
        labels: {severity: warning}
        annotations: {summary: "{{ $labels.instance }} is down"}
"""


def test_generated_files_are_up_to_date() -> None:
    stale = k8s_sync.stale(REPO)
    assert not stale, f"stale: {stale}; run python -m infra.k8s_validate --sync"


@pytest.mark.parametrize("overlay", OVERLAY_NAMES)
def test_prometheus_rule_equals_the_rules_file(
    rendered: dict[str, list[dict[str, Any]]], overlay: str
) -> None:
    rules = yaml.safe_load((REPO / k8s_sync.RULES_SOURCE).read_text(encoding="utf-8"))
    resources = of_kind(rendered[overlay], "PrometheusRule")
    assert len(resources) == 1
    assert resources[0]["spec"]["groups"] == rules["groups"]


@pytest.mark.parametrize("overlay", OVERLAY_NAMES)
def test_every_dashboard_ships_as_a_grafana_dashboard(
    rendered: dict[str, list[dict[str, Any]]], overlay: str
) -> None:
    files = sorted((REPO / k8s_sync.DASHBOARDS_SOURCE).glob("*.json"))
    assert files, "no dashboards in infra/grafana/dashboards"
    shipped = of_kind(rendered[overlay], "GrafanaDashboard")
    assert len(shipped) == len(files)
    for path in files:
        resource = named(rendered[overlay], "GrafanaDashboard", k8s_sync.dashboard_name(path))
        assert json.loads(resource["spec"]["json"]) == json.loads(path.read_text(encoding="utf-8"))
        assert resource["spec"]["instanceSelector"]["matchLabels"]


def _tmp_repo(tmp_path: Path, rules: str, dashboards: dict[str, Any]) -> Path:
    (tmp_path / "infra/prometheus").mkdir(parents=True)
    (tmp_path / "infra/prometheus/rules.yml").write_text(rules, encoding="utf-8")
    (tmp_path / "infra/grafana/dashboards").mkdir(parents=True)
    for name, model in dashboards.items():
        (tmp_path / "infra/grafana/dashboards" / name).write_text(
            json.dumps(model, indent=2), encoding="utf-8"
        )
    return tmp_path


def test_sync_writes_then_detects_drift(tmp_path: Path) -> None:
    repo = _tmp_repo(tmp_path, MINIMAL_RULES, {"Plant Overview.json": {"title": "Plant", "panels": []}})
    written = k8s_sync.sync(repo)
    assert sorted(p.name for p in written) == ["grafanadashboards.yaml", "prometheusrule.yaml"]
    assert k8s_sync.stale(repo) == []
    assert k8s_sync.sync(repo) == []  # idempotent

    rule = yaml.safe_load((repo / k8s_sync.RULE_TARGET).read_text(encoding="utf-8"))
    assert rule["kind"] == "PrometheusRule"
    assert rule["spec"]["groups"] == yaml.safe_load(MINIMAL_RULES)["groups"]
    dashboards = list(yaml.safe_load_all((repo / k8s_sync.DASHBOARDS_TARGET).read_text(encoding="utf-8")))
    assert [d["metadata"]["name"] for d in dashboards] == ["millstream-plant-overview"]
    assert json.loads(dashboards[0]["spec"]["json"]) == {"title": "Plant", "panels": []}

    (repo / k8s_sync.RULES_SOURCE).write_text(MINIMAL_RULES.replace("1m", "5m"), encoding="utf-8")
    assert k8s_sync.stale(repo) == [repo / k8s_sync.RULE_TARGET]


def test_dashboard_inputs_map_to_datasources(tmp_path: Path) -> None:
    model = {"title": "x", "__inputs": [{"name": "DS_PROM", "type": "datasource", "pluginId": "prometheus"}]}
    repo = _tmp_repo(tmp_path, MINIMAL_RULES, {"x.json": model})
    k8s_sync.sync(repo)
    [dashboard] = yaml.safe_load_all((repo / k8s_sync.DASHBOARDS_TARGET).read_text(encoding="utf-8"))
    assert dashboard["spec"]["datasources"] == [{"inputName": "DS_PROM", "datasourceName": "Prometheus"}]


def test_no_dashboards_renders_an_empty_list(tmp_path: Path) -> None:
    repo = _tmp_repo(tmp_path, MINIMAL_RULES, {})
    k8s_sync.sync(repo)
    assert yaml.safe_load((repo / k8s_sync.DASHBOARDS_TARGET).read_text(encoding="utf-8"))["items"] == []


@pytest.mark.parametrize("text", ["groups: []\n", "rules: []\n", "groups: [\n"])
def test_a_rules_file_without_groups_is_refused(text: str) -> None:
    with pytest.raises(ManifestError):
        k8s_sync.render_prometheus_rule(text)


def test_missing_rules_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ManifestError, match="rules.yml not found"):
        k8s_sync.expected(tmp_path)


def test_bad_dashboard_json_is_refused(tmp_path: Path) -> None:
    repo = _tmp_repo(tmp_path, MINIMAL_RULES, {})
    (repo / "infra/grafana/dashboards/bad.json").write_text("{", encoding="utf-8")
    with pytest.raises(ManifestError, match="not valid JSON"):
        k8s_sync.expected(repo)


def test_generated_dashboards_build_with_kustomize(tmp_path: Path) -> None:
    """The real generated file is a valid kustomize resource on its own."""
    shutil.copy(REPO / k8s_sync.DASHBOARDS_TARGET, tmp_path / "d.yaml")
    (tmp_path / "kustomization.yaml").write_text("resources: [d.yaml]\n", encoding="utf-8")
    from infra.k8s_validate import build_overlay

    objs = build_overlay(tmp_path)
    assert {o["kind"] for o in objs} == {"GrafanaDashboard"}
