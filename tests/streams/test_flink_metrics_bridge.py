"""The `run flink` client mirrors the job's Flink counters into the shared Prometheus metrics, so the
dashboards' anomaly panels and MillstreamAnomalyBurst work on the Flink engine too.

Flink's REST API is stood in here (a running MiniCluster's answers, in the shape FlinkRest returns
them): the end-to-end path from the job's counters through REST is exercised by
tests/e2e/test_flink_recovery.py (records_in) and the live dashboards test; this test pins the
mapping of each counter to its Prometheus series, which those runs are too short to reach for anomaly
events (the detectors warm up first).
"""

from __future__ import annotations

from typing import Any

from prometheus_client import REGISTRY

from streams.anomaly.events import opened_by_kind
from streams.flink.runner import MetricsBridge, _user_metric


class RestStandIn:
    """Per vertex, the job's metrics summed over subtasks, as FlinkRest.user_metrics gives them."""

    def __init__(self) -> None:
        self.by_vertex: dict[str, dict[str, float]] = {"source": {}, "windows": {}}

    def vertices(self, job_id: str) -> list[str]:
        return list(self.by_vertex)

    def user_metrics(self, job_id: str, vertex: str, agg: str = "sum") -> dict[str, float]:
        return dict(self.by_vertex[vertex])


def _events(kind: str) -> float:
    return REGISTRY.get_sample_value("millstream_anomaly_events_total", {"kind": kind}) or 0.0


def test_flink_metric_ids_of_the_anomaly_counters_are_recognised() -> None:
    # ids as Flink's REST API lists them: <subtask>.<operator scope>.<metric>
    assert _user_metric("0.Windows.anomaly_events_sensor") == "anomaly_events_sensor"
    assert _user_metric("1.Windows.anomaly_events_machine") == "anomaly_events_machine"
    assert _user_metric("0.Windows.numRecordsIn") is None


def test_opened_anomaly_events_reach_the_prometheus_counter_by_kind() -> None:
    rest = RestStandIn()
    bridge = MetricsBridge(rest, "job")  # type: ignore[arg-type]
    before = {k: _events(k) for k in ("sensor", "machine")}
    rest.by_vertex["windows"] = {
        "anomaly_events_sensor": 3.0,
        "anomaly_events_machine": 1.0,
        "anomalies": 7.0,
    }
    bridge.update()
    assert {k: _events(k) - before[k] for k in before} == {"sensor": 3.0, "machine": 1.0}
    # the job's counters are totals: only the increase since the last poll is added
    rest.by_vertex["windows"] = {
        "anomaly_events_sensor": 5.0,
        "anomaly_events_machine": 1.0,
        "anomalies": 9.0,
    }
    bridge.update()
    assert {k: _events(k) - before[k] for k in before} == {"sensor": 5.0, "machine": 1.0}


def test_only_opening_records_count_by_the_detector_that_raised_them() -> None:
    records: list[dict[str, Any]] = [
        {"state": "open", "sensor": "vibration"},
        {"state": "close", "sensor": "vibration"},
        {"state": "open", "sensor": "machine"},
        {"state": "open", "sensor": "temperature"},
    ]
    assert opened_by_kind(records) == {"sensor": 2, "machine": 1}
    assert opened_by_kind([]) == {"sensor": 0, "machine": 0}
