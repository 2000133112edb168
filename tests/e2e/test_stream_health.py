"""The Faust stream job's health endpoints, start-up checks and consumer lag, on real processes.

Real broker, real Faust worker processes (``millstream run faust``), real HTTP probes:
* /readyz checks the broker and the agent, /healthz the agent; killing the broker turns /readyz 503,
  the worker's log does not flood while the broker is gone, and SIGTERM then still ends it in time;
* a worker restarted with nothing new to read reports lag 0 (it used to report the whole partition);
* the state folder is created with its parents (a fresh working folder used to crash the job);
* a bad setting, or a broker that never answers, stops the command with one line naming it.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Producer

from infra.pipeline import LocalPipeline, PipelineOptions
from infra.procs import wait_until
from schemas.serde import Serde
from streams.config import StreamSettings

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
PARTITIONS = 3


def probe(port: int, path: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as r:  # noqa: S310
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()
    except OSError:
        return 0, ""


def lags(port: int) -> dict[str, float]:
    _, text = probe(port, "/metrics")
    pattern = r'millstream_consumer_lag_records\{partition="(\d+)",stage="windows",topic="[^"]+"\} (\S+)'
    return {p: float(v) for p, v in re.findall(pattern, text)}


@pytest.fixture(scope="module")
def pipe(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalPipeline]:
    data = tmp_path_factory.mktemp("health")
    opts = PipelineOptions(
        data_dir=data,
        partitions=PARTITIONS,
        extra_env={"MILLSTREAM_STREAM_STATE_DIR": str(data / "fresh" / "deeper" / "faust")},  # no parent yet
    )
    with LocalPipeline(opts) as p:
        p.start_stack()
        yield p


def test_probes_lag_after_restart_and_broker_loss(pipe: LocalPipeline) -> None:
    port = pipe.ports["windows"]
    pipe.start_worker()
    wait_until(
        lambda: probe(port, "/readyz")[0] == 200, 60, f"the worker ready ({pipe.logs / 'windows.log'})"
    )
    assert probe(port, "/readyz")[1] == "broker ok\nwindows_agent ok\n"
    assert probe(port, "/healthz") == (200, "windows_agent ok\n")

    enc = Serde().encoder("Reading", pipe.topics.topic_readings)
    producer = Producer(pipe.kafka.librdkafka())
    t0 = int(time.time() * 1000) - 60_000
    for partition in range(PARTITIONS):  # every partition gets records
        for i in range(20):
            reading: dict[str, Any] = {
                "plant": "p1", "line": "l1", "machine_id": f"m{partition}", "sensor": "temperature",
                "unit": "Cel", "event_time": t0 + i * 1000, "value": 20.0 + i, "quality": "GOOD",
                "gateway_id": "gw", "seq": i, "lot_id": None,
            }  # fmt: skip
            producer.produce(pipe.topics.topic_readings, enc(reading), partition=partition)
    assert producer.flush(30) == 0
    group = StreamSettings().app_id
    assert pipe.wait_drained(group, pipe.topics.topic_readings, 90), pipe.logs / "windows.log"

    assert pipe.stop("windows") == 0  # SIGTERM: Faust commits and stops
    pipe.start_worker()
    wait_until(
        lambda: probe(port, "/readyz")[0] == 200, 60, f"the worker ready ({pipe.logs / 'windows.log'})"
    )
    # Nothing new to read: the lag of every partition is 0 once the consumer is positioned.
    wait_until(lambda: len(lags(port)) == PARTITIONS, 30, "a lag gauge per partition")
    time.sleep(3)  # a few more ticks of the lag gauge
    assert lags(port) == {str(p): 0.0 for p in range(PARTITIONS)}

    assert pipe.broker is not None
    pipe.broker.stop()
    wait_until(lambda: probe(port, "/readyz")[0] == 503, 30, "/readyz to fail without the broker")
    status, body = probe(port, "/readyz")
    assert "broker FAIL" in body, body
    assert probe(port, "/healthz")[0] == 200  # not stuck: waiting for the broker is no reason to restart
    metrics = probe(port, "/metrics")[1]  # what MillstreamNotReady alerts on, as of the last probe
    assert 'millstream_readiness_check{check="broker"} 0.0' in metrics
    assert 'millstream_readiness_check{check="windows_agent"} 1.0' in metrics
    # The client library's repeated connection errors are logged once per 30 s, not dozens a second.
    log = pipe.logs / "windows.log"
    before = len(log.read_text(encoding="utf-8", errors="replace").splitlines())
    time.sleep(15)
    added = log.read_text(encoding="utf-8", errors="replace").splitlines()[before:]
    assert len(added) < 100, "\n".join(added[-40:])
    # SIGTERM without a broker: the worker gives up on its consumer and exits within Kubernetes'
    # grace period (60 s in k8s/components/faust), instead of being killed at its end.
    assert pipe.stop("windows", timeout=50) == 0


def run_faust(tmp_path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("MILLSTREAM_")}
    return subprocess.run(
        [sys.executable, "-m", "infra.cli", "run", "faust", "--metrics-port", "0"],
        cwd=tmp_path,
        env={**clean, "PYTHONPATH": str(REPO), **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_a_bad_setting_stops_the_job_at_start(tmp_path: Path) -> None:
    proc = run_faust(tmp_path, MILLSTREAM_SPC_CHART="p", MILLSTREAM_KAFKA_BOOTSTRAP="127.0.0.1:1")
    assert proc.returncode == 1
    assert "MILLSTREAM_SPC_CHART='p': Value error, not a chart of measurements" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_an_unreachable_broker_stops_the_job_with_one_line(tmp_path: Path) -> None:
    proc = run_faust(tmp_path, MILLSTREAM_KAFKA_BOOTSTRAP="127.0.0.1:1", MILLSTREAM_STREAM_BROKER_WAIT_S="1")
    assert proc.returncode == 1
    assert proc.stderr.strip() == (
        "millstream: error: cannot reach the broker at 127.0.0.1:1 (MILLSTREAM_KAFKA_BOOTSTRAP) "
        "within 1 s (MILLSTREAM_STREAM_BROKER_WAIT_S)"
    ), proc.stderr
    assert (tmp_path / ".millstream" / "faust").is_dir()  # the default state folder, parents included
