"""Prometheus rules and the Alertmanager example, checked with the real tools (promtool, amtool).

The tools come from the Debian packages ``prometheus`` and ``prometheus-alertmanager``; a missing
tool fails the test with the install command (never a skip).
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from infra.grafana.queries import exported_metric_names, metric_names

REPO = Path(__file__).resolve().parents[2]
PROM_DIR = REPO / "infra" / "prometheus"
RULES = PROM_DIR / "rules.yml"
RULE_TESTS = sorted(PROM_DIR.glob("*.test.yml"))  # rules.test.yml, fleet.test.yml
ALERTMANAGER = PROM_DIR / "alertmanager.yml"
DOCS = REPO / "docs" / "observability.md"
FLINK_FUNCTIONS = REPO / "streams" / "flink" / "functions.py"
K8S = REPO / "k8s" / "base"
# ClickHouse's own Prometheus endpoint (asynchronous_metrics on in k8s/base/clickhouse).
CLICKHOUSE_SERVER_METRICS = {
    "ClickHouseAsyncMetrics_DiskAvailable_default", "ClickHouseAsyncMetrics_DiskTotal_default",
}  # fmt: skip
# Flink's PrometheusReporter exports an operator's metric `x` as flink_taskmanager_job_task_operator_x.
FLINK_OPERATOR_PREFIX = "flink_taskmanager_job_task_operator_"

SEVERITIES = {"critical", "warning", "info"}
# Labels a rule may aggregate by: all bounded (components, stages, topics, tables, reason codes,
# SPC charts and rules, anomaly kinds, and machines under the cardinality guard).
BOUNDED_LABELS = {
    "job", "component", "instance", "stage", "topic", "table", "reason", "metric", "le",
    "chart", "rule", "kind", "plant", "line", "machine_id", "check",
}  # fmt: skip


def _tool(name: str, package: str) -> str:
    found = shutil.which(name)
    if not found:
        pytest.fail(
            f"{name} is not installed: sudo apt-get install -y {package} "
            f"(the Makefile's system-deps target installs it)"
        )
    return found


def _run(argv: list[str], cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, timeout=120, cwd=cwd, check=False)


def _rules() -> list[dict[str, Any]]:
    doc = yaml.safe_load(RULES.read_text())
    return [r for g in doc["groups"] for r in g["rules"]]


def _alerts() -> list[dict[str, Any]]:
    return [r for r in _rules() if "alert" in r]


# ------------------------------------------------------------------------------------ promtool
def test_promtool_check_rules_passes() -> None:
    promtool = _tool("promtool", "prometheus")
    proc = _run([promtool, "check", "rules", str(RULES)])
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"SUCCESS: {len(_rules())} rules found" in proc.stdout


def _rule_tests() -> list[dict[str, Any]]:
    return [t for path in RULE_TESTS for t in yaml.safe_load(path.read_text())["tests"]]


def test_promtool_unit_tests_pass() -> None:
    promtool = _tool("promtool", "prometheus")
    assert {p.name for p in RULE_TESTS} >= {"rules.test.yml", "fleet.test.yml"}
    proc = _run([promtool, "test", "rules", *(p.name for p in RULE_TESTS)], cwd=PROM_DIR)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.count("SUCCESS") == len(RULE_TESTS), proc.stdout


def test_every_alert_has_a_firing_and_a_silent_case() -> None:
    tests = _rule_tests()
    firing: set[str] = set()
    silent: set[str] = set()
    for t in tests:
        for case in t.get("alert_rule_test", []):
            (firing if case.get("exp_alerts") else silent).add(case["alertname"])
    names = {a["alert"] for a in _alerts()}
    assert names - firing == set(), "alerts without a firing case in rules.test.yml"
    assert names - silent == set(), "alerts without a non-firing case in rules.test.yml"


def test_every_recording_rule_is_unit_tested() -> None:
    tests = _rule_tests()
    tested = {case["expr"].strip() for t in tests for case in t.get("promql_expr_test", [])}
    recorded = {r["record"] for r in _rules() if "record" in r}
    assert recorded - tested == set()


# ------------------------------------------------------------------------------------ rule hygiene
def test_alerts_have_severity_annotations_and_a_documented_runbook() -> None:
    docs = DOCS.read_text()
    anchors = {re.sub(r"[^a-z0-9-]", "", h.strip().lower().replace(" ", "-")) for h in
               re.findall(r"^#+ (.+)$", docs, flags=re.M)}  # fmt: skip
    for a in _alerts():
        assert a["labels"].get("severity") in SEVERITIES, a["alert"]
        ann = a["annotations"]
        assert {"summary", "description", "runbook"} <= set(ann), a["alert"]
        anchor = a["alert"].lower()
        assert f"docs/observability.md#{anchor}" in ann["runbook"], a["alert"]
        assert anchor in anchors, f"docs/observability.md has no section for {a['alert']}"


def test_rules_aggregate_by_bounded_labels_only() -> None:
    for r in _rules():
        for group in re.findall(r"\b(?:by|on)\s*\(([^)]*)\)", r["expr"]):
            labels = {x.strip() for x in group.split(",") if x.strip()}
            assert labels <= BOUNDED_LABELS, (r.get("alert") or r.get("record"), labels - BOUNDED_LABELS)


def _flink_operator_metrics() -> set[str]:
    """What Flink's reporter exports for the metrics the job's Python functions register."""
    registered = re.findall(r"\.(?:counter|gauge)\(\s*\"([a-z_]+)\"", FLINK_FUNCTIONS.read_text())
    return {FLINK_OPERATOR_PREFIX + name for name in registered}


def test_rules_read_metrics_the_code_defines() -> None:
    known = exported_metric_names(REPO) | {r["record"] for r in _rules() if "record" in r} | {"up"}
    known |= _flink_operator_metrics()
    known |= {"label_replace", "sqrt"}  # PromQL functions infra/grafana/queries.py does not list
    known |= CLICKHOUSE_SERVER_METRICS
    for r in _rules():
        unknown = metric_names(r["expr"]) - known
        assert unknown == set(), (r.get("alert") or r.get("record"), unknown)


def test_runbooks_name_only_commands_that_exist() -> None:
    from infra.cli import build_parser

    parser = build_parser()
    (sub,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    # `millstream <command>`, not the namespace in `kubectl -n millstream ...`
    command_re = re.compile(r"(?<![\w/.-])(?<!-n )millstream ([a-z][a-z-]*)")
    for a in _alerts():
        for command in command_re.findall(a["annotations"]["runbook"]):
            assert command in sub.choices, (a["alert"], f"millstream {command}")


# ------------------------------------------------------------------------------------ alertmanager
def test_amtool_check_config_passes() -> None:
    amtool = _tool("amtool", "prometheus-alertmanager")
    proc = _run([amtool, "check-config", str(ALERTMANAGER)])
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "SUCCESS" in proc.stdout


@pytest.mark.parametrize(
    ("labels", "receivers"),
    [
        (["severity=critical", "alertname=MillstreamComponentDown"], "millstream-sink,pager"),
        (["severity=warning", "alertname=MillstreamMachineSilent"], "millstream-sink,chat"),
        (["severity=info", "alertname=MillstreamLateReadings"], "millstream-sink"),
    ],
)
def test_alertmanager_routes_by_severity_and_records_everything(labels: list[str], receivers: str) -> None:
    amtool = _tool("amtool", "prometheus-alertmanager")
    proc = _run(
        [amtool, "config", "routes", "test", f"--config.file={ALERTMANAGER}",
         f"--verify.receivers={receivers}", *labels]
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr


def _sink_service_url() -> str:
    """The sink's webhook URL inside the cluster, from the Service and namespace in k8s/base."""
    namespace = yaml.safe_load((K8S / "kustomization.yaml").read_text())["namespace"]
    docs = list(yaml.safe_load_all((K8S / "apps" / "sink.yaml").read_text()))
    (svc,) = [d for d in docs if d and d["kind"] == "Service"]
    (port,) = [p["port"] for p in svc["spec"]["ports"] if p["name"] == "metrics"]
    return f"http://{svc['metadata']['name']}.{namespace}.svc:{port}/alertmanager"


def test_alertmanager_webhook_points_at_the_sink_endpoint() -> None:
    cfg = yaml.safe_load(ALERTMANAGER.read_text())
    sink = next(r for r in cfg["receivers"] if r["name"] == "millstream-sink")
    hook = sink["webhook_configs"][0]
    assert hook["send_resolved"] is True
    # The example is the Kubernetes Service of k8s/base; the docs name the same URL.
    assert hook["url"] == _sink_service_url()
    assert _sink_service_url() in DOCS.read_text()
    severities_in_rules = {a["labels"]["severity"] for a in _alerts()}
    assert severities_in_rules <= SEVERITIES


# ------------------------------------------------------------------------------------ docs
_METRIC_DEF = re.compile(r"(Counter|Gauge|Histogram|Summary)\(\s*\"(millstream_[a-z0-9_]+)\"", re.S)


def test_metric_catalogue_documents_every_metric_the_code_defines() -> None:
    docs = DOCS.read_text()
    missing = []
    for pkg in ("ingest", "streams", "sinks"):
        for path in sorted((REPO / pkg).rglob("*.py")):
            for kind, name in _METRIC_DEF.findall(path.read_text()):
                exposed = name + "_total" if kind.endswith("Counter") else name
                if f"`{exposed}`" not in docs:
                    missing.append(f"{exposed} ({path.relative_to(REPO)})")
    assert missing == [], "add to the metric catalogue in docs/observability.md"


def test_every_alert_is_in_the_docs_summary_table() -> None:
    docs = DOCS.read_text()
    for a in _alerts():
        assert re.search(rf"^\| {a['alert']} \| {a['labels']['severity']} \|", docs, flags=re.M), a["alert"]


def test_every_alert_is_in_the_per_engine_table() -> None:
    docs = DOCS.read_text()
    section = docs.split("\n## What has data on each engine\n", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("| Millstream")]
    listed = {name for row in rows for name in re.findall(r"Millstream[A-Za-z]+", row.split("|")[1])}
    assert {a["alert"] for a in _alerts()} == listed


# ------------------------------------------------------------------------------------ dashboards
def test_runbooks_name_dashboards_and_panels_that_exist() -> None:
    """Dashboards ("the SPC dashboard") and panels ("Pipeline health: <panel>)") a runbook names must
    be there when the on-call engineer opens Grafana."""
    from infra.grafana import dashboards

    boards = [build() for build in dashboards.DASHBOARDS.values()]
    titles = {b["title"].removeprefix("Millstream / ").lower(): b for b in boards}

    def panel_titles(board: dict[str, Any]) -> set[str]:
        panels = [p for top in board["panels"] for p in (top, *(top.get("panels") or []))]
        return {p.get("title", "").lower() for p in panels if p.get("type") != "row"}

    names = "|".join(re.escape(t) for t in titles)
    checked = 0
    for a in _alerts():
        text = " ".join(a["annotations"]["runbook"].split())
        for board in re.findall(rf"\b({names}) dashboard\b", text, flags=re.I):
            checked += 1
            assert board.lower() in titles, a["alert"]
        for board, panel in re.findall(rf"\b({names}): ([^)]+)\)", text, flags=re.I):
            checked += 1
            assert panel.lower() in panel_titles(titles[board.lower()]), (a["alert"], board, panel)
    assert checked >= 4  # ConsumerLagRising, MachineSilent, AnomalyBurst, SpcOutOfControl


def test_every_alert_links_a_dashboard_that_exists() -> None:
    """The `dashboard` annotation (a path below the Grafana URL) opens an existing dashboard, and the
    variables it sets exist there, so a notification leads straight to the right view."""
    from urllib.parse import parse_qsl, urlsplit

    from infra.grafana import dashboards

    boards = {b["uid"]: b for b in (build() for build in dashboards.DASHBOARDS.values())}
    for a in _alerts():
        link = urlsplit(a["annotations"].get("dashboard", ""))
        m = re.fullmatch(r"/d/([a-z0-9-]+)", link.path)
        assert m and m.group(1) in boards, (a["alert"], link)
        names = {v["name"] for v in boards[m.group(1)]["templating"]["list"]}
        for key, value in parse_qsl(link.query, keep_blank_values=True):
            assert key.startswith("var-") and key.removeprefix("var-") in names, (a["alert"], key)
            labels = set(re.findall(r"\$labels\.(\w+)", value))
            assert labels and labels <= BOUNDED_LABELS, (a["alert"], value)


def test_runbook_queries_run_on_the_migrated_schema(tmp_path: Path) -> None:
    """A runbook's SQL is pasted into `millstream sql` during an incident: it must run as written."""
    from sinks.clickhouse import connect
    from sinks.config import ClickHouseSettings
    from sinks.migrations import migrate

    queries = [
        (a["alert"], q.strip())
        for a in _alerts()
        for q in re.findall(r"(SELECT [^;]+);", " ".join(a["annotations"]["runbook"].split()))
    ]
    assert queries  # MillstreamSinkRejectingRows
    client = connect(ClickHouseSettings(data_dir=tmp_path))
    try:
        migrate(client)
        for alert, q in queries:
            try:
                client.query(q)
            except Exception as exc:  # an unknown table or column
                pytest.fail(f"{alert}: {q}: {exc}")
    finally:
        client.close()


def test_not_ready_explains_every_readiness_check_the_code_registers() -> None:
    """MillstreamNotReady carries the failing check's name: its description and runbook must say what
    each name means and where to look, for every check a process registers."""
    checks = {
        name
        for pkg in ("ingest", "streams", "sinks")
        for path in (REPO / pkg).rglob("*.py")
        for name in re.findall(r"add_readiness_check\(\s*\"([a-z_]+)\"", path.read_text())
    }
    assert {"broker", "clickhouse", "windows_agent", "flink_job"} <= checks
    (alert,) = [a for a in _alerts() if a["alert"] == "MillstreamNotReady"]
    for field in ("description", "runbook"):
        text = alert["annotations"][field]
        assert {c for c in checks if not re.search(rf"\b{c}\b", text)} == set(), field
    section = DOCS.read_text().split("\n### MillstreamNotReady\n", 1)[1].split("\n### ", 1)[0]
    assert {c for c in checks if f"`{c}`" not in section} == set()


def test_clickhouse_exports_what_the_disk_alert_reads() -> None:
    """MillstreamClickHouseDiskFilling reads ClickHouse's asynchronous metrics: the installation must
    export them, and the PodMonitor must scrape its `metrics` port, or the alert never has data."""
    chi = (K8S / "clickhouse" / "clickhouse.yaml").read_text()
    assert re.search(r'prometheus/asynchronous_metrics: "true"', chi)
    monitors = list(yaml.safe_load_all((K8S / "monitoring" / "podmonitors.yaml").read_text()))
    (clickhouse,) = [m for m in monitors if m["metadata"]["name"] == "clickhouse"]
    assert [e["port"] for e in clickhouse["spec"]["podMetricsEndpoints"]] == ["metrics"]
    assert "9363" in chi
