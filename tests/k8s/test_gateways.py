"""The optional real gateways (k8s/components/gateway-opcua, gateway-mqtt) in a throwaway overlay, as
docs/kubernetes.md ("Real gateways (OPC UA, MQTT)") tells a plant to write it: the base, the
component, the gateway's file in a generated ConfigMap and its certificates in a generated Secret.
Rendered with kubectl kustomize and checked like the repository's overlays (schemas, settings,
hardening), then: the file the pod mounts loads with the gateway's own loader, its certificate paths
lie in the Secret's read-only mount, the pod is a Kafka client with a user allowed to write what a
gateway writes, and the network policies let it reach its device port and nothing else new. The
same for the prod overlay with both gateways added, which is where the checks of gateways that the
overlay tests ran on the simulator (probes, upgrade order) run for prod; the simulator
(k8s/components/simulator) is dev's only."""

from __future__ import annotations

import base64
import os
import shutil
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml
from pydantic import BaseModel

from infra.cli import build_parser
from infra.k8s_validate import DEFAULT_KUBERNETES_VERSION, build_overlay, schemas_dir, validate_overlay
from ingest.mqtt_config import MqttConfig
from ingest.opcua_config import OpcUaConfig
from ingest.settings_sources import Problems
from schemas.config import TopicSettings
from tests.ingest.pki import certificate, opcua_application, rsa_key, write_cert, write_key
from tests.k8s.conftest import (
    MILLSTREAM_IMAGE,
    OVERLAY_NAMES,
    REPO,
    millstream_containers,
    named,
    of_kind,
    pod_templates,
    settings_from_env,
    workloads,
)
from tests.k8s.test_hardening import check_health_probes, hardening_problems
from tests.k8s.test_upgrade_order import check_readers_before_writers, upgrade_steps
from tests.k8s.test_wiring import _acl_ops

Obj = dict[str, Any]

OPCUA_FILE = """\
gateway_id: opcua-press-hall
endpoint: opc.tcp://10.20.0.5:4840/
namespaces: {plant: "urn:acme:plc"}
plant: p1
line: l1
nodes:
  - node_id: "ns={plant};s=Press1.Temperature"
    machine: m001
    sensor: temperature
    unit: "[degF]"
security:
  policy: Basic256Sha256
  cert_file: /etc/millstream/opcua/gateway.der
  key_file: /etc/millstream/opcua/gateway.key
  server_certificate: /etc/millstream/opcua/server.der
"""

MQTT_FILE = """\
gateway_id: mqtt-hall-2
host: broker.plant.example
port: 8883
client_id: millstream-mqtt-hall-2
topics:
  - pattern: "plant/{plant}/line/{line}/machine/{machine}/{sensor}"
tls:
  ca_file: /etc/millstream/mqtt/ca.pem
  cert_file: /etc/millstream/mqtt/gateway.pem
  key_file: /etc/millstream/mqtt/gateway.key
"""


def _opcua_certs(folder: Path) -> list[Path]:
    cert, key = opcua_application("millstream-gateway", "urn:acme:millstream:press-hall", client=True)
    server, _ = opcua_application("PLC-7", "urn:acme:plc-7", client=False)
    return [
        write_cert(folder / "gateway.der", cert),
        write_key(folder / "gateway.key", key),
        write_cert(folder / "server.der", server),
    ]


def _mqtt_certs(folder: Path) -> list[Path]:
    ca_key = rsa_key()
    ca = certificate("plant CA", ca_key, ca=True)
    key = rsa_key()
    cert = certificate("millstream-gateway", key, ("plant CA", ca_key))
    return [
        write_cert(folder / "ca.pem", ca),
        write_cert(folder / "gateway.pem", cert),
        write_key(folder / "gateway.key", key),
    ]


# docs/kubernetes.md, "Passwords": a file with a password goes into a Secret the volume points at.
FILE_IN_A_SECRET = """\
apiVersion: apps/v1
kind: Deployment
metadata:
  name: gateway-{kind}
spec:
  template:
    spec:
      volumes:
        - name: config
          configMap: null
          secret:
            secretName: millstream-gateway-{kind}-file
            defaultMode: 0440
"""

# docs/kubernetes.md, "Network": the device port only towards the plant network.
NARROW_EGRESS = """\
- op: add
  path: /spec/egress/0/to
  value: [{ipBlock: {cidr: 10.20.0.0/16}}]
"""

# case -> (component, the gateway's file, its certificates, the file in a Secret)
GATEWAYS = {
    "opcua": ("opcua", OPCUA_FILE, _opcua_certs, False),
    "mqtt": ("mqtt", MQTT_FILE, _mqtt_certs, False),
    "mqtt-password": ("mqtt", MQTT_FILE + "username: gateway\npassword: s3cret\n", _mqtt_certs, True),
}


def _add_gateway(overlay: Path, kustomization: dict[str, Any], case: str, folder: str = "") -> None:
    """What docs/kubernetes.md tells a plant to add to its overlay for one gateway: the component,
    the gateway's file in a generated ConfigMap (or Secret), its certificates in a generated Secret.
    ``folder``: where in the overlay its files go (two gateways' certificates share names)."""
    kind, text, make_certs, in_secret = GATEWAYS[case]
    where = overlay / folder
    where.mkdir(parents=True, exist_ok=True)
    (where / f"{kind}-gateway.yaml").write_text(text, encoding="utf-8")
    certs = make_certs(where)
    prefix = f"{folder}/" if folder else ""
    file_entry = {"files": [f"gateway.yaml={prefix}{kind}-gateway.yaml"]}
    k = kustomization
    k.setdefault("components", []).append(
        os.path.relpath(REPO / "k8s" / "components" / f"gateway-{kind}", overlay)
    )
    k.setdefault("secretGenerator", []).append(
        {
            "name": f"millstream-gateway-{kind}-certs",
            "files": [f"{c.name}={prefix}{c.name}" if prefix else c.name for c in certs],
        }
    )
    k.setdefault("patches", [])
    if case == "opcua":
        target = {"kind": "NetworkPolicy", "name": f"gateway-{kind}-devices"}
        k["patches"].append({"target": target, "patch": NARROW_EGRESS})
    if in_secret:
        k["secretGenerator"].append({"name": f"millstream-gateway-{kind}-file", **file_entry})
        k["patches"].append({"patch": FILE_IN_A_SECRET.format(kind=kind)})
    else:
        k.setdefault("configMapGenerator", []).append({"name": f"millstream-gateway-{kind}", **file_entry})


def _overlay(tmp_path: Path, case: str) -> Path:
    """The overlay a plant writes, in tmp_path (kustomize wants the repository's folders relative)."""
    overlay = tmp_path / "overlay"
    overlay.mkdir()
    kustomization: dict[str, Any] = {
        "apiVersion": "kustomize.config.k8s.io/v1beta1",
        "kind": "Kustomization",
        "namespace": "millstream",
        "resources": [os.path.relpath(REPO / "k8s" / "base", overlay)],
        "images": [{"name": "millstream", "newName": MILLSTREAM_IMAGE, "newTag": "0.1.0"}],
    }
    _add_gateway(overlay, kustomization, case)
    (overlay / "kustomization.yaml").write_text(yaml.safe_dump(kustomization), encoding="utf-8")
    return overlay


def _prod_with_gateways(tmp_path: Path, cases: list[str]) -> Path:
    """k8s/overlays/prod with real gateways added to it, as docs/kubernetes.md ("Deploy: prod")
    tells a plant to do: a copy of the overlay's folder whose kustomization gains the components."""
    overlay = tmp_path / "prod"
    shutil.copytree(REPO / "k8s" / "overlays" / "prod", overlay)
    kustomization = yaml.safe_load((overlay / "kustomization.yaml").read_text(encoding="utf-8"))
    for key in ("resources", "components"):
        kustomization[key] = [
            os.path.relpath((REPO / "k8s" / "overlays" / "prod" / r).resolve(), overlay)
            if r.startswith("../")
            else r
            for r in kustomization[key]
        ]
    for case in cases:
        _add_gateway(overlay, kustomization, case, folder=case)
    (overlay / "kustomization.yaml").write_text(yaml.safe_dump(kustomization), encoding="utf-8")
    return overlay


def _materialize(pod: Obj, container: Obj, objs: list[Obj], root: Path) -> dict[str, Obj]:
    """Write the ConfigMap and Secret volumes the container mounts under ``root`` (as the kubelet
    would under /); returns mount path -> its volume."""
    volumes = {v["name"]: v for v in pod["volumes"]}
    mounted: dict[str, Obj] = {}
    for m in container["volumeMounts"]:
        volume = volumes[m["name"]]
        mounted[m["mountPath"]] = volume
        if "configMap" in volume:
            data = {
                k: v.encode()
                for k, v in named(objs, "ConfigMap", volume["configMap"]["name"])["data"].items()
            }
        elif "secret" in volume:
            secret = named(objs, "Secret", volume["secret"]["secretName"])
            data = {k: base64.b64decode(v) for k, v in secret["data"].items()}
        else:
            continue
        folder = root / m["mountPath"].lstrip("/")
        folder.mkdir(parents=True)
        for key, value in data.items():
            (folder / key).write_bytes(value)
    return mounted


def _admits(policies: list[Obj], labels: dict[str, str], port: int) -> list[str]:
    """The NetworkPolicies selecting a pod with ``labels`` whose egress admits TCP ``port`` to any
    address outside the cluster (a rule without `to`, or with an ipBlock)."""
    found = []
    for p in policies:
        spec = p["spec"]
        selector = spec["podSelector"].get("matchLabels", {})
        if "Egress" not in spec["policyTypes"] or any(labels.get(k) != v for k, v in selector.items()):
            continue
        for rule in spec.get("egress", []):
            outside = not rule.get("to") or any("ipBlock" in peer for peer in rule["to"])
            ports = rule.get("ports") or [{"protocol": "TCP"}]
            admitted = any(
                e.get("protocol", "TCP") == "TCP"
                and ("port" not in e or e["port"] == port or e["port"] <= port <= e.get("endPort", e["port"]))
                for e in ports
            )
            if outside and admitted:
                found.append(p["metadata"]["name"])
    return found


def _render(overlay: Path) -> list[Obj]:
    """The overlay's objects, after the checks every shipped overlay passes (schemas, settings, hardening)."""
    report = validate_overlay(overlay, DEFAULT_KUBERNETES_VERSION, schemas_dir(REPO))
    assert not report.errors, "\n".join(report.errors)
    objs = build_overlay(overlay)
    problems = hardening_problems(objs)
    assert not problems, "\n".join(problems)
    return objs


@pytest.mark.parametrize("case", sorted(GATEWAYS))
def test_a_real_gateway_component_renders_loads_and_reaches_its_device(
    tmp_path: Path, case: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    objs = _render(_overlay(tmp_path, case))
    _check_gateway(objs, case, tmp_path / "pod", monkeypatch)


def test_prod_with_real_gateways_runs_them_and_no_simulator(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The prod overlay with an OPC UA and an MQTT gateway added (docs/kubernetes.md, "Deploy: prod"):
    each gateway as checked above, the upgrade recipe reaches them last, nothing simulates."""
    cases = ["opcua", "mqtt"]
    objs = _render(_prod_with_gateways(tmp_path, cases))
    for case in cases:
        _check_gateway(objs, case, tmp_path / f"pod-{case}", monkeypatch)
    check_readers_before_writers(upgrade_steps(objs))
    assert not _simulators(objs)


def _simulators(objs: list[Obj]) -> list[str]:
    """Containers running `millstream gateway simulate`."""
    parser = build_parser()
    return [
        f"{label}/{c['name']}"
        for label, c in millstream_containers(objs)
        if c.get("args")
        and c["args"][0] == "gateway"
        and getattr(parser.parse_args(c["args"]), "gateway_kind", None) == "simulate"
    ]


@pytest.mark.parametrize("overlay", OVERLAY_NAMES)
def test_only_dev_runs_the_plant_simulator(rendered: dict[str, list[Obj]], overlay: str) -> None:
    """Simulated machines in the readings topic reach ClickHouse, the dashboards and the alerts like
    real ones: the simulator (k8s/components/simulator) belongs to the dev overlay only."""
    simulators = _simulators(rendered[overlay])
    if overlay == "dev":
        assert simulators == ["Deployment/gateway/gateway"], simulators
    else:
        assert not simulators, f"{overlay} runs the plant simulator: {simulators}"


def _check_gateway(objs: list[Obj], case: str, root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The gateway of ``case`` in the rendered ``objs``: its command, metrics, probes, mounted file
    and certificates, Kafka user, spool, disruption budget and network. ``root``: where the pod's
    mounted files are written."""
    kind, _, _, file_in_a_secret = GATEWAYS[case]
    deployment = named(objs, "Deployment", f"gateway-{kind}")
    assert deployment["spec"]["replicas"] == 1
    assert deployment["spec"]["strategy"]["type"] == "Recreate"
    meta, pod = deployment["spec"]["template"]["metadata"], deployment["spec"]["template"]["spec"]
    labels = meta["labels"]
    (container,) = pod["containers"]

    # the command: `millstream gateway <kind> --config FILE --metrics-port PORT`, on the metrics port
    args = build_parser().parse_args(container["args"])
    assert (args.command, args.gateway_kind) == ("gateway", kind)
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert args.metrics_port == ports["metrics"]
    monitor = named(objs, "PodMonitor", "millstream")
    assert all(labels.get(k) == v for k, v in monitor["spec"]["selector"]["matchLabels"].items())
    assert labels["app.kubernetes.io/component"] == "gateway"  # the alert rules' `component`
    assert f"Deployment/gateway-{kind}" in check_health_probes(objs)  # /healthz, /readyz on metrics

    # the file as the pod sees it, loaded by the gateway's own loader (ingest.cli.run_bridge)
    mounted = _materialize(pod, container, objs, root)
    config_file = PurePosixPath(container["args"][container["args"].index("--config") + 1])
    config_dir = str(config_file.parent)
    source = "secret" if file_in_a_secret else "configMap"
    assert source in mounted[config_dir], f"{config_file} is not in a {source} volume"
    secret_mounts = [
        m
        for m in container["volumeMounts"]
        if "secret" in mounted[m["mountPath"]] and m["mountPath"] != config_dir
    ]
    assert [m.get("readOnly") for m in secret_mounts] == [True], "one read-only Secret mount"
    cert_dir = secret_mounts[0]["mountPath"]
    if file_in_a_secret:
        assert all("password" not in str(c.get("data")) for c in of_kind(objs, "ConfigMap"))
    local = root / config_file.relative_to("/")
    text = local.read_text(encoding="utf-8")
    assert cert_dir in text, f"{kind}-gateway.yaml names no file of the Secret mount {cert_dir}"
    # absolute paths of the pod -> the same files here
    local.write_text(text.replace(cert_dir, str(root / cert_dir.lstrip("/"))), encoding="utf-8")
    loader = Problems(local)
    data, _ = loader.read_file()
    model: type[BaseModel] = OpcUaConfig if kind == "opcua" else MqttConfig
    config = loader.model(model, data)
    loader.check()
    if file_in_a_secret:
        assert isinstance(config, MqttConfig) and config.password is not None
    here = root / cert_dir.lstrip("/")
    if isinstance(config, OpcUaConfig):
        sec = config.security
        assert sec.enabled
        files = [sec.cert_file, sec.key_file, sec.server_certificate]
        device_port = urlsplit(config.endpoint).port or 4840
    else:
        assert isinstance(config, MqttConfig) and config.tls is not None
        files = [config.tls.ca_file, config.tls.cert_file, config.tls.key_file]
        device_port = config.port
    for f in files:
        assert f is not None and f.parent == here and f.is_file(), f

    # Kafka: the base's gateway user, allowed to write readings and dead letters; the listener's label
    assert labels["millstream.io/kafka-client"] == "true"
    env = {e["name"]: e for e in container["env"]}
    username = env["MILLSTREAM_KAFKA_USERNAME"]["value"]
    user = named(objs, "KafkaUser", username)
    assert env["MILLSTREAM_KAFKA_PASSWORD"]["valueFrom"]["secretKeyRef"] == {
        "name": username,
        "key": "password",
    }
    topics = settings_from_env(
        monkeypatch, dict(named(objs, "ConfigMap", "millstream-config")["data"]), TopicSettings
    )
    for topic in (topics.topic_readings, topics.topic_dead_letters):
        assert {"Write", "Describe"} <= _acl_ops(user, "topic", topic), topic
    assert {
        v["persistentVolumeClaim"]["claimName"] for v in pod["volumes"] if "persistentVolumeClaim" in v
    } <= {c["metadata"]["name"] for c in of_kind(objs, "PersistentVolumeClaim")}
    pdbs = of_kind(objs, "PodDisruptionBudget")
    assert any(all(labels.get(k) == v for k, v in p["spec"]["selector"]["matchLabels"].items()) for p in pdbs)

    # the network: its device port is open, an arbitrary one is not (the base's default deny holds)
    policies = of_kind(objs, "NetworkPolicy")
    assert _admits(policies, labels, device_port) == [f"gateway-{kind}-devices"]
    assert not _admits(policies, labels, 5020)
    # ...for this gateway only: not for another gateway (same labels, another name) nor any other pod
    others = [{**labels, "app.kubernetes.io/name": "gateway"}] + [
        meta.get("labels", {})
        for w in workloads(objs)
        if w is not deployment
        for _, meta, _ in pod_templates(w)
    ]
    for other in others:
        assert not _admits(policies, other, device_port), f"the device port is open to {other}"
