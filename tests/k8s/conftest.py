"""Rendered overlays (built once per session with kubectl kustomize) and helpers to read them."""

from __future__ import annotations

import copy
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from infra.k8s_validate import build_overlay, overlays

REPO = Path(__file__).resolve().parents[2]
OVERLAY_NAMES = [p.name for p in overlays(REPO / "k8s" / "overlays")]
WORKLOAD_KINDS = ("Deployment", "StatefulSet", "DaemonSet", "Job", "CronJob", "FlinkDeployment")
MILLSTREAM_IMAGE = "ghcr.io/millstream/millstream"

Obj = dict[str, Any]


@pytest.fixture(scope="session")
def rendered() -> dict[str, list[Obj]]:
    """Every overlay's objects, as `kubectl kustomize` renders them."""
    assert OVERLAY_NAMES, "no overlays in k8s/overlays"
    return {name: build_overlay(REPO / "k8s" / "overlays" / name) for name in OVERLAY_NAMES}


def of_kind(objs: list[Obj], kind: str) -> list[Obj]:
    return [o for o in objs if o["kind"] == kind]


def named(objs: list[Obj], kind: str, name: str) -> Obj:
    found = [o for o in of_kind(objs, kind) if o["metadata"]["name"] == name]
    assert len(found) == 1, f"expected one {kind}/{name}, found {len(found)}"
    return found[0]


def config_env(objs: list[Obj]) -> dict[str, str]:
    """The MILLSTREAM_* settings every component reads (ConfigMap millstream-config)."""
    return dict(named(objs, "ConfigMap", "millstream-config")["data"])


def _merge_containers(base: list[Obj], extra: list[Obj]) -> list[Obj]:
    out = [copy.deepcopy(c) for c in base]
    for c in extra:
        same = [o for o in out if o.get("name") == c.get("name")]
        if same:
            same[0].update(copy.deepcopy(c))
        else:
            out.append(copy.deepcopy(c))
    return out


def pod_templates(obj: Obj) -> Iterator[tuple[str, Obj, Obj]]:
    """(label, pod metadata, pod spec) of every pod a workload runs.

    FlinkDeployment: the shared podTemplate merged with the JobManager's and the TaskManagers'
    templates (by container name, as the operator merges them).
    """
    kind, spec = obj["kind"], obj["spec"]
    name = f"{kind}/{obj['metadata']['name']}"
    if kind == "CronJob":
        tpl = spec["jobTemplate"]["spec"]["template"]
        yield name, tpl.get("metadata", {}), tpl["spec"]
    elif kind == "FlinkDeployment":
        shared = spec.get("podTemplate", {})
        for role in ("jobManager", "taskManager"):
            own = spec[role].get("podTemplate", {})
            meta = {**shared.get("metadata", {}), **own.get("metadata", {})}
            pod = {
                **shared.get("spec", {}),
                **{k: v for k, v in own.get("spec", {}).items() if k != "containers"},
            }
            pod["containers"] = _merge_containers(
                shared.get("spec", {}).get("containers", []), own.get("spec", {}).get("containers", [])
            )
            yield f"{name}/{role}", meta, pod
    elif kind in ("ClickHouseInstallation", "ClickHouseKeeperInstallation"):
        for tpl in spec.get("templates", {}).get("podTemplates", []):
            yield f"{name}/{tpl['name']}", tpl.get("metadata", {}), tpl["spec"]
    else:
        tpl = spec["template"]
        yield name, tpl.get("metadata", {}), tpl["spec"]


def workloads(objs: list[Obj]) -> list[Obj]:
    return [o for o in objs if o["kind"] in WORKLOAD_KINDS]


def millstream_containers(objs: list[Obj]) -> Iterator[tuple[str, Obj]]:
    """(workload, container) for every container running the Millstream image (init ones too)."""
    for w in workloads(objs):
        for label, _, pod in pod_templates(w):
            for c in pod.get("initContainers", []) + pod.get("containers", []):
                if str(c.get("image", "")).startswith(MILLSTREAM_IMAGE):
                    yield label, c


def env_value(container: Obj, name: str) -> Obj | None:
    """The env entry `name` of a container (value or valueFrom), None when absent."""
    found: list[Obj] = [e for e in container.get("env", []) if e["name"] == name]
    return found[0] if found else None


def settings_from_env(monkeypatch: pytest.MonkeyPatch, env: dict[str, str], cls: type) -> Any:
    """Build a settings class exactly as a pod with this environment would."""
    for key in list(os.environ):
        if key.startswith("MILLSTREAM_"):
            monkeypatch.delenv(key)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    return cls()
