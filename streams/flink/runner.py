"""Run the Flink job: on a local MiniCluster (``millstream run flink``, replays, benchmarks) or, in
application mode, on the cluster whose PythonDriver started this process.

Metrics: the Python functions count into Flink's metric system (``records_in``, ``windows_out``,
``late_records``, ``dead_letters``, ``spc_signals``, ``anomalies``, ``anomaly_events_<kind>``,
``machines``); Flink's own
PrometheusReporter can serve those with every Flink-native metric (MILLSTREAM_FLINK_PROMETHEUS_PORT).
On the local MiniCluster this process also serves the shared Millstream metrics on
MILLSTREAM_STREAM_METRICS_PORT and mirrors the job's counters into them from Flink's REST API
(``millstream_records_in_total{stage="windows"}`` and friends), so dashboards work for both engines.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
import urllib.request
from collections.abc import Callable
from typing import Any

from prometheus_client import Counter

from sinks.metrics import (
    ANOMALY_EVENTS,
    DEAD_LETTERS,
    DECODE_ERRORS,
    RECORDS_IN,
    RECORDS_OUT,
    WATERMARK,
    add_readiness_check,
)
from streams.exceptions import StreamError
from streams.flink.job import JobSpec, build, environment, prepare_local_process
from streams.pipeline import STAGE

logger = logging.getLogger(__name__)

TERMINAL = {"FINISHED", "FAILED", "CANCELED", "SUSPENDED"}
USER_METRICS = {
    "records_in",
    "windows_out",
    "late_records",
    "spc_signals",
    "anomalies",
    "anomaly_events_sensor",
    "anomaly_events_machine",
    "machines",
    "watermark_ms",
}
# Per chart and rule the SPC signals are counted in the workers; the client only sees the total.
SPC_SIGNALS_TOTAL = Counter("millstream_flink_spc_signals", "SPC signals the Flink job emitted (all charts).")


def in_application_mode() -> bool:
    """True when Flink's PythonDriver started this process (the job then runs on that cluster)."""
    return "PYFLINK_GATEWAY_PORT" in os.environ


class FlinkRest:
    """The few REST calls the runner needs (job state, vertex record counts, user metrics)."""

    def __init__(self, port: int, host: str = "127.0.0.1") -> None:
        self.base = f"http://{host}:{port}"

    def get(self, path: str) -> Any:
        with urllib.request.urlopen(self.base + path, timeout=5) as r:  # noqa: S310 - loopback URL
            return json.loads(r.read())

    def job(self, job_id: str) -> dict[str, Any]:
        return dict(self.get(f"/jobs/{job_id}"))

    def vertices(self, job_id: str) -> list[str]:
        return [str(v["id"]) for v in self.job(job_id).get("vertices", [])]

    def records_into_windows(self, job_id: str) -> int:
        """Records the keyed windows operator has received (Flink updates this every ~1 s here)."""
        for v in self.job(job_id).get("vertices", []):
            if str(v.get("name", "")).startswith("windows"):
                return int(v.get("metrics", {}).get("read-records", 0))
        return 0

    def user_metrics(self, job_id: str, vertex: str, agg: str = "sum") -> dict[str, float]:
        """The job's own metrics of a vertex, aggregated over subtasks, by id without the operator
        scope (``records_in``, ``reason.decode_error.dead_letters``, ...)."""
        available = [m["id"] for m in self.get(f"/jobs/{job_id}/vertices/{vertex}/subtasks/metrics")]
        ids = {i: name for i in available if (name := _user_metric(i))}
        if not ids:
            return {}
        got = self.get(f"/jobs/{job_id}/vertices/{vertex}/subtasks/metrics?get={','.join(ids)}&agg={agg}")
        out: dict[str, float] = {}
        for m in got:
            name = ids[m["id"]]
            out[name] = out.get(name, 0.0) + float(m.get(agg, 0.0))
        return out


class MetricsBridge:
    """Mirror the job's Flink metrics into the shared Prometheus metrics of this process (the Python
    functions run in worker processes, whose own Prometheus registries nobody scrapes)."""

    def __init__(self, rest: FlinkRest, job_id: str) -> None:
        self.rest, self.job_id = rest, job_id
        self.seen: dict[str, float] = {}

    def _inc(self, counter: Any, name: str, value: float) -> None:
        delta = value - self.seen.get(name, 0.0)
        if delta > 0:
            counter.inc(delta)
            self.seen[name] = value

    def update(self) -> None:
        totals: dict[str, float] = {}
        watermarks: list[float] = []
        for vertex in self.rest.vertices(self.job_id):
            for name, value in self.rest.user_metrics(self.job_id, vertex).items():
                totals[name] = totals.get(name, 0.0) + value
            minimum = self.rest.user_metrics(self.job_id, vertex, agg="min")
            if "watermark_ms" in minimum:
                watermarks.append(minimum["watermark_ms"])
        for name, value in totals.items():
            if name == "records_in":
                self._inc(RECORDS_IN.labels(STAGE), name, value)
            elif name == "windows_out":
                self._inc(RECORDS_OUT.labels(STAGE), name, value)
            elif name == "late_records":
                self._inc(DEAD_LETTERS.labels(STAGE, "too_late"), name, value)
            elif name == "spc_signals":
                self._inc(SPC_SIGNALS_TOTAL, name, value)
            elif name in ("anomaly_events_sensor", "anomaly_events_machine"):
                self._inc(ANOMALY_EVENTS.labels(name.rsplit("_", 1)[1]), name, value)
            elif name.startswith("reason.") and name.endswith(".dead_letters"):
                code = name[len("reason.") : -len(".dead_letters")]
                self._inc(DEAD_LETTERS.labels(STAGE, code), name, value)
                if code == "decode_error" or code == "unknown_schema":
                    self._inc(DECODE_ERRORS.labels(STAGE), name + "#decode", value)
        if watermarks and min(watermarks) > -(2**62):
            WATERMARK.labels(STAGE).set(min(watermarks))


class LocalJob:
    """One run of the job on a local MiniCluster, started from this process."""

    def __init__(self, spec: JobSpec, log_dir: Any) -> None:
        from infra.procs import free_port

        if spec.rest_port is None:
            spec.rest_port = spec.flink.rest_port or free_port()
        self.spec = spec
        prepare_local_process(log_dir, spec.flink.python_mode)
        self.rest = FlinkRest(spec.rest_port)
        self.client: Any = None
        self._result: Any = None
        self.job_id = ""
        self.error = ""

    def start(self) -> LocalJob:
        env = environment(self.spec)
        build(env, self.spec)
        logger.info(
            "starting %s (parallelism %s, restore %s)",
            self.spec.name,
            self.spec.flink.parallelism or 1,
            self.spec.restore_path or "none",
        )
        self.client = env.execute_async(self.spec.name)
        self.job_id = str(self.client.get_job_id())
        self._result = self.client.get_job_execution_result()
        return self

    def status(self) -> str:
        """The job's state; the MiniCluster of a finished job is gone, then this is the final state."""
        if self._result is not None and self._result.done():
            return self._final()
        try:
            status = self.client.get_job_status().result()
            return str(getattr(status, "name", status))  # the enum's name: RUNNING, not JobStatus.RUNNING
        except Exception:
            if self._result is not None and self._result.done():
                return self._final()
            raise

    def _final(self) -> str:
        try:
            self._result.result()
        except Exception as exc:  # the Java exception, translated by Py4J
            text = str(exc)
            self.error = _root_cause(text)
            return "CANCELED" if "JobCancellationException" in text else "FAILED"
        return "FINISHED"

    def wait(
        self,
        stop: threading.Event | None = None,
        tick: Callable[[LocalJob], None] | None = None,
        interval: float = 1.0,
    ) -> str:
        """Block until the job ends (or ``stop`` is set: then cancel it). Returns the final state."""
        while True:
            try:
                state = self.status()
            except Exception as exc:
                if stop is not None and stop.is_set():
                    return "STOPPED"  # SIGTERM reached the JVM too (same process group); state is safe
                msg = f"lost the local Flink MiniCluster: {_root_cause(str(exc))}"
                raise StreamError(msg) from exc
            if state in TERMINAL:
                if state == "FAILED":
                    msg = f"Flink job {self.job_id} failed: {self.error}"
                    raise StreamError(msg)
                return state
            if stop is not None and stop.is_set():
                return self.cancel()
            if tick is not None:
                try:
                    tick(self)
                except Exception as exc:  # metrics and progress are best effort
                    logger.debug("tick failed: %s", exc)
            time.sleep(interval)

    def cancel(self, timeout: float = 60.0) -> str:
        """Cancel the job; the retained checkpoints stay for the next start."""
        try:
            self.client.cancel().result()
        except Exception as exc:
            logger.warning("cancel of %s failed: %s", self.job_id, exc)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                state = self.status()
            except Exception:
                return "CANCELED"
            if state in TERMINAL:
                return state
            time.sleep(0.2)
        return "CANCELING"


def _user_metric(metric_id: str) -> str | None:
    """``windows.records_in`` -> ``records_in``; ``<op>.reason.<code>.dead_letters`` ->
    ``reason.<code>.dead_letters``; None for Flink's own metrics."""
    if ".reason." in metric_id and metric_id.endswith(".dead_letters"):
        return "reason." + metric_id.split(".reason.", 1)[1]
    last = metric_id.rsplit(".", 1)[-1]
    return last if last in USER_METRICS and "." in metric_id else None


def _root_cause(text: str) -> str:
    """The last 'Caused by' of a Java stack trace (what actually went wrong)."""
    causes = [line.strip() for line in text.splitlines() if line.strip().startswith("Caused by:")]
    return (causes[-1] if causes else text.strip().splitlines()[0] if text.strip() else "unknown")[:2000]


def run_local(
    spec: JobSpec,
    log_dir: Any,
    stop: threading.Event,
    on_start: Callable[[str, int], None] | None = None,
) -> str:
    """``millstream run flink`` on the local MiniCluster, with the metrics bridge."""
    job = LocalJob(spec, log_dir).start()
    if on_start is not None:
        on_start(job.job_id, int(spec.rest_port or 0))
    add_readiness_check("flink_job", lambda: job.status() == "RUNNING")
    if spec.flink.python_mode == "loopback":
        return job.wait(stop)  # the functions run in this process and update its metrics themselves
    bridge = MetricsBridge(job.rest, job.job_id)
    return job.wait(stop, tick=lambda _: bridge.update())


def run_application(spec: JobSpec) -> None:
    """Application mode: build the graph on the cluster's environment and run it (blocks)."""
    env = environment(spec)
    build(env, spec)
    env.execute(spec.name)
