"""``python -m infra.k8s_validate``: build every kustomize overlay and validate every object.

* Each ``k8s/overlays/*`` is built with ``kubectl kustomize`` (kubectl's built-in kustomize).
* Built-in kinds are validated with kubernetes-validate against the OpenAPI schemas of one
  Kubernetes version (``--kubernetes-version``, default 1.30), in strict mode: unknown fields fail.
* Custom resources are validated against the JSON schemas in ``../shared/k8s-schemas``
  (``<group>/<kind>_<version>.json``); a custom resource without a schema there is an error.
* Pod templates embedded in custom resources (FlinkDeployment, ClickHouse(Keeper)Installation) are
  also validated as core ``v1/Pod`` objects.
* Every container that gets ``MILLSTREAM_*`` variables (from ``envFrom`` ConfigMaps of the overlay
  and its own ``env``) gets only names some setting reads (a typo is otherwise silent: the setting
  keeps its default), and values every settings class accepts (:mod:`infra.settings`); values from
  Secrets are not known here and stand in as ``x``.
* The generated resources (PrometheusRule, GrafanaDashboards; :mod:`infra.k8s_sync`) must be
  up to date; ``--sync`` rewrites them first.

Prints one summary line per overlay and every error; exits 1 on any error, 2 when the tools or the
schemas are missing.
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import yaml

from infra import k8s_sync
from infra.k8s_sync import ManifestError

logger = logging.getLogger(__name__)

REPO = k8s_sync.REPO
OVERLAYS = REPO / "k8s" / "overlays"
DEFAULT_KUBERNETES_VERSION = "1.30"

# API groups served by Kubernetes itself ("" is the core group).
_BUILTIN_GROUPS = {
    "",
    "apps",
    "batch",
    "policy",
    "autoscaling",
    "networking.k8s.io",
    "rbac.authorization.k8s.io",
    "storage.k8s.io",
    "scheduling.k8s.io",
    "coordination.k8s.io",
    "discovery.k8s.io",
    "admissionregistration.k8s.io",
    "apiextensions.k8s.io",
    "certificates.k8s.io",
    "node.k8s.io",
    "events.k8s.io",
}


def schemas_dir(repo: Path = REPO) -> Path:
    """The CRD JSON schemas: the folder ``shared/k8s-schemas`` beside the repository."""
    return repo.parent / "shared" / "k8s-schemas"


def find_kubectl() -> str:
    """kubectl on PATH, else beside this Python (a wheel-installed kubectl)."""
    found = shutil.which("kubectl") or shutil.which("kubectl", path=str(Path(sys.executable).parent))
    if not found:
        msg = (
            "kubectl not found on PATH (it builds the overlays with its built-in kustomize); install kubectl"
        )
        raise ManifestError(msg)
    return found


def overlays(root: Path = OVERLAYS) -> list[Path]:
    """Every overlay folder (one with a kustomization.yaml)."""
    return sorted(p for p in root.iterdir() if (p / "kustomization.yaml").is_file())


def build_overlay(path: Path, kubectl: str | None = None) -> list[dict[str, Any]]:
    """The objects ``kubectl kustomize <path>`` renders."""
    kubectl = kubectl or find_kubectl()
    proc = subprocess.run(
        [kubectl, "kustomize", str(path)], capture_output=True, text=True, timeout=120, check=False
    )
    if proc.returncode != 0:
        msg = f"kubectl kustomize {path} failed:\n{proc.stderr.strip()}"
        raise ManifestError(msg)
    return [doc for doc in yaml.safe_load_all(proc.stdout) if doc]


def split_api_version(api_version: str) -> tuple[str, str]:
    """``apps/v1`` -> (``apps``, ``v1``); ``v1`` -> (``""``, ``v1``)."""
    group, _, version = api_version.rpartition("/")
    return group, version


def object_id(obj: dict[str, Any]) -> str:
    meta = obj.get("metadata") or {}
    ns = f"{meta['namespace']}/" if meta.get("namespace") else ""
    return f"{obj.get('kind')}/{ns}{meta.get('name')}"


# ------------------------------------------------------------------------------------------ validators
@cache
def _crd_validator(path: Path) -> Any:
    import jsonschema

    schema = json.loads(path.read_text(encoding="utf-8"))
    cls = jsonschema.validators.validator_for(schema, default=jsonschema.Draft7Validator)
    return cls(schema)


def _path(error: Any) -> str:
    return "/".join(str(p) for p in error.absolute_path) or "(root)"


def validate_builtin(obj: dict[str, Any], kubernetes_version: str) -> list[str]:
    """Errors of a built-in object against the Kubernetes OpenAPI schema (strict)."""
    import kubernetes_validate

    try:
        kubernetes_validate.validate(obj, kubernetes_version, strict=True)
    except kubernetes_validate.ValidationError as exc:
        return [f"{_path(exc)}: {exc.message}"]
    except kubernetes_validate.SchemaNotFoundError as exc:
        return [exc.message]
    return []


def validate_custom(obj: dict[str, Any], schemas: Path) -> list[str]:
    """Errors of a custom resource against ``schemas/<group>/<kind>_<version>.json``."""
    group, version = split_api_version(str(obj.get("apiVersion", "")))
    schema = schemas / group / f"{str(obj.get('kind', '')).lower()}_{version}.json"
    if not schema.is_file():
        return [f"no schema for {obj.get('apiVersion')} {obj.get('kind')} (looked for {schema})"]
    validator = _crd_validator(schema)
    errors = sorted(validator.iter_errors(obj), key=lambda e: list(map(str, e.absolute_path)))
    return [f"{_path(e)}: {e.message}" for e in errors]


def embedded_pod_templates(obj: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    """(where, pod) for the pod templates a custom resource carries."""
    kind, spec = obj.get("kind"), obj.get("spec") or {}
    if kind == "FlinkDeployment":
        for where, holder in (("spec", spec), ("spec/jobManager", spec.get("jobManager") or {})):
            if holder.get("podTemplate"):
                yield f"{where}/podTemplate", holder["podTemplate"]
        if (spec.get("taskManager") or {}).get("podTemplate"):
            yield "spec/taskManager/podTemplate", spec["taskManager"]["podTemplate"]
    elif kind in ("ClickHouseInstallation", "ClickHouseKeeperInstallation"):
        for i, tpl in enumerate((spec.get("templates") or {}).get("podTemplates") or []):
            pod = {"metadata": tpl.get("metadata") or {}, "spec": tpl.get("spec") or {}}
            yield f"spec/templates/podTemplates/{i}", pod


def validate_object(obj: dict[str, Any], kubernetes_version: str, schemas: Path) -> list[str]:
    """Every error of one rendered object (schema errors, embedded pod templates)."""
    if not isinstance(obj, dict) or not obj.get("apiVersion") or not obj.get("kind"):
        return ["not a Kubernetes object (apiVersion and kind are required)"]
    if not (obj.get("metadata") or {}).get("name"):
        return ["metadata.name is missing"]
    group, _ = split_api_version(str(obj["apiVersion"]))
    if group in _BUILTIN_GROUPS:
        return validate_builtin(obj, kubernetes_version)
    errors = validate_custom(obj, schemas)
    for where, pod in embedded_pod_templates(obj):
        meta = {**(pod.get("metadata") or {}), "name": (pod.get("metadata") or {}).get("name") or "template"}
        as_pod = {"apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": pod.get("spec") or {}}
        errors += [f"{where}: {e}" for e in validate_builtin(as_pod, kubernetes_version)]
    return errors


# ------------------------------------------------------------------------------------------ settings
UNKNOWN_VALUE = "x"


def _containers(node: Any) -> Iterator[dict[str, Any]]:
    """Every container (init ones too) anywhere in an object: workloads and custom resources alike."""
    if isinstance(node, dict):
        for key in ("initContainers", "containers"):
            if isinstance(node.get(key), list):
                yield from (c for c in node[key] if isinstance(c, dict))
        for value in node.values():
            yield from _containers(value)
    elif isinstance(node, list):
        for item in node:
            yield from _containers(item)


def container_env(container: dict[str, Any], config_maps: dict[str, dict[str, str]]) -> dict[str, str]:
    """The environment a container starts with, as far as the manifests tell (Secret values: ``x``)."""
    env: dict[str, str] = {}
    for src in container.get("envFrom") or []:
        ref = (src or {}).get("configMapRef") or {}
        env.update({str(k): str(v) for k, v in config_maps.get(str(ref.get("name")), {}).items()})
    for entry in container.get("env") or []:
        if "value" in entry:
            env[str(entry["name"])] = str(entry["value"])
        elif "valueFrom" in entry:
            env[str(entry["name"])] = UNKNOWN_VALUE
    return env


def settings_errors(env: dict[str, str]) -> list[str]:
    """Unknown ``MILLSTREAM_*`` names and values a settings class refuses, one line each."""
    from unittest import mock

    from pydantic import ValidationError
    from pydantic_settings import SettingsError

    from infra.cli import format_settings_error, settings_source_error
    from infra.settings import PREFIX, settings_classes, unknown_env_names

    ours = {k: v for k, v in env.items() if k.upper().startswith(PREFIX)}
    if not ours:
        return []
    errors = [
        f"{name} is not a Millstream setting" + (f" (did you mean {close}?)" if close else "")
        for name, close in unknown_env_names(ours)
    ]
    # Settings classes read os.environ: give them exactly this container's variables.
    with mock.patch.dict("os.environ", ours, clear=True):
        for cls in settings_classes():
            try:
                cls()
            except ValidationError as exc:
                errors += [line.strip() for line in format_settings_error(exc).splitlines()]
            except SettingsError as exc:
                errors.append(settings_source_error(exc).strip())
    return errors


def check_settings(objects: Sequence[dict[str, Any]]) -> list[str]:
    """Settings errors of every container of the rendered objects, as ``kind/name/container: error``."""
    config_maps = {
        str(o["metadata"]["name"]): dict(o.get("data") or {})
        for o in objects
        if o.get("kind") == "ConfigMap" and (o.get("metadata") or {}).get("name")
    }
    errors: list[str] = []
    for obj in objects:
        for c in _containers(obj.get("spec") or {}):
            for err in settings_errors(container_env(c, config_maps)):
                errors.append(f"{object_id(obj)}/{c.get('name')}: {err}")
    return errors


# ------------------------------------------------------------------------------------------ run
@dataclass
class OverlayReport:
    """What one overlay rendered and what was wrong with it."""

    name: str
    kinds: Counter[str] = field(default_factory=Counter)
    errors: list[str] = field(default_factory=list)

    @property
    def objects(self) -> int:
        return sum(self.kinds.values())


def validate_overlay(
    path: Path, kubernetes_version: str, schemas: Path, kubectl: str | None = None
) -> OverlayReport:
    report = OverlayReport(path.name)
    try:
        objects = build_overlay(path, kubectl)
    except ManifestError as exc:
        report.errors.append(str(exc))
        return report
    seen: set[str] = set()
    for obj in objects:
        ident = object_id(obj)
        report.kinds[str(obj.get("kind"))] += 1
        if ident in seen:
            report.errors.append(f"{ident}: defined twice")
        seen.add(ident)
        report.errors += [f"{ident}: {e}" for e in validate_object(obj, kubernetes_version, schemas)]
    report.errors += check_settings(objects)
    if not objects:
        report.errors.append("the overlay renders no objects")
    return report


def check_prerequisites(repo: Path, schemas: Path) -> str:
    """kubectl's path; raises when kubectl or the CRD schemas are missing."""
    kubectl = find_kubectl()
    if not schemas.is_dir() or not any(schemas.glob("*/*.json")):
        msg = (
            f"CRD schemas folder {schemas} is missing or empty; it must sit beside the repository "
            "as shared/k8s-schemas with <group>/<kind>_<version>.json files"
        )
        raise ManifestError(msg)
    return kubectl


def run(
    names: Sequence[str] = (),
    kubernetes_version: str = DEFAULT_KUBERNETES_VERSION,
    schemas: Path | None = None,
    sync: bool = False,
    repo: Path = REPO,
) -> int:
    schemas = schemas or schemas_dir(repo)
    try:
        kubectl = check_prerequisites(repo, schemas)
        if sync:
            for path in k8s_sync.sync(repo):
                print(f"wrote {path.relative_to(repo)}")
        stale = [str(p.relative_to(repo)) for p in k8s_sync.stale(repo)]
    except ManifestError as exc:
        print(f"k8s-validate: error: {exc}", file=sys.stderr)
        return 2
    paths = overlays(repo / "k8s" / "overlays")
    if names:
        unknown = sorted(set(names) - {p.name for p in paths})
        if unknown:
            print(f"k8s-validate: error: no overlay named {', '.join(unknown)}", file=sys.stderr)
            return 2
        paths = [p for p in paths if p.name in names]
    failed = False
    if stale:
        failed = True
        print(f"STALE   {', '.join(stale)}: run `python -m infra.k8s_validate --sync`")
    for path in paths:
        report = validate_overlay(path, kubernetes_version, schemas, kubectl)
        kinds = ", ".join(f"{n} {k}" for k, n in sorted(report.kinds.items()))
        status = "FAIL" if report.errors else "ok"
        print(f"{status:<7} {report.name}: {report.objects} objects, {len(report.errors)} errors ({kinds})")
        for err in report.errors:
            print(f"        {err}")
        failed = failed or bool(report.errors)
    print(
        f"k8s-validate: {len(paths)} overlays, Kubernetes {kubernetes_version} (strict), "
        f"CRD schemas {schemas}: {'FAILED' if failed else 'all valid'}"
    )
    return 1 if failed else 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m infra.k8s_validate",
        description="Build every kustomize overlay and validate every object.",
    )
    parser.add_argument("overlay", nargs="*", help="overlay names (default: all in k8s/overlays)")
    parser.add_argument(
        "--kubernetes-version",
        default=DEFAULT_KUBERNETES_VERSION,
        help=f"Kubernetes version of the schemas (default {DEFAULT_KUBERNETES_VERSION})",
    )
    parser.add_argument(
        "--schemas", type=Path, default=None, help="CRD schemas folder (default ../shared/k8s-schemas)"
    )
    parser.add_argument("--sync", action="store_true", help="regenerate the generated manifests first")
    args = parser.parse_args(argv)
    return run(args.overlay, args.kubernetes_version, args.schemas, args.sync)


if __name__ == "__main__":
    raise SystemExit(main())
