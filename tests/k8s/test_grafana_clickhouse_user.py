"""Grafana's ClickHouse datasource logs in as a ClickHouse user the ClickHouseInstallation defines,
with the password from the same Secret, and that user's read-only profile lets the plugin set
`max_execution_time`, which it sends with every query (grafana/clickhouse-datasource issue #325
and its README, "ClickHouse user for the data source": a `readonly=1` user fails every panel with
"Cannot modify 'max_execution_time' setting in readonly mode")."""

from __future__ import annotations

from typing import Any

import pytest

from tests.k8s.conftest import OVERLAY_NAMES, of_kind

Objs = list[dict[str, Any]]


@pytest.mark.parametrize("overlay", OVERLAY_NAMES)
def test_grafana_user_exists_and_may_set_max_execution_time(rendered: dict[str, Objs], overlay: str) -> None:
    objs = rendered[overlay]
    [chi] = of_kind(objs, "ClickHouseInstallation")
    config = chi["spec"]["configuration"]
    checked = 0
    for ds in of_kind(objs, "GrafanaDatasource"):
        if ds["spec"]["datasource"]["type"] != "grafana-clickhouse-datasource":
            continue
        user = ds["spec"]["datasource"]["jsonData"]["username"]
        users = config["users"]
        assert f"{user}/profile" in users, f"{overlay}: ClickHouse has no user {user}"
        [source] = [v["valueFrom"]["secretKeyRef"] for v in ds["spec"]["valuesFrom"]]
        assert users[f"{user}/k8s_secret_password"] == f"{source['name']}/{source['key']}"
        profile = users[f"{user}/profile"]
        profiles = config.get("profiles", {})
        if str(profiles.get(f"{profile}/readonly", "0")) == "1":
            key = f"{profile}/constraints/max_execution_time/changeable_in_readonly"
            assert key in profiles, f"{overlay}: profile {profile} is readonly=1 without {key}"
        checked += 1
    assert checked == 1
