"""The spool's disk fills during a broker outage. The kernel refuses the write for real: the gateway
runs under RLIMIT_FSIZE (writes past the limit fail with EFBIG, as with ENOSPC on a full disk; no root
needed to set it up). The gateway must stop with a clear error, still print its summary line, and
leave unacknowledged every MQTT message it did not spool, so the broker delivers it again."""

from __future__ import annotations

import json
import logging
import os
import resource
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from infra.procs import free_port, wait_until
from ingest.config import SpoolSettings
from ingest.mqtt import MqttConfig, MqttGateway
from ingest.spool import Spool
from schemas.config import KafkaSettings, TopicSettings

REPO = Path(__file__).resolve().parents[2]
FILE_LIMIT = 256 * 1024


def _limit_file_size() -> None:  # runs in the child before exec
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a failed write, not a killed process
    resource.setrlimit(resource.RLIMIT_FSIZE, (FILE_LIMIT, FILE_LIMIT))


@pytest.mark.integration
def test_a_full_disk_stops_the_gateway_with_an_error_and_a_summary_and_loses_nothing(
    tmp_path: Path,
    own_mosquitto: Any,
    kafka: KafkaSettings,
    topics: TopicSettings,
    gateway_run: Callable[..., Any],
    read_topic: Callable[..., list[dict[str, Any]]],
) -> None:
    cfg = tmp_path / "gateway.json"
    cfg.write_text(
        json.dumps(
            {
                "gateway_id": "mqtt-disk",
                "port": own_mosquitto.port,
                "client_id": "gw-disk",
                "topics": [{"pattern": "p/{plant}/{line}/{machine}/{sensor}", "unit": "bar"}],
            }
        )
    )
    spool_dir = tmp_path / "spool"
    env = {
        **os.environ,
        "MILLSTREAM_KAFKA_BOOTSTRAP": f"127.0.0.1:{free_port()}",  # nobody listens: an outage
        "PYTHONPATH": str(REPO),
    }
    argv = [sys.executable, "-m", "infra.cli", "gateway", "mqtt", "--config", str(cfg), "--spool-dir"]
    proc = subprocess.Popen(
        [*argv, str(spool_dir)],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=_limit_file_size,  # setrlimit must run in the child
    )
    try:
        wait_until(lambda: (spool_dir / "LOCK").exists(), 30, "the gateway to start")
        time.sleep(1.0)  # subscribed
        pub = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="device-disk")
        pub.connect("127.0.0.1", own_mosquitto.port)
        pub.loop_start()
        now = time.time_ns() // 1_000_000
        for i in range(4000):  # ~600 KB of spool records: more than the file limit
            payload = json.dumps({"value": float(i), "ts": now + i, "lot_id": "x" * 80}).encode()
            pub.publish(f"p/p1/l1/m{i % 3}/pressure", payload, qos=1)
        out, err = proc.communicate(timeout=60)
        pub.disconnect()
        pub.loop_stop()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 1, err[-2000:]
    assert "millstream: error: the forwarder failed: cannot write to the spool" in err
    assert "Exception in thread" not in err, "one error, not a traceback per thread"
    summary = json.loads(out.strip().splitlines()[-1])  # the summary line still goes out
    assert summary["spooled"] > 0 and summary["read"] > 0

    # Restarted with the broker back (and room on the disk): the spool is replayed and Mosquitto
    # delivers again what was not acknowledged. Every published value arrives.
    config = MqttConfig.model_validate(json.loads(cfg.read_text()))
    run = gateway_run(MqttGateway, config, kafka, topics, SpoolSettings(dir=spool_dir))
    wait_until(lambda: run.forwarder.report().replayed + run.emitter.readings >= 4000, 60, "replay")
    report = run.close()
    assert report.lost == 0 and report.pending == 0
    records = read_topic(kafka, topics.topic_readings, 4000)
    assert {r["value"] for r in records} == {float(i) for i in range(4000)}, "nothing lost"


def test_a_spool_bound_above_the_free_disk_space_is_reported_at_start(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="ingest.spool"):
        Spool(SpoolSettings(dir=tmp_path / "spool", max_bytes=1 << 60)).open().close()
    assert any("bytes are free there" in r.getMessage() for r in caplog.records)
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="ingest.spool"):
        Spool(SpoolSettings(dir=tmp_path / "spool2", max_bytes=1 << 20, segment_bytes=1 << 18)).open().close()
    assert not caplog.records
