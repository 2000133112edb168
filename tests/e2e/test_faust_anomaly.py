"""Anomaly detection in the running pipeline: events from the per-machine monitors reach the
anomalies topic, ClickHouse and Prometheus consistently. Real broker, Faust worker, sink, embedded
ClickHouse, Prometheus; the simulator runs in fast-forward (an hour of plant time) with faults.

Detection quality against the simulator's fault labels is not asserted here yet: on this data the
detector finds a minority of the injected faults and raises events on a fault-free machine (see the
project notes); NAB scoring measures the detector meanwhile.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import pytest

from infra.pipeline import LocalPipeline, PipelineOptions
from infra.procs import wait_until

pytestmark = pytest.mark.integration

MACHINES = 4
SECONDS = 3600


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    data_dir = tmp_path_factory.mktemp("anomaly")
    opts = PipelineOptions(
        data_dir=data_dir, window="tumbling:60s", idle_timeout_ms=0, partitions=2,
        extra_env={"MILLSTREAM_SIM_FAULT_PROBABILITY": "0.0004"},
    )  # fmt: skip
    start = (int(time.time() * 1000) // 1000) * 1000 - (SECONDS + 600) * 1000
    with LocalPipeline(opts) as pipe:
        pipe.start_stack()
        pipe.start_sink()
        pipe.start_worker()
        gw = pipe._start(
            "gateway",
            ["gateway", "simulate", "--machines", str(MACHINES), "--rate", "1", "--seed", "11",
             "--start-ms", str(start), "--duration", str(SECONDS), "--labels", str(data_dir / "labels.jsonl"),
             "--metrics-port", str(pipe.ports["gateway"])],
            stdout=True,
        )  # fmt: skip
        def simulator_done() -> bool:
            pipe.check_alive("windows", "sink")
            return not gw.alive()

        wait_until(simulator_done, 300, "the simulator", 1.0)
        assert gw.proc is not None and gw.proc.returncode == 0, gw.log_tail()
        # The worker has consumed everything when its input lag is 0 and the anomaly topic is quiet.
        wait_until(lambda: pipe.group_lag("millstream-windows", pipe.topics.topic_readings) == 0, 300,
                   "the worker to consume the hour", 2.0)  # fmt: skip
        pipe.wait_quiet(pipe.topics.topic_anomalies, quiet_s=5, timeout=60)
        assert pipe.wait_drained("millstream-sink", pipe.topics.topic_anomalies, timeout=60)
        assert pipe.prometheus is not None
        time.sleep(3)
        opened = pipe.prometheus.query("sum(millstream_anomaly_events_total)")
        events = pipe.read_topic(pipe.topics.topic_anomalies)
        pipe.stop("windows")
        pipe.stop("sink")
        from sinks.clickhouse import ClickHouseSettings, connect

        client = connect(ClickHouseSettings(url=f"chdb://{pipe.clickhouse_path}"))
        ch = client.query("SELECT count() FROM anomalies FINAL WHERE state = 'open'").result_rows[0][0]
        client.close()
    labels = [json.loads(line) for line in (data_dir / "labels.jsonl").read_text().splitlines() if line]
    yield {"events": events, "labels": labels, "prom_opened": opened, "ch_open": int(ch)}


def test_events_reach_prometheus_and_clickhouse(run: dict[str, Any]) -> None:
    opens = sum(1 for e in run["events"] if e["state"] == "open")
    assert opens > 0
    assert float(run["prom_opened"][0]["value"][1]) == opens
    assert run["ch_open"] == len({(e["machine_id"], e["sensor"], e["started_at"]) for e in run["events"]
                                  if e["state"] == "open"})  # fmt: skip
