"""docs/kubernetes.md upgrades readers before writers with `kubectl apply -l <selector>` steps. The
selectors it uses, evaluated on each rendered overlay, put every workload in exactly one step, in
the order sink -> stream job -> gateways, with the migrate Job before them all."""

from __future__ import annotations

import re
from typing import Any

import pytest

from tests.k8s.conftest import OVERLAY_NAMES, REPO, WORKLOAD_KINDS

Objs = list[dict[str, Any]]
DOC = REPO / "docs" / "kubernetes.md"


def _matches(selector: str, labels: dict[str, str]) -> bool:
    """Kubernetes label selector semantics for `k=v` and `k notin (a,b)` (what the docs use)."""
    selector = selector.strip()
    m = re.fullmatch(r"([\w./-]+)\s+notin\s+\(([^)]*)\)", selector)
    if m:
        return labels.get(m.group(1)) not in {v.strip() for v in m.group(2).split(",")}
    m = re.fullmatch(r"([\w./-]+)=([\w.-]+)", selector)
    assert m, f"selector form not handled: {selector}"
    return labels.get(m.group(1)) == m.group(2)


def _steps() -> list[str | None]:
    """The `kubectl apply` lines of the schema-upgrade recipe, as selectors (None: everything)."""
    text = DOC.read_text(encoding="utf-8")
    section = text.split("## Upgrade to a release with a new schema version", 1)[1].split("\n## ", 1)[0]
    steps: list[str | None] = []
    for line in section.splitlines():
        if line.startswith("kubectl apply"):
            m = re.search(r"-l\s+('([^']+)'|(\S+))", line)
            steps.append((m.group(2) or m.group(3)) if m else None)
    return steps


def test_the_recipe_has_its_four_steps() -> None:
    steps = _steps()
    assert len(steps) == 4 and steps[-1] is None, steps


def _step_of(labels: dict[str, str], steps: list[str | None]) -> int:
    for i, selector in enumerate(steps):
        if selector is None or _matches(selector, labels):
            return i
    raise AssertionError(labels)


def upgrade_steps(objs: Objs) -> dict[str, int]:
    """Component -> the recipe step that applies its workloads; checks that each component's
    workloads share one step and that the configuration goes first."""
    steps = _steps()
    where: dict[str, int] = {}
    for obj in objs:
        labels = obj["metadata"].get("labels", {})
        step = _step_of(labels, steps)
        if obj["kind"] in WORKLOAD_KINDS:
            component = labels.get("app.kubernetes.io/component", "")
            assert component not in where or where[component] == step, component
            where[component] = step
        if obj["kind"] == "ConfigMap":
            assert step == 0, "the new configuration goes first"
    return where


def check_readers_before_writers(where: dict[str, int]) -> None:
    """migrate < sink < stream job < gateways; every step but the last selects something, so none of
    them is a silent no-op (also for tests/k8s/test_gateways, a prod overlay with real gateways)."""
    assert where["migrate"] < where["sink"] < where["windows"] < where["gateway"], where
    assert sorted(set(where.values())) == [0, 1, 2, 3], where


@pytest.mark.parametrize("overlay", OVERLAY_NAMES)
def test_readers_are_upgraded_before_writers(rendered: dict[str, Objs], overlay: str) -> None:
    where = upgrade_steps(rendered[overlay])
    if "gateway" not in where:
        # An overlay without gateways of its own (prod: the plant adds its components, checked by
        # tests/k8s/test_gateways.py): the last step, "anything left", is where they would go.
        assert where["migrate"] < where["sink"] < where["windows"], (overlay, where)
        assert sorted(set(where.values())) == [0, 1, 2], (overlay, where)
        return
    check_readers_before_writers(where)
