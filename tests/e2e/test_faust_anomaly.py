"""Anomaly detection in the running pipeline: the simulator's faults are found, a fault-free machine
stays quiet, and the events reach the anomalies topic, ClickHouse and Prometheus consistently.

Real broker, Faust worker, sink, embedded ClickHouse, Prometheus. The simulator fast-forwards 31 hours
of plant time at one scan per minute (4 machines); the detector runs with the settings the Kubernetes
deployment gives it (k8s/base; the plant settings of docs/anomaly.md, "In the pipeline"): a day of
warm-up, stopped machines not judged, counters not modelled, stuck-sensor check. After the warm-up
it gets hour-long faults at fixed times (seed fixed): m002 is kept fault-free; m001, m003 and m004
get a pressure leak, a stuck sensor and overheating.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import pytest

from infra.k8s_sync import deployed_config
from infra.pipeline import LocalPipeline, PipelineOptions
from infra.procs import wait_until

pytestmark = pytest.mark.integration

MACHINES = 4
PERIOD_S = 60  # one scan per minute of plant time
HOURS = 31
WARMUP_H = 24
QUIET = "m002"
SCHEDULE = [  # MACHINE:KIND:START_S:DURATION_S[:MAGNITUDE|SENSOR], after the warm-up
    "m001:pressure_leak:93600:3600",
    "m003:sensor_stuck:97200:1800:temperature",
    "m004:overheating:100800:1800",
    "m001:sensor_stuck:104400:1800:noise",
    "m003:pressure_leak:104400:3600",
]
# The MILLSTREAM_ANOMALY_* settings of the Kubernetes deployment: the job runs here as deployed.
PLANT_SETTINGS = deployed_config("MILLSTREAM_ANOMALY_")
assert PLANT_SETTINGS.get("MILLSTREAM_ANOMALY_WARMUP_HOURS") == str(WARMUP_H), PLANT_SETTINGS
# A fault is detectable when it lasts at least 10 scans: the calibration averages 10 readings and the
# stuck-sensor check needs 5 identical ones, so a shorter fault can end before any score has moved.
MIN_DETECTABLE_MS = 10 * PERIOD_S * 1000


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    data_dir = tmp_path_factory.mktemp("anomaly")
    opts = PipelineOptions(
        data_dir=data_dir, window="tumbling:600s", idle_timeout_ms=0, partitions=2, extra_env=PLANT_SETTINGS,
    )  # fmt: skip
    seconds = HOURS * 3600
    start = (int(time.time() * 1000) // 1000) * 1000 - (seconds + 600) * 1000
    with LocalPipeline(opts) as pipe:
        pipe.start_stack()
        pipe.start_sink()
        pipe.start_worker()
        args = ["gateway", "simulate", "--machines", str(MACHINES), "--rate", repr(1 / PERIOD_S),
                "--seed", "11", "--start-ms", str(start), "--duration", str(seconds),
                "--labels", str(data_dir / "labels.jsonl"), "--quiet-machines", QUIET,
                "--metrics-port", str(pipe.ports["gateway"])]  # fmt: skip
        for fault in SCHEDULE:
            args += ["--fault", fault]
        gw = pipe._start("gateway", args, stdout=True)

        def simulator_done() -> bool:
            pipe.check_alive("windows", "sink")
            return not gw.alive()

        wait_until(simulator_done, 300, "the simulator", 1.0)
        assert gw.proc is not None and gw.proc.returncode == 0, gw.log_tail()
        # The worker has consumed everything when its input lag is 0 and the anomaly topic is quiet.
        wait_until(lambda: pipe.group_lag("millstream-windows", pipe.topics.topic_readings) == 0, 300,
                   "the worker to consume the run", 2.0)  # fmt: skip
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
    yield {"events": events, "labels": labels, "prom_opened": opened, "ch_open": int(ch), "start": start}


def _opens(run: dict[str, Any]) -> list[dict[str, Any]]:
    return [e for e in run["events"] if e["state"] == "open"]


def test_the_scheduled_faults_were_injected(run: dict[str, Any]) -> None:
    got = sorted((lab["machine_id"], lab["kind"]) for lab in run["labels"])
    assert got == sorted((f.split(":")[0], f.split(":")[1]) for f in SCHEDULE)
    assert all(not lab["truncated"] for lab in run["labels"])
    assert all(lab["machine_id"] != QUIET for lab in run["labels"])


def test_every_detectable_fault_is_detected_while_it_lasts(run: dict[str, Any]) -> None:
    """An event on the faulty machine opens between the fault's first and last scan (inclusive)."""
    detectable = [lab for lab in run["labels"] if lab["end_ms"] - lab["start_ms"] >= MIN_DETECTABLE_MS]
    assert len(detectable) == len(SCHEDULE)
    missed = [
        lab
        for lab in detectable
        if not any(
            e["machine_id"] == lab["machine_id"] and lab["start_ms"] <= e["started_at"] <= lab["end_ms"]
            for e in _opens(run)
        )
    ]
    assert not missed, f"faults without an event: {missed}; events: {_opens(run)}"


def test_the_fault_free_machine_stays_quiet(run: dict[str, Any]) -> None:
    warm = run["start"] + WARMUP_H * 3_600_000
    quiet = [e for e in _opens(run) if e["machine_id"] == QUIET]
    assert all(e["started_at"] >= warm for e in _opens(run)), "no event inside the warm-up"
    assert not quiet, f"events on the fault-free machine {QUIET}: {quiet}"


def test_events_reach_prometheus_and_clickhouse(run: dict[str, Any]) -> None:
    opens = len(_opens(run))
    assert opens > 0
    assert float(run["prom_opened"][0]["value"][1]) == opens
    assert run["ch_open"] == len({(e["machine_id"], e["sensor"], e["started_at"]) for e in _opens(run)})
