"""The install commands in docs/kubernetes.md can be run as written: every chart named
`<repo>/<chart>` comes from a repository the same block adds with `helm repo add <repo>`."""

from __future__ import annotations

import re

from tests.k8s.conftest import REPO

DOC = REPO / "docs" / "kubernetes.md"


def _bash_blocks() -> list[str]:
    return re.findall(r"```bash\n(.*?)```", DOC.read_text(encoding="utf-8"), flags=re.DOTALL)


def test_every_helm_chart_repository_is_added() -> None:
    checked = 0
    for block in _bash_blocks():
        added = set(re.findall(r"^helm repo add (\S+) https://\S+", block, flags=re.MULTILINE))
        for line in block.splitlines():
            m = re.match(r"helm (?:install|upgrade -i) \S+ (\S+)", line)
            if not m or m.group(1).startswith("oci://"):
                continue
            repo = m.group(1).split("/", 1)[0]
            assert repo in added, f"`{line.strip()}` uses the chart repository {repo}, never added"
            checked += 1
    assert checked >= 3


def test_settings_only_the_migrate_job_applies_are_named_with_their_recipe() -> None:
    """The sink runs with --no-migrate, so retention (TTL) settings take effect only when the migrate
    Job runs again; the Configuration section must say so (a restart alone changes nothing)."""
    from sinks.config import ClickHouseSettings

    ttl = [n for n in ClickHouseSettings.model_fields if n.startswith("ttl_")]
    assert ttl
    prefix = "MILLSTREAM_CLICKHOUSE_TTL_"
    assert all(f"MILLSTREAM_CLICKHOUSE_{n.upper()}".startswith(prefix) for n in ttl)
    text = DOC.read_text(encoding="utf-8")
    section = text.split("## Configuration", 1)[1].split("\n## ", 1)[0]
    assert prefix in section and "delete job migrate" in section
