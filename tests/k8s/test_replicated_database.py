"""Where the migrate Job creates the Millstream database with the Replicated engine (prod), nothing
else may create it first: every other process that connects to that database (its connect runs
``CREATE DATABASE IF NOT EXISTS``) waits in an init container until the database is Replicated on
every replica. The wait's statement is run for real on embedded ClickHouse (chdb)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from typing import Any

import pytest

from sinks.config import ClickHouseSettings
from tests.k8s.conftest import (
    OVERLAY_NAMES,
    config_env,
    named,
    of_kind,
    pod_templates,
    settings_from_env,
    workloads,
)

Objs = list[dict[str, Any]]
_CREATE = re.compile(
    r"CREATE DATABASE IF NOT EXISTS (\w+) ON CLUSTER '(\w+)'\s+ENGINE = Replicated\(", re.IGNORECASE
)


def _env(env: dict[str, str], container: dict[str, Any]) -> dict[str, str]:
    own = {e["name"]: e.get("value", "secret") for e in container.get("env", [])}
    return {**env, **own}


def _replicated(objs: Objs) -> tuple[str, str] | None:
    """(database, cluster) the migrate Job creates as a Replicated database, None when it does not."""
    job = named(objs, "Job", "migrate")
    for c in job["spec"]["template"]["spec"].get("initContainers", []):
        m = _CREATE.search(" ".join(c.get("args", [])))
        if m:
            return m.group(1), m.group(2)
    return None


def _gates(objs: Objs) -> list[str]:
    """The wait statements of the prod overlay (for the chdb run below)."""
    found = []
    for w in workloads(objs):
        for _, _, pod in pod_templates(w):
            for c in pod.get("initContainers", []):
                if c.get("args", [""])[0] == "sql" and "clusterAllReplicas" in c["args"][1]:
                    found.append(c["args"][1])
    return found


@pytest.mark.parametrize("overlay", OVERLAY_NAMES)
def test_clients_of_a_replicated_database_wait_for_it(
    rendered: dict[str, Objs], overlay: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    objs = rendered[overlay]
    env = config_env(objs)
    replicated = _replicated(objs)
    if replicated is None:
        return  # one replica, plain database: whoever connects first may create it
    database, cluster = replicated
    [chi] = of_kind(objs, "ClickHouseInstallation")
    assert cluster in {c["name"] for c in chi["spec"]["configuration"]["clusters"]}
    checked = 0
    for w in workloads(objs):
        if w["kind"] == "Job" and w["metadata"]["name"] == "migrate":
            continue
        for label, _, pod in pod_templates(w):
            inits = pod.get("initContainers", [])
            for c in pod.get("containers", []):
                cenv = _env(env, c)
                if "MILLSTREAM_CLICKHOUSE_PASSWORD" not in cenv:
                    continue
                ch: ClickHouseSettings = settings_from_env(monkeypatch, cenv, ClickHouseSettings)
                if ch.resolved_database() != database:
                    continue
                checked += 1
                waits = []
                for init in inits:
                    if init.get("args", [""])[0] != "sql":
                        continue
                    ich: ClickHouseSettings = settings_from_env(
                        monkeypatch, _env(env, init), ClickHouseSettings
                    )
                    statement = init["args"][1]
                    if (
                        ich.resolved_database() != database  # connecting must not create it either
                        and f"clusterAllReplicas('{cluster}', system.databases)" in statement
                        and f"name = '{database}'" in statement
                        and "engine = 'Replicated'" in statement
                    ):
                        waits.append(init["name"])
                assert waits, f"{label}/{c['name']} may create {database} before the migrate Job does"
    assert checked, f"{overlay}: no ClickHouse client besides the migrate Job"


_CHDB_RUN = r"""
import json, sys
from chdb import session
statement, cluster = sys.argv[1], sys.argv[2]
# chdb has no clusters: the single-node form of the same statement (this server is every replica).
local = statement.replace(f"clusterAllReplicas('{cluster}', system.databases)", "system.databases")
local = local.replace(f"(SELECT count() FROM system.clusters WHERE cluster = '{cluster}')", "1")
s = session.Session()
out = {"parsed": "clusterAllReplicas" in str(s.query("EXPLAIN AST " + statement, "TSV"))}
def run():
    try:
        s.query(local, "TSV")
        return "ok"
    except Exception as exc:
        return str(exc)
out["missing"] = run()
s.query("CREATE DATABASE IF NOT EXISTS millstream ENGINE = Atomic")
out["atomic"] = run()
print(json.dumps(out))
"""


def test_the_wait_refuses_a_missing_or_plain_database(rendered: dict[str, Objs]) -> None:
    objs = rendered["prod"]
    replicated = _replicated(objs)
    assert replicated is not None and replicated[0] == "millstream"
    [statement] = _gates(objs)
    proc = subprocess.run(  # chdb allows one session per process: keep it out of the test process
        [sys.executable, "-c", _CHDB_RUN, statement, replicated[1]],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["parsed"]
    for case in ("missing", "atomic"):
        assert "is not Replicated on every replica" in out[case], (case, out[case])
