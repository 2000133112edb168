"""The Flink job forgets a machine that stopped reporting (MILLSTREAM_STREAM_STATE_TTL_MS), on a real
``millstream run flink`` (local MiniCluster, RocksDB keyed state, checkpoints every second).

Machines on one partition: "live" reports all along, "gone" stops after 12 s, "back" stops after 12 s
and comes back after 48 s of silence (more than the 20 s TTL), its temperature shifted late, "rare"
reads every 10 s (its windows are purged between readings: each one moves its expiry timer). Once
the watermark is past the TTL, the job is killed and restarted from its newest checkpoint, then "back"
returns. Checked: "back" starts afresh after the restart, a new SPC phase I, so its keyed state was
cleared (a restarted job has an empty cache and loads every machine from its keyed state); all results
equal the Faust job's processor with the same TTL, and for the others those of keeping everything
(TTL 0). (The per-machine metric series of the Flink job live in its Python workers and are
not exported; their removal is checked in tests/e2e/test_flink_keyed.py.)
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from infra.pipeline import LocalPipeline, PipelineOptions
from infra.procs import ManagedProcess, free_port, wait_until
from infra.stack import LocalBroker, create_topics
from schemas.serde import Serde
from streams.config import StreamSettings
from streams.flink.job import latest_checkpoint
from streams.pipeline import Outputs, PartitionProcessor
from streams.replay_kafka import Produced, collect, produce
from streams.spc.config import SpcSettings

pytestmark = pytest.mark.integration

TTL_MS = 20_000
WINDOW_MS = 2000
T0 = (int(time.time() * 1000) // 1000) * 1000 - 600_000
ENV = {
    "MILLSTREAM_SPC_PHASE1_COUNT": "5", "MILLSTREAM_SPC_CHART": "imr", "MILLSTREAM_SPC_RULES": "we",
    "MILLSTREAM_STREAM_STATE_TTL_MS": str(TTL_MS), "MILLSTREAM_FLINK_CHECKPOINT_INTERVAL_MS": "1000",
    "MILLSTREAM_FLINK_DELIVERY": "at-least-once",
}  # fmt: skip
SPC_FIELDS = ("machine_id", "sensor", "window_start", "point_index", "chart", "rule")


def _rows() -> list[dict[str, Any]]:
    rng = random.Random(20261123)
    rows = []
    for i in range(500):  # 100 s at 5 Hz
        ms = i * 200
        for m in ("live", "gone", "back", "rare"):
            if m in ("gone", "back") and 12_000 <= ms < (60_000 if m == "back" else 10**9):
                continue
            if m == "rare" and ms % 10_000:
                continue
            for s in ("temperature", "vibration_rms"):
                shift = 12.0 if (m == "back" and s == "temperature" and ms >= 85_000) else 0.0
                rows.append({"plant": "p1", "line": "l1", "machine_id": m, "sensor": s, "unit": "u",
                             "event_time": T0 + ms, "value": round(rng.gauss(50 + shift, 2), 6),
                             "quality": "GOOD", "gateway_id": "gw", "seq": i, "lot_id": None})  # fmt: skip
    # A reading of another machine well after the end moves the watermark past the last windows.
    return [*rows, {**rows[-1], "machine_id": "clock", "event_time": T0 + 120_000}]


def _reference(rows: list[dict[str, Any]], ttl_ms: int) -> Outputs:
    """The Faust job's processor (one partition) on the same readings."""
    stream = StreamSettings(window=f"tumbling:{WINDOW_MS}ms", out_of_orderness_ms=500,
                            allowed_lateness_ms=1000, idle_timeout_ms=0, max_future_ms=0,
                            state_ttl_ms=ttl_ms)  # fmt: skip
    spc = SpcSettings(phase1_count=5, chart="imr", rules="we")
    serde = Serde()
    enc = serde.encoder("Reading", "readings")
    proc = PartitionProcessor(stream, serde, 0, "readings", spc)
    out = Outputs()
    for n, r in enumerate(rows):
        out.extend(proc.handle(enc(r), n, None, r["event_time"]))
    return out


def _signals(rows: list[dict[str, Any]], machine: str) -> list[tuple[Any, ...]]:
    return sorted({tuple(r[k] for k in SPC_FIELDS) for r in rows if r["machine_id"] == machine})


def _windows(rows: list[dict[str, Any]], machine: str) -> dict[tuple[str, int], tuple[Any, ...]]:
    best: dict[tuple[str, int], dict[str, Any]] = {}
    for r in rows:
        k = (r["sensor"], r["window_start"])
        if r["machine_id"] == machine and (k not in best or r["version"] >= best[k]["version"]):
            best[k] = r
    return {k: (r["count"], round(r["mean"], 9), r["min"], r["max"]) for k, r in best.items()}


def _flink(pipe: LocalPipeline, name: str, port: int) -> tuple[ManagedProcess, dict[str, Any]]:
    proc = ManagedProcess(
        name, [*pipe.cli(), "run", "flink", "--parallelism", "1", "--metrics-port", str(port)],
        pipe.logs / f"{name}.log", env={**pipe.env(), **ENV}, stdout_path=pipe.logs / f"{name}.out",
    ).start()  # fmt: skip

    def submitted() -> bool:
        proc.check_alive()
        return bool(proc.stdout_path and proc.stdout_path.exists() and proc.stdout_path.read_text().strip())

    wait_until(submitted, 120, f"{name} to submit the job", 0.5)
    assert proc.stdout_path is not None
    return proc, dict(json.loads(proc.stdout_path.read_text().splitlines()[0]))


@pytest.fixture(scope="module")
def flink(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    data_dir: Path = tmp_path_factory.mktemp("flink-ttl")
    opts = PipelineOptions(data_dir=data_dir, window=f"tumbling:{WINDOW_MS}ms", out_of_orderness_ms=500,
                           allowed_lateness_ms=1000, idle_timeout_ms=0, partitions=1)  # fmt: skip
    pipe = LocalPipeline(opts)
    pipe.logs.mkdir(parents=True, exist_ok=True)
    rows = _rows()
    procs: list[ManagedProcess] = []
    produced = Produced()
    topic = pipe.topics.topic_windows

    def closed(proc: ManagedProcess, machine: str, end: int) -> bool:
        proc.check_alive()
        got = collect(pipe.kafka, [topic], quiet_s=0.5, timeout=30)[topic]
        return any(w["machine_id"] == machine and w["window_end"] >= T0 + end for w in got)

    try:
        pipe.broker = LocalBroker(data_dir).start()
        create_topics(pipe.kafka, pipe.topics)
        ports = (free_port(), free_port())
        first, info1 = _flink(pipe, "flink-1", ports[0])
        procs.append(first)
        checkpoints = Path(info1["checkpoint_dir"])
        # Two steps, so that the watermark moves twice: the first purges the silent machines' windows
        # (their expiry timers are set), the second passes newest reading + TTL (the timers fire).
        produce(pipe.kafka, pipe.topics.topic_readings,
                [r for r in rows if r["event_time"] < T0 + 30_000], produced)  # fmt: skip
        wait_until(lambda: closed(first, "live", 28_000), 90, "windows up to 28 s", 1)
        produce(pipe.kafka, pipe.topics.topic_readings,
                [r for r in rows if T0 + 30_000 <= r["event_time"] < T0 + 60_000], produced)  # fmt: skip
        wait_until(lambda: closed(first, "live", 58_000), 90, "windows up to 58 s", 1)
        done = latest_checkpoint(checkpoints)
        wait_until(lambda: latest_checkpoint(checkpoints) not in (None, done), 60, "a checkpoint", 0.5)
        first.kill()
        second, info2 = _flink(pipe, "flink-2", ports[1])
        procs.append(second)
        produce(pipe.kafka, pipe.topics.topic_readings,
                [r for r in rows if r["event_time"] >= T0 + 60_000], produced)  # fmt: skip
        wait_until(lambda: closed(second, "back", 100_000), 90, "windows up to 100 s", 1)
        out = collect(pipe.kafka, [topic, pipe.topics.topic_spc_signals], quiet_s=1.0, timeout=30)
        yield {"rows": rows, "windows": out[topic], "spc": out[pipe.topics.topic_spc_signals],
               "restored_from": info2["restored_from"]}  # fmt: skip
    finally:
        for p in procs:
            p.stop(20)
        pipe.close()


def test_results_equal_the_faust_processor_with_the_same_ttl(flink: dict[str, Any]) -> None:
    ref = _reference(flink["rows"], TTL_MS)
    for m in ("live", "gone", "back", "rare"):
        assert _windows(flink["windows"], m) == _windows(ref.windows, m), m
        assert _signals(flink["spc"], m) == _signals(ref.spc_signals, m), m


def test_reporting_machines_unchanged_by_the_ttl(flink: dict[str, Any]) -> None:
    kept = _reference(flink["rows"], 0)
    for m in ("live", "gone", "rare"):
        assert _windows(flink["windows"], m) == _windows(kept.windows, m), m
        assert _signals(flink["spc"], m) == _signals(kept.spc_signals, m), m
    assert _windows(flink["windows"], "back") == _windows(kept.windows, "back")


def test_a_machine_back_after_the_ttl_starts_afresh(flink: dict[str, Any]) -> None:
    back = T0 + 60_000

    def since_back(rows: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
        return [s for s in _signals(rows, "back") if s[2] >= back]

    assert flink["restored_from"] is not None  # it came back to a job restarted from a checkpoint
    fresh = _reference(
        [r for r in flink["rows"] if r["event_time"] >= back and r["machine_id"] in ("back", "clock")], 0
    )
    got = since_back(flink["spc"])
    assert got and got == since_back(fresh.spc_signals)  # a new phase I from its return
    assert got != since_back(_reference(flink["rows"], 0).spc_signals)  # not its old chart going on
