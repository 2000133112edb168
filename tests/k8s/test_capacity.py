"""What a cluster must offer, as docs/kubernetes.md states it, matches the manifests: the resource
requests of every pod the overlay starts (operator-made pods included: Kafka, ClickHouse, Keeper,
the Flink JobManager and TaskManagers), the node count that hard spreading needs, and the node
labels that rack awareness and spreading read."""

from __future__ import annotations

import math
import re
from typing import Any

import pytest

from tests.k8s.conftest import OVERLAY_NAMES, REPO, of_kind

Objs = list[dict[str, Any]]
DOC = REPO / "docs" / "kubernetes.md"
_UNITS = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "k": 1e3, "M": 1e6, "G": 1e9}


def _cpu(value: Any) -> float:
    text = str(value)
    return float(text[:-1]) / 1000 if text.endswith("m") else float(text)


def _bytes(value: Any) -> float:
    text = str(value)
    for unit, factor in _UNITS.items():
        if text.endswith(unit):
            return float(text[: -len(unit)]) * factor
    return float(text)


def _flink_bytes(value: Any) -> float:
    """Flink's memory sizes: `2048m` is 2048 MiB (Flink's units are binary; `m` is mebibytes)."""
    m = re.fullmatch(r"(\d+(?:\.\d+)?)\s*([kmgt]?)b?", str(value).strip().lower())
    assert m, value
    number, unit = float(m.group(1)), m.group(2)
    return number * 1024 ** ("kmgt".index(unit) + 1) if unit else number


def requests(objs: Objs) -> tuple[float, float]:
    """(CPU cores, bytes) requested by every pod the overlay starts, at the replica counts it starts."""
    cpu = mem = 0.0

    def add(n: int, res: dict[str, Any]) -> None:
        nonlocal cpu, mem
        cpu += n * _cpu(res["cpu"])
        mem += n * _bytes(res["memory"])

    for o in objs:
        kind, spec = o["kind"], o.get("spec", {})
        if kind in ("Deployment", "StatefulSet"):
            for c in spec["template"]["spec"]["containers"]:
                add(spec.get("replicas", 1), c["resources"]["requests"])
        elif kind == "KafkaNodePool":
            add(spec["replicas"], spec["resources"]["requests"])
        elif kind == "Kafka":
            for part in ("topicOperator", "userOperator"):
                add(1, spec["entityOperator"][part]["resources"]["requests"])
            add(1, spec["kafkaExporter"]["resources"]["requests"])
        elif kind in ("ClickHouseInstallation", "ClickHouseKeeperInstallation"):
            layout = spec["configuration"]["clusters"][0]["layout"]
            n = layout.get("shardsCount", 1) * layout["replicasCount"]
            for c in spec["templates"]["podTemplates"][0]["spec"]["containers"]:
                add(n, c["resources"]["requests"])
        elif kind == "FlinkDeployment":
            slots = int(spec["flinkConfiguration"]["taskmanager.numberOfTaskSlots"])
            tms = math.ceil(spec["job"]["parallelism"] / slots)
            for n, role in ((spec["jobManager"].get("replicas", 1), "jobManager"), (tms, "taskManager")):
                res = spec[role]["resource"]
                cpu += n * float(res["cpu"])
                mem += n * _flink_bytes(res["memory"])
    return cpu, mem


def _hard_spread(objs: Objs) -> tuple[set[str], int]:
    """(topology keys, largest replica count) of the DoNotSchedule spreads, and rack awareness keys."""
    keys: set[str] = set()
    most = 1
    for pool in of_kind(objs, "KafkaNodePool"):
        for tsc in pool["spec"].get("template", {}).get("pod", {}).get("topologySpreadConstraints", []):
            if tsc["whenUnsatisfiable"] == "DoNotSchedule":
                keys.add(tsc["topologyKey"])
                most = max(most, pool["spec"]["replicas"])
    for chk in of_kind(objs, "ClickHouseKeeperInstallation"):
        for tsc in chk["spec"]["templates"]["podTemplates"][0]["spec"].get("topologySpreadConstraints", []):
            if tsc["whenUnsatisfiable"] == "DoNotSchedule":
                keys.add(tsc["topologyKey"])
                most = max(most, chk["spec"]["configuration"]["clusters"][0]["layout"]["replicasCount"])
    for kafka in of_kind(objs, "Kafka"):
        rack = kafka["spec"]["kafka"].get("rack")
        if rack:
            keys.add(rack["topologyKey"])
    return keys, most


@pytest.mark.parametrize("overlay", OVERLAY_NAMES)
def test_documented_capacity_covers_the_requests(rendered: dict[str, Objs], overlay: str) -> None:
    doc = DOC.read_text(encoding="utf-8")
    m = re.search(rf"{overlay}: about ([\d.]+) CPU and ([\d.]+) GiB of requests", doc)
    assert m, f"docs/kubernetes.md does not state what the {overlay} overlay requests"
    cpu, mem = requests(rendered[overlay])
    doc_cpu, doc_gib = float(m.group(1)), float(m.group(2))
    cpu, gib = round(cpu, 2), round(mem / 2**30, 2)
    assert cpu <= doc_cpu <= cpu * 1.1 + 0.1, (overlay, cpu, doc_cpu)
    assert gib <= doc_gib <= gib * 1.1 + 0.1, (overlay, gib, doc_gib)


@pytest.mark.parametrize("overlay", OVERLAY_NAMES)
def test_documented_nodes_and_labels(rendered: dict[str, Objs], overlay: str) -> None:
    doc = DOC.read_text(encoding="utf-8")
    keys, nodes = _hard_spread(rendered[overlay])
    for key in keys - {"kubernetes.io/hostname"}:  # set by the kubelet on every node
        assert f"`{key}`" in doc, f"{overlay} needs nodes labelled {key}; docs/kubernetes.md does not say"
    if nodes > 1:
        assert f"{overlay}: at least {nodes} nodes" in doc, f"{overlay} needs {nodes} nodes"


def test_flink_memory_units() -> None:
    """Flink's `2048m` (FlinkDeployment resource) is 2 GiB, not 2.048 bytes as in Kubernetes."""
    assert _flink_bytes("2048m") == 2 * 2**30
    assert _flink_bytes("4g") == 4 * 2**30
    assert _bytes("384Mi") == 384 * 2**20


@pytest.mark.parametrize("overlay", OVERLAY_NAMES)
def test_replicas_of_a_clickhouse_shard_run_on_different_nodes(
    rendered: dict[str, Objs], overlay: str
) -> None:
    """Replication protects nothing if the replicas share a node: the Altinity operator's
    ShardAntiAffinity (one replica of a shard per node, required) must be set when there are several."""
    for chi in of_kind(rendered[overlay], "ClickHouseInstallation"):
        layout = chi["spec"]["configuration"]["clusters"][0]["layout"]
        if layout["replicasCount"] < 2:
            continue
        for tpl in chi["spec"]["templates"]["podTemplates"]:
            spread = {(d.get("type"), d.get("topologyKey")) for d in tpl.get("podDistribution", [])}
            assert ("ShardAntiAffinity", "kubernetes.io/hostname") in spread, f"{overlay}: {tpl['name']}"
