"""The metadata-load Job (component k8s/components/metadata): it loads the file the overlay ships, and
the dev overlay ships the metadata of the plant its gateway simulates."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from ingest.config import SimulatorSettings
from ingest.signals import sensor_specs
from ingest.simulator import plant_layout, write_metadata
from sinks.metadata import read_csv
from tests.k8s.conftest import REPO, Obj, config_env, named


def _job_and_file(objs: list[Obj]) -> tuple[Obj, str]:
    """The Job, and the content of the ConfigMap key its command loads."""
    job = named(objs, "Job", "metadata-load")
    pod = job["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    path = Path(container["args"][-1])
    # Without migrations: the migrate Job creates the (in prod, Replicated) database and its tables.
    assert container["args"][:3] == ["metadata", "load", "--no-migrate"]
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    volume = next(v for v in pod["volumes"] if v["name"] == mounts[str(path.parent)])
    cm = named(objs, "ConfigMap", volume["configMap"]["name"])
    assert path.name in cm["data"], f"{cm['metadata']['name']} has no key {path.name}"
    return job, cm["data"][path.name]


def test_the_dev_job_loads_the_metadata_of_the_plant_the_gateway_simulates(
    rendered: dict[str, list[Obj]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    objs = rendered["dev"]
    _, shipped = _job_and_file(objs)
    gateway = named(objs, "Deployment", "gateway")
    (container,) = gateway["spec"]["template"]["spec"]["containers"]
    env = {**config_env(objs), **{e["name"]: e["value"] for e in container.get("env", []) if "value" in e}}
    for name in [n for n in os.environ if n.startswith("MILLSTREAM_")]:
        monkeypatch.delenv(name)
    for name, value in env.items():
        if name.startswith("MILLSTREAM_SIM_"):
            monkeypatch.setenv(name, value)
    sim = SimulatorSettings()
    expected = tmp_path / "machines.csv"
    write_metadata(
        expected, plant_layout(sim.plant, sim.machines, sim.machines_per_line), sensor_specs(sim.sensors)
    )
    assert shipped == expected.read_text(encoding="utf-8")
    loaded = tmp_path / "shipped.csv"
    loaded.write_text(shipped, encoding="utf-8")
    assert len(read_csv(loaded, 0)) == sim.machines * sim.sensors  # `millstream metadata load` accepts it


def test_the_job_is_a_clickhouse_client_like_the_migrate_job(rendered: dict[str, list[Obj]]) -> None:
    """Same ClickHouse settings, password and network access as the migrate Job, which reaches ClickHouse."""
    objs = rendered["dev"]
    job, _ = _job_and_file(objs)
    migrate = named(objs, "Job", "migrate")
    pods = [j["spec"]["template"] for j in (job, migrate)]
    label = "millstream.io/clickhouse-client"
    assert pods[0]["metadata"]["labels"][label] == pods[1]["metadata"]["labels"][label] == "true"
    for key in ("envFrom", "env"):
        assert pods[0]["spec"]["containers"][0][key] == pods[1]["spec"]["containers"][0][key]
    assert pods[0]["spec"]["serviceAccountName"] == pods[1]["spec"]["serviceAccountName"]


def test_the_docs_say_when_the_job_runs_again_and_how_to_apply_a_new_image(
    rendered: dict[str, list[Obj]],
) -> None:
    """The Job is deleted `ttlSecondsAfterFinished` after it finished, so any later apply creates it
    again (and loads the file again); before that a new image tag cannot be applied to it (a Job's pod
    template is immutable). docs/kubernetes.md must say both, with the command to delete it."""
    job, _ = _job_and_file(rendered["dev"])
    ttl = job["spec"]["ttlSecondsAfterFinished"]
    doc = (REPO / "docs" / "kubernetes.md").read_text(encoding="utf-8")
    section = doc.split("## Machine metadata", 1)[1].split("\n## ", 1)[0]
    assert ttl == 3600 and "an hour after it finished" in section
    assert "ttlSecondsAfterFinished" in section and "field is immutable" in section
    assert "delete job migrate metadata-load --ignore-not-found" in section
