"""Every Prometheus panel of every dashboard returns data from a real run of the pipeline.

The real processes (broker, sink, Faust worker, plant simulator) run briefly; a real Prometheus
scrapes them with infra/prometheus/rules.yml loaded, so the recording rules the dashboards read are
evaluated too. Template variables are resolved the way Grafana does (label values from Prometheus),
Grafana's interval variables are replaced, and each query goes through /api/v1/query.

A few bad records are produced into the readings topic so the dead-letter panels have something
to show, as they would in a plant with one misconfigured gateway.

A real Alertmanager runs infra/prometheus/alertmanager.yml (timings shortened; the pager and chat
receivers replaced by webhooks to a recorder in this test; the sink webhook pointed at the running
sink): alerts of each severity are posted to it, and the test checks where they were routed and
that every one landed in the ClickHouse ``alerts`` table through the sink's /alertmanager endpoint.
"""

from __future__ import annotations

import json
import math
import shutil
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import yaml

from infra.grafana import dashboards
from infra.grafana.panels import CLICKHOUSE_TYPE, PROMETHEUS_TYPE
from infra.grafana.queries import (
    PanelTarget,
    clickhouse_sql,
    duration_ms,
    label_values_query,
    prometheus_query,
    query_variables,
    targets,
)
from infra.pipeline import LocalPipeline, PipelineOptions
from infra.procs import ManagedProcess, free_port, wait_until
from infra.stack import LocalPrometheus, ScrapeTarget

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
RULES = REPO / "infra" / "prometheus" / "rules.yml"
ALERTMANAGER = REPO / "infra" / "prometheus" / "alertmanager.yml"
RATE_INTERVAL = "20s"  # stands in for $__rate_interval / $__interval (scrapes every second here)
WAIT_FOR_DATA_S = 70.0

# Metrics the dashboards read that the code does not export yet (or not in this shape). A panel
# reading one is expected to come back empty; strict xfail turns into a failure as soon as the
# metric appears, so the entry is removed together with the fix. See docs/observability.md.
PENDING: dict[str, str] = {}  # metric name -> why its panel cannot show data yet

BOARDS = {name: build() for name, build in dashboards.DASHBOARDS.items()}
PROM_TARGETS = [t for b in BOARDS.values() for t in targets(b) if t.datasource == PROMETHEUS_TYPE]


def _pending(t: PanelTarget) -> str | None:
    if t.query.rstrip().endswith("or vector(0)"):
        return None
    return next((why for name, why in PENDING.items() if name in t.query), None)


def _params() -> list[Any]:
    out = []
    for t in PROM_TARGETS:
        why = _pending(t)
        marks = [pytest.mark.xfail(strict=True, reason=f"waits for a metric change: {why}")] if why else []
        out.append(pytest.param(t, id=t.id, marks=marks))
    return out


# ------------------------------------------------------------------------------------ Prometheus API
def _get(prom: LocalPrometheus, path: str, params: list[tuple[str, str]]) -> Any:
    url = f"{prom.url}{path}?{urllib.parse.urlencode(params)}"
    with urllib.request.urlopen(url, timeout=10) as r:  # noqa: S310 - loopback URL
        body = json.loads(r.read())
    assert body.get("status") == "success", body
    return body["data"]


def resolve_variables(prom: LocalPrometheus, board: dict[str, Any]) -> tuple[dict[str, list[str]], set[str]]:
    """Values of the dashboard's query variables as Grafana would offer them (first value, or All)."""
    values: dict[str, list[str]] = {}
    multi: set[str] = set()
    for v in query_variables(board):
        match, label = label_values_query(v)
        params = [("match[]", prometheus_query(match, values, multi))] if match else []
        found = sorted(_get(prom, f"/api/v1/label/{label}/values", params))
        if not found:
            return values, multi  # not resolvable yet
        if v.get("multi"):
            multi.add(v["name"])
            values[v["name"]] = found  # "All"
        else:
            values[v["name"]] = found[:1]
    return values, multi


def has_data(result: list[dict[str, Any]]) -> bool:
    return any(not math.isnan(float(r["value"][1])) for r in result)


def evaluate_all(prom: LocalPrometheus) -> dict[str, tuple[str, list[dict[str, Any]]]]:
    """target id -> (query sent, result vector)."""
    out: dict[str, tuple[str, list[dict[str, Any]]]] = {}
    for board in BOARDS.values():
        values, multi = resolve_variables(prom, board)
        for t in targets(board):
            if t.datasource != PROMETHEUS_TYPE:
                continue
            q = prometheus_query(t.query, values, multi, RATE_INTERVAL)
            if "$" in q:  # a variable that has no value yet
                out[t.id] = (q, [])
                continue
            try:
                out[t.id] = (q, prom.query(q))
            except Exception as exc:  # a slow or failed query: reported by the test of this target
                out[t.id] = (f"{q} -> {exc}", [])
    return out


# ------------------------------------------------------------------------------------ Alertmanager
ALERTS_POSTED = {
    "critical": {"alertname": "MillstreamPipelineStalled", "severity": "critical", "job": "millstream"},
    "warning": {"alertname": "MillstreamMachineSilent", "severity": "warning", "job": "millstream",
                "plant": "p1", "line": "l1", "machine_id": "m001"},
    "info": {"alertname": "MillstreamLateReadings", "severity": "info", "job": "millstream",
             "component": "windows", "stage": "windows"},
}  # fmt: skip


class _Recorder(BaseHTTPRequestHandler):
    """Stands in for the pager and chat services: records what Alertmanager posts to /<receiver>."""

    posts: list[tuple[str, dict[str, Any]]] = []

    def do_POST(self) -> None:  # noqa: N802 - http.server API
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.posts.append((self.path.strip("/"), json.loads(body)))
        self.send_response(200)
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - http.server API
        return


def alertmanager_config(sink_port: int, hook_port: int) -> dict[str, Any]:
    """The example config with the same routing tree, short timings and local receivers."""
    cfg: dict[str, Any] = yaml.safe_load(ALERTMANAGER.read_text())

    def shorten(route: dict[str, Any]) -> None:
        route["group_wait"], route["group_interval"] = "1s", "1s"
        for child in route.get("routes", []):
            shorten(child)

    shorten(cfg["route"])
    for r in cfg["receivers"]:
        if r["name"] == "millstream-sink":
            r["webhook_configs"][0]["url"] = f"http://127.0.0.1:{sink_port}/alertmanager"
        elif len(r) > 1:  # pager, chat: a webhook to the recorder instead of PagerDuty/Slack
            name = r["name"]
            r.clear()
            r.update({"name": name, "webhook_configs": [{"url": f"http://127.0.0.1:{hook_port}/{name}"}]})
    return cfg


def start_alertmanager(data_dir: Path, cfg: dict[str, Any]) -> tuple[ManagedProcess, str]:
    binary = shutil.which("prometheus-alertmanager") or shutil.which("alertmanager")
    if binary is None:
        pytest.fail("Alertmanager is not installed: sudo apt-get install -y prometheus-alertmanager")
    data_dir.mkdir(parents=True, exist_ok=True)
    cfg_path = data_dir / "alertmanager.yml"
    cfg_path.write_text(yaml.safe_dump(cfg))
    port = free_port()
    proc = ManagedProcess(
        "alertmanager",
        [binary, f"--config.file={cfg_path}", f"--storage.path={data_dir / 'data'}",
         f"--web.listen-address=127.0.0.1:{port}", "--cluster.listen-address="],
        data_dir / "alertmanager.log",
    ).start()  # fmt: skip
    url = f"http://127.0.0.1:{port}"

    def ready() -> bool:
        proc.check_alive()
        with urllib.request.urlopen(f"{url}/-/ready", timeout=2) as r:  # noqa: S310 - loopback URL
            return bool(r.status == 200)

    wait_until(ready, 30, "Alertmanager to start")
    return proc, url


def _iso(t: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))


def post_alerts(url: str) -> None:
    now = time.time()
    body = [
        {"labels": labels, "annotations": {"summary": f"test {sev} alert"}, "startsAt": _iso(now),
         "endsAt": _iso(now + 600)}
        for sev, labels in ALERTS_POSTED.items()
    ]  # fmt: skip
    req = urllib.request.Request(  # noqa: S310 - loopback URL
        f"{url}/api/v2/alerts", json.dumps(body).encode(), {"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(req, timeout=10) as r:  # noqa: S310
        assert r.status == 200


def routed_to(posts: list[tuple[str, dict[str, Any]]]) -> dict[str, set[str]]:
    """alertname -> receivers (paths) the recorder got it on."""
    out: dict[str, set[str]] = {}
    for path, payload in posts:
        for a in payload.get("alerts", []):
            out.setdefault(a["labels"]["alertname"], set()).add(path)
    return out


# ------------------------------------------------------------------------------------ the run
@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    data_dir: Path = tmp_path_factory.mktemp("dash-live")
    opts = PipelineOptions(
        data_dir=data_dir,
        window="tumbling:2s",
        out_of_orderness_ms=500,
        allowed_lateness_ms=1000,
        idle_timeout_ms=1000,
        scrape_interval_s=1.0,
        extra_env={
            "MILLSTREAM_SPC_PHASE1_COUNT": "5",  # control limits after 5 windows: signals within seconds
            "MILLSTREAM_SIM_MACHINES_PER_LINE": "2",  # two lines
            "MILLSTREAM_SIM_FAULT_PROBABILITY": "0.2",  # faults (and their counter) early in the run
            "MILLSTREAM_SPOOL_DIR": str(data_dir / "spool"),  # the gateway runs with store-and-forward
        },
    )
    started_ms = int(time.time() * 1000)
    recorder = ThreadingHTTPServer(("127.0.0.1", 0), _Recorder)
    threading.Thread(target=recorder.serve_forever, daemon=True).start()
    am: ManagedProcess | None = None
    with LocalPipeline(opts) as pipe:
        pipe.start_stack()
        prom = LocalPrometheus(
            data_dir / "rules-prometheus",
            [ScrapeTarget(c, p) for c, p in pipe.ports.items()],
            scrape_interval_s=1.0,
            rule_files=[RULES],
        ).start()
        try:
            pipe.start_sink()
            pipe.start_worker()
            pipe.start_gateway(duration_s=120, machines=4, rate_hz=5)
            _produce_bad_records(pipe)
            cfg = alertmanager_config(pipe.ports["sink"], recorder.server_address[1])
            am, am_url = start_alertmanager(data_dir / "alertmanager", cfg)
            wait_until(lambda: _sink_ready(pipe), 60, "the sink's webhook endpoint")
            post_alerts(am_url)
            wanted = {t.id for t in PROM_TARGETS if _pending(t) is None}
            results: dict[str, tuple[str, list[dict[str, Any]]]] = {}
            deadline = time.monotonic() + WAIT_FOR_DATA_S
            while time.monotonic() < deadline:
                pipe.check_alive("sink", "windows", "gateway")  # a dead process fails with its log tail
                results.update(evaluate_all(prom))
                routed = routed_to(_Recorder.posts)
                if all(has_data(results[i][1]) for i in wanted) and len(routed) >= 2:
                    break
                time.sleep(2.0)
            variables = {b["uid"]: resolve_variables(prom, b)[0] for b in BOARDS.values()}
        finally:
            if am is not None:
                am.stop()
            prom.stop()
            recorder.shutdown()
    from sinks.clickhouse import ClickHouseSettings, connect

    client = connect(ClickHouseSettings(url=f"chdb://{pipe.clickhouse_path}"))
    try:
        alerts = client.query("SELECT alertname, severity, status, receiver FROM alerts FINAL").result_rows
        ch_rows = run_clickhouse_panels(client, variables, started_ms)
        spc_rows = int(client.query("SELECT count() FROM spc_signals").result_rows[0][0])
    finally:
        client.close()
    yield {  # every process is stopped by now
        "spc_rows": spc_rows,
        "results": results,
        "variables": variables,
        "ch_rows": ch_rows,
        "routed": routed_to(_Recorder.posts),
        "alerts": alerts,
    }


def run_clickhouse_panels(
    client: Any, variables: dict[str, dict[str, list[str]]], since_ms: int
) -> dict[str, tuple[str, int | str]]:
    """target id -> (SQL, rows returned or the error) for every ClickHouse panel, over this run."""
    out: dict[str, tuple[str, int | str]] = {}
    now = int(time.time() * 1000)
    for board in BOARDS.values():
        values = variables[board["uid"]]
        multi = {v["name"] for v in query_variables(board) if v.get("multi")}
        for t in targets(board):
            if t.datasource != CLICKHOUSE_TYPE:
                continue
            start = now - duration_ms(t.time_from) if t.time_from else since_ms - 60_000
            sql = clickhouse_sql(t.query, values, multi, from_ms=start, to_ms=now + 60_000)
            try:
                out[t.id] = (sql, len(client.query(sql).result_rows))
            except Exception as exc:
                out[t.id] = (sql, str(exc))
    return out


def _sink_ready(pipe: LocalPipeline) -> bool:
    pipe.check_alive("sink")
    port = pipe.ports["sink"]
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2) as r:  # noqa: S310
        return bool(r.status == 200)


def _produce_bad_records(pipe: LocalPipeline) -> None:
    from confluent_kafka import Producer

    producer = Producer(pipe.kafka.librdkafka())
    for i in range(3):
        producer.produce(pipe.topics.topic_readings, b"\x17\x00not avro %d" % i, key=b"m001")
    assert producer.flush(30) == 0


def test_every_query_variable_resolves(live: dict[str, Any]) -> None:
    for b in BOARDS.values():
        got = live["variables"][b["uid"]]
        names = [v["name"] for v in query_variables(b)]
        assert set(got) == set(names), (b["uid"], got)
        assert all(got[n] for n in names), (b["uid"], got)
    machine = live["variables"]["millstream-machine-detail"]
    assert machine["machine"][0].startswith("m") and machine["line"][0].startswith("l")


@pytest.mark.parametrize("target", _params())
def test_prometheus_panel_returns_data(live: dict[str, Any], target: PanelTarget) -> None:
    query, result = live["results"][target.id]
    assert has_data(result), f"no data: {query}"


def test_alertmanager_routes_each_severity_to_its_receiver(live: dict[str, Any]) -> None:
    routed = live["routed"]
    assert routed.get(ALERTS_POSTED["critical"]["alertname"]) == {"pager"}
    assert routed.get(ALERTS_POSTED["warning"]["alertname"]) == {"chat"}
    assert ALERTS_POSTED["info"]["alertname"] not in routed


def test_every_alert_lands_in_clickhouse_through_the_sink(live: dict[str, Any]) -> None:
    got = {(name, sev, status, receiver) for name, sev, status, receiver in live["alerts"]}
    want = {(a["alertname"], a["severity"], "firing", "millstream-sink") for a in ALERTS_POSTED.values()}
    assert got == want


# Tables the run fills: windows from the simulator, dead letters from the bad records, alerts from
# Alertmanager. Panels over the others (anomalies, raw readings, metadata) may be empty here.
FILLED_BY_THE_RUN = ("window_aggregates", "dead_letters", "alerts", "v_machine_latest", "v_rollup_1h")


def test_clickhouse_panels_run_on_the_data_of_the_run(live: dict[str, Any]) -> None:
    errors = {i: r for i, (sql, r) in live["ch_rows"].items() if isinstance(r, str)}
    assert errors == {}
    empty = [
        sql
        for sql, rows in live["ch_rows"].values()
        if rows == 0 and any(f"FROM {t} " in sql for t in FILLED_BY_THE_RUN) and "v_data_gaps" not in sql
        # Whether random data crosses a control limit within the run is chance: a panel filtered on
        # SPC signals may be empty when the run produced none.
        and not ("spc_signals" in sql and live["spc_rows"] == 0)
    ]
    assert empty == []
