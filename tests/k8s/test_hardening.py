"""Every pod the overlays run is hardened: non-root, no privilege escalation, all capabilities
dropped, RuntimeDefault seccomp, requests and limits, a read-only root filesystem (or a documented
exception), probes on long-running containers, and a grace period for the SIGTERM shutdown."""

from __future__ import annotations

from typing import Any

import pytest

from tests.k8s.conftest import (
    OVERLAY_NAMES,
    REPO,
    millstream_containers,
    of_kind,
    pod_templates,
    workloads,
)

WRITABLE_ROOT = "millstream.io/writable-root-fs"
# Operator-managed pods whose templates the manifests set (hardened by the same rules).
TEMPLATED_CRS = ("ClickHouseInstallation", "ClickHouseKeeperInstallation")
RUN_ONCE = ("Job", "CronJob")


def _pods(objs: list[dict[str, Any]]) -> list[tuple[str, str, dict[str, Any], dict[str, Any]]]:
    out = []
    for obj in workloads(objs) + [o for o in objs if o["kind"] in TEMPLATED_CRS]:
        for label, meta, pod in pod_templates(obj):
            out.append((obj["kind"], label, meta, pod))
    return out


def _flink_resources(objs: list[dict[str, Any]], label: str) -> dict[str, Any] | None:
    """FlinkDeployment containers get requests = limits from jobManager/taskManager.resource."""
    for fd in of_kind(objs, "FlinkDeployment"):
        role = label.rsplit("/", 1)[-1]
        if label.startswith(f"FlinkDeployment/{fd['metadata']['name']}/"):
            resource: dict[str, Any] | None = fd["spec"][role].get("resource")
            return resource
    return None


@pytest.mark.parametrize("overlay", OVERLAY_NAMES)
def test_every_pod_is_hardened(rendered: dict[str, list[dict[str, Any]]], overlay: str) -> None:
    objs = rendered[overlay]
    assert _pods(objs), f"{overlay} runs no pods"
    problems = hardening_problems(objs)
    assert not problems, "\n".join(problems)


def hardening_problems(objs: list[dict[str, Any]]) -> list[str]:
    """What breaks the rules above, one line per pod or container (also for tests/k8s/test_gateways)."""
    problems: list[str] = []
    for kind, label, meta, pod in _pods(objs):
        psc = pod.get("securityContext", {})
        writable_reason = (meta.get("annotations") or {}).get(WRITABLE_ROOT, "").strip()
        containers = [(c, True) for c in pod.get("initContainers", [])] + [
            (c, False) for c in pod.get("containers", [])
        ]
        assert containers, f"{label}: no containers"
        if psc.get("runAsUser") == 0:
            problems.append(f"{label}: pod runs as uid 0")
        if kind not in RUN_ONCE and not pod.get("terminationGracePeriodSeconds"):
            problems.append(f"{label}: no terminationGracePeriodSeconds for the SIGTERM shutdown")
        for c, is_init in containers:
            where = f"{label}/{c['name']}"
            sc = c.get("securityContext", {})
            if not (sc.get("runAsNonRoot") or psc.get("runAsNonRoot")):
                problems.append(f"{where}: runAsNonRoot is not set")
            if sc.get("runAsUser") == 0:
                problems.append(f"{where}: runs as uid 0")
            if sc.get("allowPrivilegeEscalation") is not False:
                problems.append(f"{where}: allowPrivilegeEscalation is not false")
            if sc.get("privileged"):
                problems.append(f"{where}: privileged")
            if "ALL" not in (sc.get("capabilities") or {}).get("drop", []):
                problems.append(f"{where}: capabilities do not drop ALL")
            if (sc.get("capabilities") or {}).get("add"):
                problems.append(f"{where}: adds capabilities")
            seccomp = (sc.get("seccompProfile") or psc.get("seccompProfile") or {}).get("type")
            if seccomp != "RuntimeDefault":
                problems.append(f"{where}: seccompProfile is {seccomp}, not RuntimeDefault")
            if sc.get("readOnlyRootFilesystem") is not True and not writable_reason:
                problems.append(f"{where}: root filesystem writable without a {WRITABLE_ROOT} reason")
            if kind == "FlinkDeployment":
                res = _flink_resources(objs, label) or {}
                if not (res.get("cpu") and res.get("memory")):
                    problems.append(f"{where}: no cpu/memory resource (becomes requests and limits)")
            else:
                res = c.get("resources", {})
                for part in ("requests", "limits"):
                    for key in ("cpu", "memory"):
                        if not (res.get(part) or {}).get(key):
                            problems.append(f"{where}: no {part}.{key}")
            if not is_init and kind not in RUN_ONCE:
                for probe in ("livenessProbe", "readinessProbe"):
                    if not c.get(probe):
                        problems.append(f"{where}: no {probe}")
    return problems


def check_health_probes(objs: list[dict[str, Any]]) -> set[str]:
    """Gateway, stream job and sink: liveness on /healthz, readiness on /readyz (with time for its
    broker check), on the metrics port (sinks.metrics serves both there). Returns the workloads
    checked, which include every Deployment and StatefulSet Prometheus scrapes (also for
    tests/k8s/test_gateways)."""
    checked = set()
    for label, c in millstream_containers(objs):
        if "livenessProbe" not in c and "readinessProbe" not in c:
            continue  # the migrate Job and init containers run once
        ports = {p["name"]: p["containerPort"] for p in c.get("ports", [])}
        assert "metrics" in ports, f"{label}/{c['name']}: no port named metrics"
        assert c["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "metrics"}, label
        assert c["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "metrics"}, label
        # /readyz connects to the broker with a 1-2 s timeout: the probe's default 1 s would cut it off
        assert c["readinessProbe"].get("timeoutSeconds", 1) >= 3, f"{label}: readiness probe timeout"
        checked.add(label)
    scraped = {
        label
        for w in workloads(objs)
        if w["kind"] in ("Deployment", "StatefulSet")
        for label, meta, _ in pod_templates(w)
        if meta.get("labels", {}).get("millstream.io/scrape") == "true"
    }
    assert scraped <= checked, f"no health probes: {sorted(scraped - checked)}"
    return checked


@pytest.mark.parametrize("overlay", OVERLAY_NAMES)
def test_millstream_processes_probe_their_health_endpoints(
    rendered: dict[str, list[dict[str, Any]]], overlay: str
) -> None:
    checked = check_health_probes(rendered[overlay])
    # prod runs no gateway of its own: tests/k8s/test_gateways.py checks the real gateways' probes
    assert "Deployment/sink" in checked, f"{overlay}: expected the sink at least, checked {checked}"


@pytest.mark.parametrize("overlay", OVERLAY_NAMES)
def test_read_only_containers_get_a_writable_tmp(
    rendered: dict[str, list[dict[str, Any]]], overlay: str
) -> None:
    for obj in workloads(rendered[overlay]):
        for label, _, pod in pod_templates(obj):
            volumes = {v["name"]: v for v in pod.get("volumes", [])}
            for c in pod.get("initContainers", []) + pod.get("containers", []):
                if not (c.get("securityContext") or {}).get("readOnlyRootFilesystem"):
                    continue
                mounts = {m["mountPath"]: m["name"] for m in c.get("volumeMounts", [])}
                assert "/tmp" in mounts, f"{label}/{c['name']}: read-only root without a /tmp volume"
                assert "emptyDir" in volumes[mounts["/tmp"]], f"{label}/{c['name']}: /tmp is not an emptyDir"


def test_writable_root_exceptions_are_documented(rendered: dict[str, list[dict[str, Any]]]) -> None:
    """Each pod allowed a writable root filesystem is named in docs/kubernetes.md."""
    doc = (REPO / "docs" / "kubernetes.md").read_text(encoding="utf-8")
    excepted = set()
    for objs in rendered.values():
        for _, label, meta, _ in _pods(objs):
            if WRITABLE_ROOT in (meta.get("annotations") or {}):
                excepted.add(label.split("/")[0])
    assert WRITABLE_ROOT in doc
    for kind in excepted:
        assert kind in doc, f"{kind} has a writable root filesystem but docs/kubernetes.md does not say why"


@pytest.mark.parametrize("overlay", OVERLAY_NAMES)
def test_millstream_pods_do_not_mount_api_tokens(
    rendered: dict[str, list[dict[str, Any]]], overlay: str
) -> None:
    for obj in workloads(rendered[overlay]):
        if obj["kind"] == "FlinkDeployment":
            continue  # the JobManager creates TaskManager pods through the API
        for label, _, pod in pod_templates(obj):
            assert pod.get("automountServiceAccountToken") is False, f"{label} mounts an API token"
