"""`make k8s-validate` (python -m infra.k8s_validate) passes, and the validator catches what it
is there to catch: unknown fields, bad values, custom resources without a schema, broken overlays."""

from __future__ import annotations

import copy
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from infra import k8s_validate
from infra.k8s_validate import validate_object, validate_overlay
from tests.k8s.conftest import OVERLAY_NAMES, REPO, named, of_kind

SCHEMAS = k8s_validate.schemas_dir(REPO)
VERSION = k8s_validate.DEFAULT_KUBERNETES_VERSION


def test_k8s_validate_passes_for_every_overlay() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "infra.k8s_validate"], cwd=REPO, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    lines = proc.stdout.splitlines()
    for name in OVERLAY_NAMES:
        assert any(line.startswith(f"ok      {name}: ") for line in lines), proc.stdout
    assert "all valid" in lines[-1]


@pytest.mark.parametrize("overlay", OVERLAY_NAMES)
def test_every_rendered_object_is_valid(rendered: dict[str, list[dict[str, Any]]], overlay: str) -> None:
    errors = [(k8s_validate.object_id(o), validate_object(o, VERSION, SCHEMAS)) for o in rendered[overlay]]
    assert [e for e in errors if e[1]] == []


def test_unknown_field_in_a_builtin_object_is_an_error(rendered: dict[str, list[dict[str, Any]]]) -> None:
    sink = copy.deepcopy(named(rendered["dev"], "Deployment", "sink"))
    sink["spec"]["template"]["spec"]["containers"][0]["livenessprobe"] = {}  # wrong case
    errors = validate_object(sink, VERSION, SCHEMAS)
    assert errors and "livenessprobe" in " ".join(errors)


def test_wrong_type_in_a_builtin_object_is_an_error(rendered: dict[str, list[dict[str, Any]]]) -> None:
    pdb = copy.deepcopy(of_kind(rendered["dev"], "PodDisruptionBudget")[0])
    pdb["spec"]["selector"] = "app=sink"
    assert validate_object(pdb, VERSION, SCHEMAS)


def test_bad_custom_resources_are_errors(rendered: dict[str, list[dict[str, Any]]]) -> None:
    topic = copy.deepcopy(of_kind(rendered["dev"], "KafkaTopic")[0])
    topic["spec"]["partitions"] = 0
    assert any("partitions" in e for e in validate_object(topic, VERSION, SCHEMAS))
    topic = copy.deepcopy(of_kind(rendered["dev"], "KafkaTopic")[0])
    topic["spec"]["retention"] = "7d"  # not a KafkaTopic field
    assert any("retention" in e for e in validate_object(topic, VERSION, SCHEMAS))
    user = copy.deepcopy(of_kind(rendered["dev"], "KafkaUser")[0])
    user["spec"]["authorization"]["acls"][0]["operations"] = ["Eat"]
    assert validate_object(user, VERSION, SCHEMAS)


def test_pod_templates_inside_custom_resources_are_validated(
    rendered: dict[str, list[dict[str, Any]]],
) -> None:
    flink = copy.deepcopy(of_kind(rendered["prod"], "FlinkDeployment")[0])
    flink["spec"]["podTemplate"]["spec"]["containers"][0]["securityContext"]["runAsNonRoot"] = "yes"
    errors = validate_object(flink, VERSION, SCHEMAS)
    assert any(e.startswith("spec/podTemplate:") for e in errors), errors
    chi = copy.deepcopy(of_kind(rendered["dev"], "ClickHouseInstallation")[0])
    chi["spec"]["templates"]["podTemplates"][0]["spec"]["containers"][0]["resources"]["limits"] = "2Gi"
    assert any("podTemplates/0" in e for e in validate_object(chi, VERSION, SCHEMAS))


def test_custom_resource_without_a_schema_is_an_error() -> None:
    obj = {"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w"}, "spec": {}}
    assert "no schema" in validate_object(obj, VERSION, SCHEMAS)[0]


def test_object_without_a_name_is_an_error() -> None:
    assert validate_object({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {}}, VERSION, SCHEMAS)


def test_broken_and_duplicate_overlays_fail(tmp_path: Path) -> None:
    (tmp_path / "kustomization.yaml").write_text("resources: [missing.yaml]\n", encoding="utf-8")
    report = validate_overlay(tmp_path, VERSION, SCHEMAS)
    assert report.errors and "kubectl kustomize" in report.errors[0]

    cm = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: x\ndata:\n  a: '1'\n"
    (tmp_path / "a.yaml").write_text(cm, encoding="utf-8")
    (tmp_path / "kustomization.yaml").write_text("resources: [a.yaml]\n", encoding="utf-8")
    assert validate_overlay(tmp_path, VERSION, SCHEMAS).errors == []
    (tmp_path / "a.yaml").write_text(cm.replace("data:", "dataa:"), encoding="utf-8")
    assert validate_overlay(tmp_path, VERSION, SCHEMAS).errors


def test_missing_schemas_folder_is_a_clear_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rc = k8s_validate.run(schemas=tmp_path / "k8s-schemas")
    assert rc == 2
    err = capsys.readouterr().err
    assert "k8s-schemas" in err and "missing" in err


def test_unknown_overlay_name_is_an_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert k8s_validate.run(["staging-that-does-not-exist"]) == 2
    assert "no overlay named" in capsys.readouterr().err
