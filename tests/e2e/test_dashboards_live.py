"""Every Prometheus panel of every dashboard returns data from a real run of the pipeline, on each
stream engine: the Faust worker (`millstream run faust`) and the Flink job on a local MiniCluster
(`millstream run flink`).

The real processes (broker, sink, stream job, plant simulator) run briefly; a real Prometheus
scrapes them with infra/prometheus/rules.yml loaded, so the recording rules the dashboards read are
evaluated too. Template variables are resolved the way Grafana does (label values from Prometheus,
the SQL of ClickHouse variables from the sink's ClickHouse), Grafana's interval variables are
replaced, and each query goes through /api/v1/query. The embedded ClickHouse is locked by the sink
process, so the dashboards with ClickHouse variables are evaluated after the sink stopped (the
stream job and the gateway still run); Pipeline health is evaluated while everything runs.

What the Flink job cannot show is listed in FLINK_NO_DATA (docs/observability.md, What has data on
each engine): those panels must be empty, so the list and the docs stay true when the engine
starts exporting more.

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
    legend_labels,
    metric_names,
    prometheus_query,
    query_variables,
    targets,
    variable_datasource,
    variable_sql,
)
from infra.pipeline import LocalPipeline, PipelineOptions
from infra.procs import ManagedProcess, free_port, wait_until
from infra.stack import LocalPrometheus, ScrapeTarget

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
RULES = REPO / "infra" / "prometheus" / "rules.yml"
ALERTMANAGER = REPO / "infra" / "prometheus" / "alertmanager.yml"
RATE_INTERVAL = "20s"  # stands in for $__rate_interval / $__interval (scrapes every second here)
WAIT_FOR_DATA_S = {"faust": 70.0, "flink": 150.0}  # the MiniCluster takes a while to start
ENGINES = ("faust", "flink")

# Metrics the dashboards read that the code does not export yet (or not in this shape). A panel
# reading one is expected to come back empty; strict xfail turns into a failure as soon as the
# metric appears, so the entry is removed together with the fix. See docs/observability.md.
PENDING: dict[str, str] = {}  # metric name -> why its panel cannot show data yet

BOARDS = {name: build() for name, build in dashboards.DASHBOARDS.items()}
PROM_TARGETS = [t for b in BOARDS.values() for t in targets(b) if t.datasource == PROMETHEUS_TYPE]
# Dashboards whose variables come (partly) from ClickHouse: evaluated once the sink has stopped.
CH_VARIABLE_BOARDS = {
    b["uid"]
    for b in BOARDS.values()
    if any(variable_datasource(v) == CLICKHOUSE_TYPE for v in query_variables(b))
}
# Metrics only a stream job that runs the domain metrics exports (Faust, Flink in loopback mode).
DOMAIN_METRICS = {
    "millstream_window_mean", "millstream_last_reading_timestamp_seconds", "millstream_anomaly_score",
}  # fmt: skip

# Prometheus panels without data on `millstream run flink` (process mode): the Flink client process
# mirrors records in/out, dead letters, decode errors and the watermark of stage `windows` only; no
# consumer lag, end-to-end latency or catch-up counts of the windows stage, no per-machine gauges,
# no SPC counts by chart and rule (docs/observability.md, What has data on each engine); the anomaly
# event counts are mirrored. Gateway, sink and ClickHouse panels are the same processes on both engines.
FLINK_NO_DATA = {
    "millstream-plant-overview/Machines reporting/A",
    "millstream-plant-overview/Machines silent > 120 s/A",
    "millstream-plant-overview/Seconds since last reading, 20 longest/A",
    "millstream-plant-overview/Machines reporting by line/A",
    "millstream-plant-overview/Latest window mean: $sensor/A",
    "millstream-machine-detail/Seconds since last reading/A",
    "millstream-machine-detail/Highest anomaly score/A",
    "millstream-machine-detail/Window mean per sensor/A",
    "millstream-machine-detail/Anomaly score per sensor/A",
    "millstream-spc/Signals per 10 min, by chart and rule/A",
    "millstream-spc/Signal rate by rule/A",
    "millstream-anomalies/Highest anomaly score/A",
    "millstream-anomalies/Top 10 anomaly scores/A",
    "millstream-pipeline-health/Records re-read after a gap / s/A",
}
NO_DATA = {"faust": set[str](), "flink": FLINK_NO_DATA}
# "X or vector(0)" always has data; X itself must read series that exist (a typo in X would show a
# reassuring 0 forever), except where X has no series until something happens: no alert firing,
# every target up, no delivery failure, no series dropped. On Flink the SPC counters by chart and
# rule do not exist.
MAY_HAVE_NO_SERIES = {
    "ALERTS",
    "millstream_gateway_delivery_failures_total",
    "millstream_metrics_series_dropped_total",
}
LEFT_EMPTY = {
    "faust": {"millstream-pipeline-health/Targets down/A"},
    "flink": {
        "millstream-pipeline-health/Targets down/A",
        "millstream-plant-overview/SPC rule-1 signals (10 min)/A",
        "millstream-spc/Rule-1 signals (10 min)/A",
        "millstream-spc/All run-rule signals (10 min)/A",
    },
}


def test_the_per_engine_exception_lists_name_panels_that_exist() -> None:
    """A renamed or removed panel must leave the lists too, or they stop saying anything."""
    ids = {t.id for t in PROM_TARGETS}
    for engine in ("faust", "flink"):
        assert NO_DATA[engine] <= ids, sorted(NO_DATA[engine] - ids)
        assert LEFT_EMPTY[engine] <= ids, sorted(LEFT_EMPTY[engine] - ids)


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


def resolve_variables(
    prom: LocalPrometheus, board: dict[str, Any], clickhouse: Any = None
) -> tuple[dict[str, list[str]], set[str]]:
    """Values of the dashboard's query variables as Grafana would offer them (first value, or All).

    Stops at the first variable without values, and at the first ClickHouse variable when no
    ClickHouse client is given (the sink holds the embedded engine while it runs).
    """
    values: dict[str, list[str]] = {}
    multi: set[str] = set()
    for v in query_variables(board):
        if variable_datasource(v) == CLICKHOUSE_TYPE:
            if clickhouse is None:
                return values, multi
            found = sorted({str(r[0]) for r in clickhouse.query(variable_sql(v, values, multi)).result_rows})
        else:
            match, label = label_values_query(v)
            params = [("match[]", prometheus_query(match, values, multi))] if match else []
            found = sorted(_get(prom, f"/api/v1/label/{label}/values", params))
        if not found:
            return values, multi  # not resolvable (yet)
        if v.get("multi"):
            multi.add(v["name"])
            values[v["name"]] = found  # "All"
        else:
            values[v["name"]] = found[:1]
    return values, multi


def has_data(result: list[dict[str, Any]]) -> bool:
    return any(not math.isnan(float(r["value"][1])) for r in result)


Results = dict[str, tuple[str, list[dict[str, Any]]]]


def evaluate(prom: LocalPrometheus, board: dict[str, Any], clickhouse: Any = None) -> Results:
    """target id -> (query sent, result vector) for the Prometheus panels of one dashboard."""
    out: Results = {}
    values, multi = resolve_variables(prom, board, clickhouse)
    for t in targets(board):
        if t.datasource != PROMETHEUS_TYPE:
            continue
        q = prometheus_query(t.query, values, multi, RATE_INTERVAL)
        if "$" in q:  # a variable that has no value yet
            out[t.id] = (q, [])
            continue
        try:
            out[t.id] = (q, prom.query(q))
            left = _left_of_zero_fallback(q)
            if left is not None:
                out[t.id + LEFT] = (left, prom.query(left))
        except Exception as exc:  # a slow or failed query: reported by the test of this target
            out[t.id] = (f"{q} -> {exc}", [])
    return out


LEFT = "#left"  # result key of the expression before "or vector(0)"
ZERO_FALLBACK = " or vector(0)"


def _left_of_zero_fallback(query: str) -> str | None:
    q = query.rstrip()
    return q.removesuffix(ZERO_FALLBACK) if q.endswith(ZERO_FALLBACK) else None


def _complete(results: Results, wanted: set[str]) -> bool:
    return all(i in results and has_data(results[i][1]) for i in wanted)


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
def start_stream_job(pipe: LocalPipeline, engine: str) -> None:
    if engine == "faust":
        pipe.start_worker()
        return
    env = {
        **pipe.env(),
        "MILLSTREAM_FLINK_DELIVERY": "at-least-once",
    }  # the local broker: see the recovery test
    pipe.procs["windows"] = ManagedProcess(
        "windows",
        [*pipe.cli(), "run", "flink", "--metrics-port", str(pipe.ports["windows"])],
        pipe.logs / "windows.log",
        env=env,
    ).start()


@pytest.fixture(scope="module", params=ENGINES)
def live(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, Any]]:
    engine: str = request.param
    data_dir: Path = tmp_path_factory.mktemp(f"dash-live-{engine}")
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
    _Recorder.posts = []
    am: ManagedProcess | None = None
    wanted = {t.id for t in PROM_TARGETS if _pending(t) is None} - NO_DATA[engine]
    now_wanted = {i for i in wanted if i.split("/", 1)[0] not in CH_VARIABLE_BOARDS}
    client: Any = None
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
            start_stream_job(pipe, engine)
            pipe.start_gateway(duration_s=120 if engine == "faust" else 240, machines=4, rate_hz=5)
            _produce_bad_records(pipe)
            cfg = alertmanager_config(pipe.ports["sink"], recorder.server_address[1])
            am, am_url = start_alertmanager(data_dir / "alertmanager", cfg)
            wait_until(lambda: _sink_ready(pipe), 60, "the sink's webhook endpoint")
            post_alerts(am_url)
            results: Results = {}
            deadline = time.monotonic() + WAIT_FOR_DATA_S[engine]
            # 1. Everything runs: Pipeline health (and whatever needs no ClickHouse variable).
            while time.monotonic() < deadline:
                pipe.check_alive("sink", "windows", "gateway")  # a dead process fails with its log tail
                for board in BOARDS.values():
                    results.update(evaluate(prom, board))
                if _complete(results, now_wanted) and len(routed_to(_Recorder.posts)) >= 2:
                    break
                time.sleep(2.0)
            # 2. The sink stops (it holds the embedded ClickHouse); the stream job and the gateway go
            # on: the dashboards with ClickHouse variables, their values read from the sink's tables.
            pipe.stop("sink")
            from sinks import metadata
            from sinks.clickhouse import ClickHouseSettings, connect

            client = connect(ClickHouseSettings(url=f"chdb://{pipe.clickhouse_path}"))
            metadata.load(client, pipe.metadata_path)  # the simulated plant's spec limits: v_capability
            later = [b for b in BOARDS.values() if b["uid"] in CH_VARIABLE_BOARDS]
            while True:
                pipe.check_alive("windows", "gateway")
                for board in later:
                    results.update(evaluate(prom, board, client))
                if _complete(results, wanted) or time.monotonic() >= deadline:
                    break
                time.sleep(2.0)
            variables = {b["uid"]: resolve_variables(prom, b, client)[0] for b in BOARDS.values()}
        finally:
            if am is not None:
                am.stop()
            prom.stop()
            recorder.shutdown()
    try:
        assert client is not None
        alerts = client.query("SELECT alertname, severity, status, receiver FROM alerts FINAL").result_rows
        ch_rows = run_clickhouse_panels(client, variables, started_ms)
        spc_rows = int(client.query("SELECT count() FROM spc_signals").result_rows[0][0])
    finally:
        if client is not None:
            client.close()
    yield {  # every process is stopped by now
        "engine": engine,
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
            sql = t.query
            try:  # a variable without values leaves the query unexpanded: an error of this panel
                sql = clickhouse_sql(t.query, values, multi, from_ms=start, to_ms=now + 60_000)
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


def _engine_only(variable: dict[str, Any]) -> bool:
    """A Prometheus variable read from a metric only the domain metrics export."""
    if variable_datasource(variable) != PROMETHEUS_TYPE:
        return False
    match, _ = label_values_query(variable)
    return bool(metric_names(match or "") & DOMAIN_METRICS)


def test_every_query_variable_resolves(live: dict[str, Any]) -> None:
    for b in BOARDS.values():
        got = live["variables"][b["uid"]]
        names = [v["name"] for v in query_variables(b)]
        if live["engine"] == "flink":  # only the sensor of "Latest window mean: $sensor" may be missing
            names = [v["name"] for v in query_variables(b) if not _engine_only(v)]
        assert set(names) <= set(got), (b["uid"], got)
        assert all(got[n] for n in names), (b["uid"], got)
    machine = live["variables"]["millstream-machine-detail"]
    assert machine["machine"][0].startswith("m") and machine["line"][0].startswith("l")
    assert {"plant", "line", "machine", "sensor"} <= set(machine)


@pytest.mark.parametrize("target", _params())
def test_prometheus_panel_returns_data(live: dict[str, Any], target: PanelTarget) -> None:
    query, result = live["results"][target.id]
    if target.id in NO_DATA[live["engine"]]:
        assert not has_data(result), f"has data on {live['engine']}: update NO_DATA and the docs: {query}"
    else:
        assert has_data(result), f"no data: {query}"


ZERO_FALLBACK_TARGETS = [
    t
    for t in PROM_TARGETS
    if _left_of_zero_fallback(t.query) is not None and not metric_names(t.query) & MAY_HAVE_NO_SERIES
]


@pytest.mark.parametrize("target", ZERO_FALLBACK_TARGETS, ids=lambda t: t.id)
def test_zero_fallback_panels_read_series_that_exist(live: dict[str, Any], target: PanelTarget) -> None:
    query, result = live["results"][target.id + LEFT]
    if target.id in LEFT_EMPTY[live["engine"]]:
        assert not has_data(result), f"has series on {live['engine']}: update LEFT_EMPTY: {query}"
    else:
        assert has_data(result), f"reads no series, the panel shows 0 for ever: {query}"


@pytest.mark.parametrize("target", [t for t in PROM_TARGETS if legend_labels(t.legend)], ids=lambda t: t.id)
def test_legends_name_labels_the_series_carry(live: dict[str, Any], target: PanelTarget) -> None:
    """A legend like "{{stage}} {{topic}}" shows blanks when a label is aggregated away."""
    _, result = live["results"][target.id]
    for series in result:
        missing = legend_labels(target.legend) - set(series["metric"])
        assert missing == set(), (target.legend, series["metric"])


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
# Alertmanager, capability from those windows and the simulator's metadata loaded above. Panels over
# the others (anomalies, raw readings) may be empty here.
FILLED_BY_THE_RUN = (
    "window_aggregates", "dead_letters", "alerts", "v_machine_latest", "v_rollup_1h", "v_capability"
)  # fmt: skip


def test_clickhouse_panels_run_on_the_data_of_the_run(live: dict[str, Any]) -> None:
    errors = {i: r for i, (sql, r) in live["ch_rows"].items() if isinstance(r, str)}
    assert errors == {}
    empty = [
        sql
        for sql, rows in live["ch_rows"].values()
        if rows == 0
        and any(f"FROM {t} " in sql for t in FILLED_BY_THE_RUN)
        and "v_data_gaps" not in sql
        # Whether random data crosses a control limit within the run is chance: a panel filtered on
        # SPC signals may be empty when the run produced none.
        and not ("spc_signals" in sql and live["spc_rows"] == 0)
    ]
    assert empty == []
