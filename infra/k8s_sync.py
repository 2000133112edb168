"""Kubernetes resources generated from files that live elsewhere in ``infra/``.

* ``k8s/base/monitoring/prometheusrule.yaml``: a PrometheusRule whose ``spec.groups`` are the groups
  of ``infra/prometheus/rules.yml`` (the rules the local stack's Prometheus loads).
* ``k8s/base/monitoring/grafanadashboards.yaml``: one GrafanaDashboard (grafana-operator) per
  ``infra/grafana/dashboards/*.json``, the dashboard JSON embedded verbatim.

kustomize cannot read files outside the kustomization root under ``kubectl apply -k``, so the
resources are written into ``k8s/`` and kept equal to their sources: ``python -m infra.k8s_sync``
(or ``python -m infra.k8s_validate --sync``) rewrites them; ``make k8s-validate`` and the tests fail
while they are stale.
"""

from __future__ import annotations

import json
import logging
import re
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from schemas.exceptions import MillstreamError

logger = logging.getLogger(__name__)

REPO = Path(__file__).resolve().parents[1]
RULES_SOURCE = Path("infra/prometheus/rules.yml")
DASHBOARDS_SOURCE = Path("infra/grafana/dashboards")
RULE_TARGET = Path("k8s/base/monitoring/prometheusrule.yaml")
DASHBOARDS_TARGET = Path("k8s/base/monitoring/grafanadashboards.yaml")

# grafana-operator: the Grafana instances that take these dashboards carry this label.
GRAFANA_INSTANCE_LABELS = {"dashboards": "grafana"}
DASHBOARD_FOLDER = "Millstream"
# Datasource names in Grafana for the dashboards' `__inputs` (plugin id -> datasource name): the
# ClickHouse one is the GrafanaDatasource in k8s/base/monitoring/grafanadatasource.yaml; Prometheus is
# the one the Grafana instance brings (kube-prometheus-stack names it so).
DATASOURCE_NAMES = {"prometheus": "Prometheus", "grafana-clickhouse-datasource": "ClickHouse (Millstream)"}

_HEADER = "# Generated from {source} by `python -m infra.k8s_sync`. Do not edit: edit the source.\n"


class ManifestError(MillstreamError):
    """The Kubernetes manifests cannot be generated, built or validated."""


class _Dumper(yaml.SafeDumper):  # type: ignore[misc]
    """Block style for multi-line strings (rule expressions, dashboard JSON)."""


def deployed_config(prefix: str = "") -> dict[str, str]:
    """The literals of the deployment's ``millstream-config`` config map (k8s/base) whose names start
    with ``prefix``: the settings a job gets when deployed, for tests and benchmarks that run it so."""
    doc = yaml.safe_load((REPO / "k8s" / "base" / "kustomization.yaml").read_text(encoding="utf-8"))
    (cm,) = [g for g in doc["configMapGenerator"] if g["name"] == "millstream-config"]
    pairs = (lit.split("=", 1) for lit in cm["literals"])
    return {k: v for k, v in pairs if k.startswith(prefix)}


def _str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _str)


def dump(doc: Any) -> str:
    """One YAML document, keys in their given order."""
    return str(yaml.dump(doc, Dumper=_Dumper, sort_keys=False, allow_unicode=True, width=110))


# ------------------------------------------------------------------------------------------ rules
def render_prometheus_rule(rules_text: str, source: str = str(RULES_SOURCE)) -> str:
    """The PrometheusRule resource for a Prometheus rules file (its ``groups``, unchanged)."""
    try:
        rules = yaml.safe_load(rules_text)
    except yaml.YAMLError as exc:
        msg = f"{source} is not valid YAML: {exc}"
        raise ManifestError(msg) from exc
    if not isinstance(rules, dict) or not isinstance(rules.get("groups"), list) or not rules["groups"]:
        msg = f"{source} has no rule groups (a Prometheus rules file is `groups: [...]`)"
        raise ManifestError(msg)
    resource = {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "PrometheusRule",
        "metadata": {"name": "millstream", "labels": {"app.kubernetes.io/name": "millstream-rules"}},
        "spec": {"groups": rules["groups"]},
    }
    return _HEADER.format(source=source) + dump(resource)


# ------------------------------------------------------------------------------------------ dashboards
def dashboard_name(path: Path) -> str:
    """A DNS-1123 resource name for a dashboard file."""
    stem = re.sub(r"[^a-z0-9-]+", "-", path.stem.lower()).strip("-")
    return f"millstream-{stem}"[:63].rstrip("-")


def render_dashboards(paths: Sequence[Path], source: str = str(DASHBOARDS_SOURCE)) -> str:
    """GrafanaDashboard resources, one per dashboard JSON file (sorted by name).

    Without dashboard files the result is an empty List, so the kustomization still builds.
    """
    header = _HEADER.format(source=f"{source}/*.json")
    if not paths:
        return header + dump({"apiVersion": "v1", "kind": "List", "items": []})
    docs = []
    for path in sorted(paths, key=lambda p: p.name):
        text = path.read_text(encoding="utf-8")
        try:
            model = json.loads(text)
        except json.JSONDecodeError as exc:
            msg = f"{path} is not valid JSON: {exc}"
            raise ManifestError(msg) from exc
        spec: dict[str, Any] = {
            "instanceSelector": {"matchLabels": dict(GRAFANA_INSTANCE_LABELS)},
            "allowCrossNamespaceImport": True,
            "folder": DASHBOARD_FOLDER,
            "resyncPeriod": "10m",
        }
        inputs = [
            i
            for i in model.get("__inputs", [])
            if isinstance(i, dict) and i.get("type") == "datasource" and i.get("name")
        ]
        if inputs:
            spec["datasources"] = [
                {
                    "inputName": i["name"],
                    "datasourceName": DATASOURCE_NAMES.get(str(i.get("pluginId")), str(i.get("label", ""))),
                }
                for i in inputs
            ]
        spec["json"] = text if text.endswith("\n") else text + "\n"
        docs.append(
            {
                "apiVersion": "grafana.integreatly.org/v1beta1",
                "kind": "GrafanaDashboard",
                "metadata": {"name": dashboard_name(path)},
                "spec": spec,
            }
        )
    return header + "---\n".join(dump(d) for d in docs)


# ------------------------------------------------------------------------------------------ files
def expected(repo: Path = REPO) -> dict[Path, str]:
    """Each generated file (absolute path) and the content its sources call for."""
    rules = repo / RULES_SOURCE
    if not rules.is_file():
        msg = f"{rules} not found: the PrometheusRule is generated from it"
        raise ManifestError(msg)
    dashboards = sorted((repo / DASHBOARDS_SOURCE).glob("*.json"))
    return {
        repo / RULE_TARGET: render_prometheus_rule(rules.read_text(encoding="utf-8")),
        repo / DASHBOARDS_TARGET: render_dashboards(dashboards),
    }


def stale(repo: Path = REPO) -> list[Path]:
    """Generated files that are missing or differ from what their sources call for."""
    return [
        path
        for path, text in expected(repo).items()
        if not path.is_file() or path.read_text(encoding="utf-8") != text
    ]


def sync(repo: Path = REPO) -> list[Path]:
    """Rewrite the stale generated files; returns the paths written."""
    written = []
    for path, text in expected(repo).items():
        if path.is_file() and path.read_text(encoding="utf-8") == text:
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        written.append(path)
    return written


def main() -> int:
    try:
        written = sync()
    except ManifestError as exc:
        print(f"k8s-sync: error: {exc}", file=sys.stderr)
        return 1
    for path in written:
        print(f"wrote {path.relative_to(REPO)}")
    if not written:
        print("generated manifests are up to date")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
