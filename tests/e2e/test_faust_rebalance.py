"""Scaling the Faust job out and back in while readings flow gives the results of one worker.

Real broker, real Faust worker processes, one app id. One worker starts; a second joins while
readings arrive (Faust revokes every partition of the first and hands some to the second), then the
second is stopped with SIGTERM while readings arrive (the first takes its partitions back). The
windows, SPC signals and anomaly events must equal those of one uninterrupted processor per
partition (the operator library run in this process over the same records). Anomaly models are
checkpointed at most every 10 s while records flow; a worker that gave up a partition without
checkpointing them handed the next owner models that had missed the readings since: the machines
whose mean shifts after a rebalance then opened their anomaly events later and with other scores.
"""

from __future__ import annotations

import signal
import threading
import time
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest
from confluent_kafka import Producer
from faust_scenario import GROUP, reference_processors, shifted_readings

from infra.pipeline import LocalPipeline, PipelineOptions
from infra.procs import ManagedProcess, free_port, wait_until
from schemas.serde import Serde
from streams.pipeline import Outputs

pytestmark = pytest.mark.integration

WINDOW_MS = 1000
PARTITIONS = 3
MACHINES = [f"m{i}" for i in range(6)]  # machine i on partition i % 3
SENSORS = ["temperature", "vibration_rms"]
STEPS = (120, 240, 300)  # readings per key (5 Hz) before the scale-up, before the scale-down, in all
SHIFTS = {"m0": 160, "m1": 170, "m2": 180, "m3": 260, "m4": 265, "m5": 270}  # the mean shifts: events
ENV = {
    "MILLSTREAM_SPC_PHASE1_COUNT": "10", "MILLSTREAM_SPC_CHART": "imr", "MILLSTREAM_SPC_RULES": "we",
    "MILLSTREAM_ANOMALY_WARMUP_HOURS": "0", "MILLSTREAM_ANOMALY_WARMUP": "100",
}  # fmt: skip
STATS = ("count", "mean", "std", "min", "max", "p50", "first", "last")


def _reference(records: list[tuple[int, bytes, bytes]], pipe: LocalPipeline) -> Outputs:
    """The outputs of one uninterrupted processor per partition over the same records."""
    out = Outputs()
    for _, outs in reference_processors(records, pipe, PARTITIONS):
        for o in outs:
            out.extend(o)
    return out


def _assigned(port: int, topic: str) -> set[str]:
    """The readings partitions a worker reports lag for: the ones it is assigned."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:  # noqa: S310
        lines = r.read().decode().splitlines()
    return {
        line.split('partition="')[1].split('"')[0]
        for line in lines
        if line.startswith("millstream_consumer_lag_records{") and f'topic="{topic}"' in line
    }


@pytest.fixture(scope="module")
def run(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch_module: pytest.MonkeyPatch
) -> Iterator[dict[str, Any]]:
    for k, v in ENV.items():  # the reference reads the same settings as the workers
        monkeypatch_module.setenv(k, v)
    data_dir = tmp_path_factory.mktemp("rebalance")
    opts = PipelineOptions(
        data_dir=data_dir, window=f"tumbling:{WINDOW_MS}ms", out_of_orderness_ms=500,
        allowed_lateness_ms=1000, idle_timeout_ms=0, partitions=PARTITIONS, extra_env=ENV,
    )  # fmt: skip
    t0 = (int(time.time() * 1000) // WINDOW_MS) * WINDOW_MS - 3_600_000
    data = shifted_readings(t0, MACHINES, SENSORS, STEPS[-1], SHIFTS, PARTITIONS)
    enc = Serde().encoder("Reading", "readings")
    records = [(p, r["machine_id"].encode(), enc(r)) for p, r in data]
    per_step = len(MACHINES) * len(SENSORS)
    cuts = [0, STEPS[0] * per_step, STEPS[1] * per_step, len(records)]
    with LocalPipeline(opts) as pipe:
        pipe.start_stack()
        topic = pipe.topics.topic_readings
        producer = Producer({**pipe.kafka.librdkafka(), "enable.idempotence": True, "acks": "all"})

        def produce(part: list[tuple[int, bytes, bytes]], seconds: float = 0.0) -> None:
            """Produce ``part`` spread over ``seconds`` (records arrive while the group rebalances)."""
            chunks = max(1, int(seconds * 4))
            size = len(part) // chunks + 1
            for c in range(chunks):
                for p, key, value in part[c * size : (c + 1) * size]:
                    producer.produce(topic, value, key=key, partition=p)
                producer.flush(30)
                if seconds:
                    time.sleep(seconds / chunks)

        def drained() -> bool:
            pipe.check_alive(*(n for n, p in pipe.procs.items() if n != "windows-2" or p.alive()))
            return pipe.group_lag(GROUP, topic) == 0

        ports = {"w1": pipe.ports["windows"], "w2": free_port()}
        pipe.start_worker()
        produce(records[cuts[0] : cuts[1]])
        wait_until(drained, 120, "the first worker to process the first part", 0.5)

        # Scale up while readings arrive.
        env = {**pipe.env(), "MILLSTREAM_STREAM_STATE_DIR": str(data_dir / "faust-2")}
        args = [*pipe.cli(), "run", "faust", "--metrics-port", str(ports["w2"])]
        second = pipe.procs["windows-2"] = ManagedProcess("windows-2", args, pipe.logs / "windows-2.log", env)
        second.start()
        feeder = threading.Thread(target=produce, args=(records[cuts[1] : cuts[2]], 20.0))
        feeder.start()

        def both_assigned() -> bool:
            pipe.check_alive("windows", "windows-2")
            try:
                return bool(_assigned(ports["w2"], topic)) and bool(_assigned(ports["w1"], topic))
            except OSError:  # not serving yet
                return False

        wait_until(both_assigned, 90, "the second worker to get partitions", 0.5)
        feeder.join()
        wait_until(drained, 120, "both workers to process the second part", 0.5)

        # Scale down (SIGTERM) while readings arrive, before the shifts of m3..m5.
        feeder = threading.Thread(target=produce, args=(records[cuts[2] : cuts[3]], 8.0))
        feeder.start()
        time.sleep(2.0)
        second.signal(signal.SIGTERM)
        assert second.proc is not None and second.proc.wait(30) == 0, second.log_tail()
        feeder.join()
        wait_until(
            lambda: len(_assigned(ports["w1"], topic)) == PARTITIONS, 60, "the first worker to take all", 0.5
        )
        wait_until(drained, 120, "the first worker to process the rest", 0.5)
        pipe.wait_quiet(pipe.topics.topic_windows, quiet_s=3, timeout=30)
        yield {
            "reference": _reference(records, pipe),
            "windows": pipe.read_topic(pipe.topics.topic_windows),
            "spc": pipe.read_topic(pipe.topics.topic_spc_signals),
            "anomalies": pipe.read_topic(pipe.topics.topic_anomalies),
            "late": pipe.read_topic(pipe.topics.topic_late, 0.5),
        }


@pytest.fixture(scope="module")
def monkeypatch_module() -> Iterator[pytest.MonkeyPatch]:
    with pytest.MonkeyPatch.context() as mp:
        yield mp


def _windows(records: list[dict[str, Any]]) -> dict[tuple[str, str, int, int], tuple[Any, ...]]:
    return {
        (w["machine_id"], w["sensor"], w["window_start"], w["version"]): tuple(w[k] for k in STATS)
        for w in records
    }


def _windows_all(records: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
    return [
        (w["machine_id"], w["sensor"], w["window_start"], w["version"], *(w[k] for k in STATS))
        for w in records
    ]


def test_windows_and_spc_signals_equal_one_worker(run: dict[str, Any]) -> None:
    ref = run["reference"]
    # a window emitted twice with one identity and version but other values would make the dicts differ
    assert len(set(_windows_all(run["windows"]))) == len(_windows(run["windows"]))
    assert _windows(run["windows"]) == _windows(ref.windows)
    key = ("machine_id", "sensor", "chart", "rule", "point_index", "window_start", "value", "center", "ucl")
    # at-least-once: a signal may come twice, identical (ClickHouse keeps one row); never another one
    assert {tuple(s[k] for k in key) for s in run["spc"]} == {
        tuple(s[k] for k in key) for s in ref.spc_signals
    }
    assert not run["late"]


def test_anomaly_models_move_with_their_partitions(run: dict[str, Any]) -> None:
    key = ("machine_id", "sensor", "state", "started_at", "event_time", "score")
    expected = {tuple(a[k] for k in key) for a in run["reference"].anomalies}
    assert {e[0] for e in expected} == set(MACHINES), "every machine's shift opens an event"
    assert {tuple(a[k] for k in key) for a in run["anomalies"]} == expected
