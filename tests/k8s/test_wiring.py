"""The pieces fit: commands exist in the CLI, Kafka credentials and ACLs match what each component
does, KEDA watches the consumer groups the code uses, references resolve, every workload has a
disruption budget and network policies, each overlay runs its engine."""

from __future__ import annotations

import shlex
from typing import Any

import pytest

from infra.cli import build_parser
from schemas.config import KafkaSettings, TopicSettings
from sinks.config import SinkSettings
from sinks.runner import SinkRunner
from streams.config import StreamSettings
from tests.k8s.conftest import (
    OVERLAY_NAMES,
    config_env,
    env_value,
    millstream_containers,
    named,
    of_kind,
    pod_templates,
    settings_from_env,
    workloads,
)

Objs = list[dict[str, Any]]
# Secrets no manifest creates: Strimzi's User Operator writes one per KafkaUser (checked below);
# production creates the ClickHouse passwords by hand (docs/kubernetes.md).
MANUAL_SECRETS = {"prod": {"millstream-clickhouse", "millstream-clickhouse-grafana"}}


def _subscriptions(sink: SinkSettings, topics: TopicSettings) -> list[str]:
    """The topics the sink consumes, as its runner computes them (no ClickHouse client needed)."""
    runner = SinkRunner(None, sink=sink, topics=topics)  # type: ignore[arg-type]
    return runner.subscriptions()


def _acl_ops(user: dict[str, Any], rtype: str, name: str) -> set[str]:
    ops: set[str] = set()
    for acl in user["spec"]["authorization"]["acls"]:
        res = acl["resource"]
        if res["type"] != rtype or acl.get("type", "allow") != "allow":
            continue
        pattern = res.get("patternType", "literal")
        if (
            rtype == "cluster"
            or (pattern == "literal" and res["name"] == name)
            or (pattern == "prefix" and name.startswith(res["name"]))
        ):
            ops |= set(acl["operations"])
    return ops


@pytest.mark.parametrize("overlay", OVERLAY_NAMES)
def test_container_commands_exist_in_the_cli(rendered: dict[str, Objs], overlay: str) -> None:
    parser = build_parser()
    for label, c in millstream_containers(rendered[overlay]):
        args = parser.parse_args(c["args"])
        assert getattr(args, "func", None), f"{label}: `millstream {shlex.join(c['args'])}` runs nothing"


def test_flink_job_runs_millstream_run_flink(rendered: dict[str, Objs]) -> None:
    [fd] = of_kind(rendered["prod"], "FlinkDeployment")
    job = fd["spec"]["job"]
    assert job["entryClass"] == "org.apache.flink.client.python.PythonDriver"
    args = job["args"]
    module_at = args.index("-pym") + 1
    assert args[module_at] == "infra.cli"  # python -m infra.cli == the millstream console script
    cli_args = args[module_at + 1 :]
    assert cli_args[:2] == ["run", "flink"]
    parsed = build_parser().parse_args(cli_args)
    assert getattr(parsed, "func", None), "`millstream run flink` is not a command of the CLI"


def test_flink_upgrades_by_savepoint_with_durable_state(rendered: dict[str, Objs]) -> None:
    [fd] = of_kind(rendered["prod"], "FlinkDeployment")
    conf = fd["spec"]["flinkConfiguration"]
    assert fd["spec"]["job"]["upgradeMode"] == "savepoint"
    assert fd["metadata"]["annotations"]["millstream.io/dockerfile"] == "infra/docker/flink.Dockerfile"
    mounts = {
        m["mountPath"]: m["name"] for m in fd["spec"]["podTemplate"]["spec"]["containers"][0]["volumeMounts"]
    }
    volumes = {v["name"]: v for v in fd["spec"]["podTemplate"]["spec"]["volumes"]}
    for key in (
        "execution.checkpointing.dir",
        "execution.checkpointing.savepoint-dir",
        "high-availability.storageDir",
    ):
        url = conf[key]
        assert url.startswith("file:///flink-data/"), key
        claim = volumes[mounts["/flink-data"]]["persistentVolumeClaim"]["claimName"]
        pvc = named(rendered["prod"], "PersistentVolumeClaim", claim)
        assert pvc["spec"]["accessModes"] == ["ReadWriteMany"], "JobManager and TaskManagers share it"
    assert conf["job.autoscaler.enabled"] == "true"


@pytest.mark.parametrize("overlay", OVERLAY_NAMES)
def test_each_overlay_runs_one_stream_engine(rendered: dict[str, Objs], overlay: str) -> None:
    objs = rendered[overlay]
    faust = [
        s
        for s in of_kind(objs, "StatefulSet")
        if s["spec"]["template"]["spec"]["containers"][0]["args"][:2] == ["run", "faust"]
    ]
    flink = of_kind(objs, "FlinkDeployment")
    assert len(faust) + len(flink) == 1
    assert (overlay == "dev") == bool(faust)


@pytest.mark.parametrize("overlay", OVERLAY_NAMES)
def test_kafka_clients_use_their_scram_user(
    rendered: dict[str, Objs], overlay: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    objs = rendered[overlay]
    env = config_env(objs)
    [kafka] = of_kind(objs, "Kafka")
    listener = [
        lst
        for lst in kafka["spec"]["kafka"]["listeners"]
        if f":{lst['port']}" in env["MILLSTREAM_KAFKA_BOOTSTRAP"]
    ]
    assert len(listener) == 1
    assert listener[0]["authentication"]["type"] == "scram-sha-512"
    expected_protocol = "SASL_SSL" if listener[0]["tls"] else "SASL_PLAINTEXT"
    assert env["MILLSTREAM_KAFKA_BOOTSTRAP"].split(":")[0] == f"{kafka['metadata']['name']}-kafka-bootstrap"
    users = {u["metadata"]["name"]: u for u in of_kind(objs, "KafkaUser")}
    clients = 0
    for w in workloads(objs):
        for label, meta, pod in pod_templates(w):
            for c in pod.get("containers", []):
                username = env_value(c, "MILLSTREAM_KAFKA_USERNAME")
                if username is None:
                    continue
                clients += 1
                user = users[username["value"]]
                assert user["spec"]["authentication"]["type"] == "scram-sha-512"
                password = env_value(c, "MILLSTREAM_KAFKA_PASSWORD")
                assert password is not None, label
                ref = password["valueFrom"]["secretKeyRef"]
                assert ref == {"name": username["value"], "key": "password"}, label
                # the label the Kafka listener's network policy admits
                assert meta.get("labels", {}).get("millstream.io/kafka-client") == "true", label
                kafka_env = {
                    **env,
                    "MILLSTREAM_KAFKA_USERNAME": username["value"],
                    "MILLSTREAM_KAFKA_PASSWORD": "x",
                }
                conf = settings_from_env(monkeypatch, kafka_env, KafkaSettings).librdkafka()
                assert conf["security.protocol"] == expected_protocol
                assert conf["sasl.mechanism"] == "SCRAM-SHA-512"
                assert conf["sasl.username"] == username["value"]
    assert clients >= 3


@pytest.mark.parametrize("overlay", OVERLAY_NAMES)
def test_acls_grant_what_each_component_does(
    rendered: dict[str, Objs], overlay: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    objs = rendered[overlay]
    env = config_env(objs)
    topics: TopicSettings = settings_from_env(monkeypatch, env, TopicSettings)
    stream: StreamSettings = settings_from_env(monkeypatch, env, StreamSettings)
    sink_settings: SinkSettings = settings_from_env(monkeypatch, env, SinkSettings)
    users = {u["metadata"]["name"]: u for u in of_kind(objs, "KafkaUser")}
    outputs = [
        topics.topic_windows,
        topics.topic_dead_letters,
        topics.topic_late,
        topics.topic_spc_signals,
        topics.topic_anomalies,
    ]

    # Every gateway's forwarder writes readings and, for what its validation rejects (a unit it
    # cannot convert, an unparsable MQTT payload), dead letters (ingest.cli._start_forwarder).
    for t in (topics.topic_readings, topics.topic_dead_letters):
        assert {"Write", "Describe"} <= _acl_ops(users["millstream-gateway"], "topic", t), t
    engine = "millstream-windows" if overlay == "dev" else "millstream-flink"
    assert {"Read", "Describe"} <= _acl_ops(users[engine], "topic", topics.topic_readings)
    assert "Read" in _acl_ops(users[engine], "group", stream.app_id)
    for t in outputs:
        assert "Write" in _acl_ops(users[engine], "topic", t), (engine, t)
    if engine == "millstream-windows":
        changelog = f"{stream.app_id}-window-state-changelog"
        assert {"Read", "Write", "Create"} <= _acl_ops(users[engine], "topic", changelog)

    for t in _subscriptions(sink_settings, topics):
        assert {"Read", "Describe"} <= _acl_ops(users["millstream-sink"], "topic", t), t
    assert "Read" in _acl_ops(users["millstream-sink"], "group", sink_settings.group_id)


@pytest.mark.parametrize("overlay", OVERLAY_NAMES)
def test_keda_watches_the_groups_the_code_uses(
    rendered: dict[str, Objs], overlay: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    objs = rendered[overlay]
    env = config_env(objs)
    topics: TopicSettings = settings_from_env(monkeypatch, env, TopicSettings)
    groups = {
        "StatefulSet/windows": (
            settings_from_env(monkeypatch, env, StreamSettings).app_id,
            [topics.topic_readings],
        ),
        "Deployment/sink": (
            settings_from_env(monkeypatch, env, SinkSettings).group_id,
            _subscriptions(settings_from_env(monkeypatch, env, SinkSettings), topics),
        ),
    }
    keda_user = named(objs, "KafkaUser", "millstream-keda")
    scaled = of_kind(objs, "ScaledObject")
    assert {
        f"{s['spec']['scaleTargetRef']['kind']}/{s['spec']['scaleTargetRef']['name']}" for s in scaled
    } == ({"StatefulSet/windows", "Deployment/sink"} if overlay == "dev" else {"Deployment/sink"})
    for so in scaled:
        target = f"{so['spec']['scaleTargetRef']['kind']}/{so['spec']['scaleTargetRef']['name']}"
        named(objs, *target.split("/"))
        group, consumed = groups[target]
        assert so["spec"]["maxReplicaCount"] <= topics.topic_partitions
        watched = set()
        for trig in so["spec"]["triggers"]:
            meta = trig["metadata"]
            assert trig["type"] == "kafka"
            assert meta["bootstrapServers"] == env["MILLSTREAM_KAFKA_BOOTSTRAP"]
            assert meta["consumerGroup"] == group
            watched.add(meta["topic"])
            assert "Describe" in _acl_ops(keda_user, "group", group)
            assert "Describe" in _acl_ops(keda_user, "topic", meta["topic"])
            auth = named(objs, "TriggerAuthentication", trig["authenticationRef"]["name"])
            refs = {r["parameter"]: r for r in auth["spec"]["secretTargetRef"]}
            assert refs["password"]["name"] == "millstream-keda" and refs["password"]["key"] == "password"
        assert watched == set(consumed), target


@pytest.mark.parametrize("overlay", OVERLAY_NAMES)
def test_references_resolve(rendered: dict[str, Objs], overlay: str) -> None:
    objs = rendered[overlay]
    config_maps = {o["metadata"]["name"] for o in of_kind(objs, "ConfigMap")}
    secrets = {o["metadata"]["name"] for o in of_kind(objs, "Secret")}
    secrets |= {o["metadata"]["name"] for o in of_kind(objs, "KafkaUser")}  # written by the User Operator
    secrets |= MANUAL_SECRETS.get(overlay, set())
    claims = {o["metadata"]["name"] for o in of_kind(objs, "PersistentVolumeClaim")}
    accounts = {o["metadata"]["name"] for o in of_kind(objs, "ServiceAccount")}
    for w in workloads(objs):
        for label, _, pod in pod_templates(w):
            account = pod.get("serviceAccountName") or w["spec"].get("serviceAccount")
            assert account in accounts, f"{label}: service account {account}"
            for v in pod.get("volumes", []):
                if "persistentVolumeClaim" in v:
                    assert v["persistentVolumeClaim"]["claimName"] in claims, label
            for c in pod.get("initContainers", []) + pod.get("containers", []):
                for src in c.get("envFrom", []):
                    assert src["configMapRef"]["name"] in config_maps, label
                for e in c.get("env", []):
                    ref = (e.get("valueFrom") or {}).get("secretKeyRef")
                    if ref:
                        assert ref["name"] in secrets, f"{label}: secret {ref['name']}"
    for chi in of_kind(objs, "ClickHouseInstallation"):
        for key, value in chi["spec"]["configuration"]["users"].items():
            if key.endswith("k8s_secret_password"):
                assert value.split("/")[0] in secrets, value


@pytest.mark.parametrize("overlay", OVERLAY_NAMES)
def test_every_workload_has_a_disruption_budget_and_network_policy(
    rendered: dict[str, Objs], overlay: str
) -> None:
    objs = rendered[overlay]
    pdbs = of_kind(objs, "PodDisruptionBudget")
    policies = of_kind(objs, "NetworkPolicy")
    deny = [
        p
        for p in policies
        if p["spec"]["podSelector"] == {}
        and set(p["spec"]["policyTypes"]) == {"Ingress", "Egress"}
        and not p["spec"].get("ingress")
        and not p["spec"].get("egress")
    ]
    assert deny, "no default-deny NetworkPolicy"

    def selects(selector: dict[str, Any], labels: dict[str, str]) -> bool:
        return all(labels.get(k) == v for k, v in selector.get("matchLabels", {}).items())

    for w in of_kind(objs, "Deployment") + of_kind(objs, "StatefulSet"):
        labels = w["spec"]["template"]["metadata"]["labels"]
        name = f"{w['kind']}/{w['metadata']['name']}"
        assert any(selects(p["spec"]["selector"], labels) for p in pdbs), f"{name}: no PodDisruptionBudget"
        specific = [
            p for p in policies if p["spec"]["podSelector"] and selects(p["spec"]["podSelector"], labels)
        ]
        assert specific, f"{name}: only the namespace-wide network policies apply"


@pytest.mark.parametrize("overlay", OVERLAY_NAMES)
def test_metrics_ports_are_the_ports_the_processes_serve(rendered: dict[str, Objs], overlay: str) -> None:
    parser = build_parser()
    env = config_env(rendered[overlay])
    for label, c in millstream_containers(rendered[overlay]):
        ports = {p["name"]: p["containerPort"] for p in c.get("ports", [])}
        if "metrics" not in ports:
            continue
        args = parser.parse_args(c["args"])
        cenv = {**env, **{e["name"]: e.get("value") for e in c.get("env", []) if "value" in e}}
        if getattr(args, "metrics_port", None) is not None:
            served = args.metrics_port
        elif args.command == "sink":
            served = int(cenv["MILLSTREAM_SINK_METRICS_PORT"])
        else:
            served = int(
                cenv.get(
                    "MILLSTREAM_STREAM_METRICS_PORT", StreamSettings.model_fields["metrics_port"].default
                )
            )
        assert ports["metrics"] == served, label
    monitor = named(rendered[overlay], "PodMonitor", "millstream")
    assert monitor["spec"]["podMetricsEndpoints"][0]["port"] == "metrics"
    relabel = monitor["spec"]["podMetricsEndpoints"][0]["relabelings"][0]
    # infra/prometheus/rules.yml: every target carries `component` from app.kubernetes.io/component.
    assert relabel["targetLabel"] == "component"
    assert relabel["sourceLabels"] == ["__meta_kubernetes_pod_label_app_kubernetes_io_component"]
    for w in workloads(rendered[overlay]):
        for label, meta, _ in pod_templates(w):
            if meta.get("labels", {}).get("millstream.io/scrape") == "true":
                assert meta["labels"]["app.kubernetes.io/component"] in {"gateway", "windows", "sink"}, label


def test_prod_clickhouse_is_replicated_with_keeper(rendered: dict[str, Objs]) -> None:
    objs = rendered["prod"]
    [chi] = of_kind(objs, "ClickHouseInstallation")
    [chk] = of_kind(objs, "ClickHouseKeeperInstallation")
    assert chi["spec"]["configuration"]["clusters"][0]["layout"]["replicasCount"] >= 2
    assert chk["spec"]["configuration"]["clusters"][0]["layout"]["replicasCount"] == 3
    assert (
        chi["spec"]["configuration"]["zookeeper"]["nodes"][0]["host"] == f"keeper-{chk['metadata']['name']}"
    )
    job = named(objs, "Job", "migrate")
    init = job["spec"]["template"]["spec"]["initContainers"][0]
    assert "ENGINE = Replicated(" in init["args"][1] and "ON CLUSTER" in init["args"][1]
    assert job["spec"]["template"]["spec"]["containers"][0]["args"] == ["migrate"]
    assert named(objs, "Deployment", "sink")["spec"]["template"]["spec"]["containers"][0]["args"] == [
        "sink",
        "--no-migrate",
    ]


@pytest.mark.parametrize("overlay", OVERLAY_NAMES)
def test_everything_lands_in_the_millstream_namespace(rendered: dict[str, Objs], overlay: str) -> None:
    """Overlays and components add objects too; none may fall back to the kubectl context's namespace."""
    for obj in rendered[overlay]:
        if obj["kind"] == "Namespace":
            assert obj["metadata"]["name"] == "millstream"
            continue
        assert obj["metadata"].get("namespace") == "millstream", f"{obj['kind']}/{obj['metadata']['name']}"
        assert obj["metadata"]["labels"]["app.kubernetes.io/part-of"] == "millstream"
    for binding in of_kind(rendered[overlay], "RoleBinding"):
        for subject in binding["subjects"]:
            if subject["kind"] == "ServiceAccount":
                assert subject.get("namespace") == "millstream", binding["metadata"]["name"]
